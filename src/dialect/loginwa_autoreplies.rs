//! wagate's auto-replies answers (`/api/v1/auto-replies…`, in LoginWA's style: the reference
//! keeps its rules in a dashboard): the rules, one rule, or a bare success.

use serde_json::{json, Value};

use crate::protocol::autoreplies::RuleView;

pub fn rules(list: &[RuleView], iso: impl Fn(u64) -> String) -> Value {
    json!({"auto_replies": list.iter().map(|r| rule(r, &iso)).collect::<Vec<_>>()})
}

pub fn rule(r: &RuleView, iso: impl Fn(u64) -> String) -> Value {
    json!({
        "id": r.id, "match": r.match_kind, "pattern": r.pattern, "reply": r.reply,
        "device_id": r.device_id, "active": r.active, "priority": r.priority, "hits": r.hits,
        "last_matched_at": r.last_matched_at.map(&iso), "created_at": iso(r.created_at),
        "updated_at": iso(r.updated_at),
    })
}

pub fn deleted() -> Value {
    json!({"success": true})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::autoreply::MatchKind;

    #[test]
    fn a_rule_shows_its_match_kind_by_name_and_its_times_as_dates() {
        let r = RuleView {
            id: "ar_1".into(),
            match_kind: MatchKind::Regex,
            pattern: "^harga".into(),
            reply: "Rp 10.000".into(),
            device_id: Some("dev_0123456789abcdef".into()),
            active: false,
            priority: -3,
            hits: 0,
            last_matched_at: None,
            created_at: 1,
            updated_at: 2,
        };
        assert_eq!(
            rules(&[r], |ms| format!("t{ms}")),
            json!({"auto_replies": [{
                "id": "ar_1", "match": "regex", "pattern": "^harga", "reply": "Rp 10.000",
                "device_id": "dev_0123456789abcdef", "active": false, "priority": -3, "hits": 0,
                "last_matched_at": null, "created_at": "t1", "updated_at": "t2",
            }]})
        );
    }
}
