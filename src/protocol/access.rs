//! The app's IP allow-list, a facet of the `APPS` namespace. Every operation names the key that
//! makes it, for the audit trail; the allow-list's own endpoints skip the check they manage.

use serde::{Deserialize, Serialize};

use super::app::{App, AppOp};
use crate::domain::ids::KeyId;

crate::protocol! {
    facet AllowListOp of App via AppOp::AllowList, AllowListHandler {
        List(ListAllowed) -> AllowList => list_allowed,
        Add(AllowIp) -> AllowedIp => allow_ip,
        Remove(DisallowIp) -> () => disallow_ip,
        Restrict(Restrict) -> AllowList => restrict,
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ListAllowed {
    pub actor: KeyId,
}

/// `ip_address`: an address or a CIDR range, as the client wrote it.
#[derive(Debug, Serialize, Deserialize)]
pub struct AllowIp {
    pub actor: KeyId,
    pub ip_address: String,
    pub label: Option<String>,
    pub now: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DisallowIp {
    pub actor: KeyId,
    pub id: String,
    pub now: u64,
}

/// Turns enforcement of the list on or off.
#[derive(Debug, Serialize, Deserialize)]
pub struct Restrict {
    pub actor: KeyId,
    pub enabled: bool,
    pub now: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllowList {
    pub restriction_enabled: bool,
    /// Oldest first.
    pub ips: Vec<AllowedIp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllowedIp {
    pub id: String,
    /// Normalised: a range (`10.0.0.0/8`), or a single address with its full prefix (`192.0.2.1/32`).
    pub ip_address: String,
    pub label: Option<String>,
    pub created_at: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{decode, encode};

    fn actor() -> KeyId {
        KeyId::parse("key_0123456789abcdef").unwrap()
    }

    #[test]
    fn operations_travel_under_the_allow_list_facet_with_their_actor() {
        let op = AppOp::from(Restrict { actor: actor(), enabled: true, now: 5 });
        assert_eq!(
            serde_json::to_string(&op).unwrap(),
            r#"{"op":"allow_list","call":"restrict","actor":"key_0123456789abcdef","enabled":true,"now":5}"#
        );
        let list: AppOp =
            serde_json::from_str(r#"{"op":"allow_list","call":"list","actor":"key_0123456789abcdef"}"#).unwrap();
        assert!(matches!(list, AppOp::AllowList(AllowListOp::List(ListAllowed { actor: a })) if a == actor()));
    }

    #[test]
    fn answers_decode_as_their_operation_names_them() {
        let list = AllowList { restriction_enabled: false, ips: vec![] };
        assert_eq!(decode::<ListAllowed>("APPS", &encode(&Ok(list.clone()))).unwrap(), list);
        decode::<DisallowIp>("APPS", br#"{"Ok":null}"#).unwrap();
        assert!(decode::<AllowIp>("APPS", &encode(&Ok(list))).is_err(), "a list is not an entry");
    }
}
