//! LoginWA's IP whitelist answers (`/api/v1/ip-whitelist…`): the list with whether it is
//! enforced, one entry (a single address bare, as it was added), or a bare success.

use serde_json::{json, Value};

use crate::domain::allowlist;
use crate::protocol::access::{AllowList, AllowedIp};

pub fn allow_list(list: &AllowList, iso: impl Fn(u64) -> String) -> Value {
    let ips: Vec<Value> = list.ips.iter().map(|e| entry(e, &iso)).collect();
    json!({"restriction_enabled": list.restriction_enabled, "count": ips.len(), "ips": ips})
}

pub fn entry(e: &AllowedIp, iso: impl Fn(u64) -> String) -> Value {
    let ip_address = allowlist::shown(&e.ip_address);
    json!({"id": e.id, "ip_address": ip_address, "label": e.label, "created_at": iso(e.created_at)})
}

/// A removal, and every other change that has nothing to show.
pub fn success() -> Value {
    json!({"success": true})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso(ms: u64) -> String {
        format!("t{ms}")
    }

    #[test]
    fn the_list_counts_its_entries_and_shows_them_oldest_first() {
        let ips = vec![
            AllowedIp {
                id: "ip_1".into(),
                ip_address: "10.0.0.0/8".into(),
                label: Some("office".into()),
                created_at: 1,
            },
            AllowedIp { id: "ip_2".into(), ip_address: "203.0.113.7/32".into(), label: None, created_at: 2 },
        ];
        let shown = allow_list(&AllowList { restriction_enabled: true, ips }, iso);
        assert_eq!(
            shown,
            json!({"restriction_enabled": true, "count": 2, "ips": [
                {"id": "ip_1", "ip_address": "10.0.0.0/8", "label": "office", "created_at": "t1"},
                {"id": "ip_2", "ip_address": "203.0.113.7", "label": null, "created_at": "t2"},
            ]})
        );
    }
}
