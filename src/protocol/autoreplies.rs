//! The app's auto-reply rules, a facet of the `APPS` namespace. Every operation carries the
//! device of a device-scoped key (`scope`), which sees and changes only that device's rules.

use serde::{Deserialize, Serialize};

use super::app::{App, AppOp};
use crate::domain::autoreply::MatchKind;
use crate::domain::ids::DeviceId;

crate::protocol! {
    facet AutoReplyOp of App via AppOp::AutoReplies, AutoReplyHandler {
        List(ListRules) -> Vec<RuleView> => list_rules,
        Create(CreateRule) -> RuleView => create_rule,
        Get(GetRule) -> RuleView => get_rule,
        Update(UpdateRule) -> RuleView => update_rule,
        Delete(DeleteRule) -> () => delete_rule,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleSpec {
    pub match_kind: MatchKind,
    pub pattern: String,
    pub reply: String,
    pub device_id: Option<DeviceId>,
    pub active: bool,
    pub priority: i64,
}

/// Absent fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RulePatch {
    pub match_kind: Option<MatchKind>,
    pub pattern: Option<String>,
    pub reply: Option<String>,
    pub device_id: Option<DeviceId>,
    pub active: Option<bool>,
    pub priority: Option<i64>,
}

/// Highest priority first, then oldest.
#[derive(Debug, Serialize, Deserialize)]
pub struct ListRules {
    pub scope: Option<DeviceId>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CreateRule {
    pub scope: Option<DeviceId>,
    pub spec: RuleSpec,
    pub now: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct GetRule {
    pub scope: Option<DeviceId>,
    pub id: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct UpdateRule {
    pub scope: Option<DeviceId>,
    pub id: String,
    pub patch: RulePatch,
    pub now: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DeleteRule {
    pub scope: Option<DeviceId>,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleView {
    pub id: String,
    pub match_kind: MatchKind,
    pub pattern: String,
    pub reply: String,
    pub device_id: Option<String>,
    pub active: bool,
    pub priority: i64,
    /// Inbound messages it matched, whether or not a reply went out.
    pub hits: i64,
    pub last_matched_at: Option<u64>,
    pub created_at: u64,
    pub updated_at: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{decode, encode};

    #[test]
    fn operations_travel_under_the_auto_replies_facet_with_their_scope() {
        let scope = DeviceId::parse("dev_0123456789abcdef");
        let op = AppOp::from(DeleteRule { scope, id: "ar_1".into() });
        assert_eq!(
            serde_json::to_string(&op).unwrap(),
            r#"{"op":"auto_replies","call":"delete","scope":"dev_0123456789abcdef","id":"ar_1"}"#
        );
        let list: AppOp = serde_json::from_str(r#"{"op":"auto_replies","call":"list","scope":null}"#).unwrap();
        assert!(matches!(list, AppOp::AutoReplies(AutoReplyOp::List(ListRules { scope: None }))));
    }

    #[test]
    fn answers_decode_as_their_operation_names_them() {
        let rule = RuleView {
            id: "ar_1".into(),
            match_kind: MatchKind::Contains,
            pattern: "price".into(),
            reply: "Hi {name}".into(),
            device_id: None,
            active: true,
            priority: 0,
            hits: 2,
            last_matched_at: Some(3),
            created_at: 1,
            updated_at: 1,
        };
        assert_eq!(decode::<GetRule>("APPS", &encode(&Ok(rule.clone()))).unwrap(), rule);
        assert_eq!(decode::<ListRules>("APPS", &encode(&Ok(vec![rule.clone()]))).unwrap(), vec![rule.clone()]);
        assert!(decode::<DeleteRule>("APPS", &encode(&Ok(rule))).is_err());
    }
}
