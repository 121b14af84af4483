//! What a device-scoped API key may do. A key bound to one WhatsApp account (as SPWP's keys
//! are) acts for that account only: it never sees, changes or receives anything of the app's
//! other numbers, and it cannot change what the whole app shares. The router asks [`admit`]
//! once per request with the route's [`Capability`]; the confined routes then pick their
//! device with [`device_for`] / [`devices_for`] and their resources with [`visible`].

use super::error::ApiError;
use super::ids::DeviceId;

/// What a request asks to do, one per route family of the tenant API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// Sending (either dialect) and one-time codes, which are sends.
    Send,
    MessageStatus,
    CheckPhone,
    ListDevices,
    /// One device by id: get, delete, QR, refresh, link token.
    Device,
    /// Linking a new number to the app.
    CreateDevice,
    Webhooks,
    AutoReplies,
    Campaigns,
    ReadIpWhitelist,
    ChangeIpWhitelist,
    OptOuts,
}

/// How a scoped key stands towards a capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Works on the key's own device: other devices' resources are not found, a `device_id`
    /// is forced to the key's device and another one is refused.
    Confined,
    /// Readable: app-wide data that says nothing about the other numbers.
    ReadOnly,
    /// App-wide: only an unscoped key may do it.
    Refused,
}

/// The matrix (README "Device-scoped keys"). App-wide settings are refused because one number's
/// key must not lock the app's other keys out (IP whitelist), re-enable messages to someone who
/// said STOP, or read which customers of the other numbers opted out (opt-outs). Linking a new
/// number widens the app, which only the app's owner may do.
pub fn reach(capability: Capability) -> Reach {
    match capability {
        Capability::Send
        | Capability::MessageStatus
        | Capability::CheckPhone
        | Capability::ListDevices
        | Capability::Device
        | Capability::Webhooks
        | Capability::AutoReplies
        | Capability::Campaigns => Reach::Confined,
        Capability::ReadIpWhitelist => Reach::ReadOnly,
        Capability::CreateDevice | Capability::ChangeIpWhitelist | Capability::OptOuts => Reach::Refused,
    }
}

/// Whether a key with `scope` may use `capability` at all; a refusal is a 403 in the dialect.
pub fn admit(scope: Option<&DeviceId>, capability: Capability) -> Result<(), ApiError> {
    match (scope, reach(capability)) {
        (Some(device), Reach::Refused) => Err(ApiError::Forbidden {
            code: SCOPED_KEY.into(),
            message: format!("This API key acts for device {device} only; this is an app-wide operation"),
        }),
        _ => Ok(()),
    }
}

/// The error code of a refusal, in both dialects' wording (LoginWA `error`).
pub const SCOPED_KEY: &str = "key_scoped_to_device";

/// Whether a resource owned by `owner` (a device id; `None` for app-wide) is the key's to see.
pub fn visible(scope: Option<&DeviceId>, owner: Option<&str>) -> bool {
    scope.is_none_or(|scope| owner == Some(scope.as_str()))
}

/// The device a request acts for: a scoped key's own device whether asked or not; another one
/// is not found (as it would be for another app), so a key learns nothing about its siblings.
pub fn device_for(scope: Option<&DeviceId>, asked: Option<DeviceId>) -> Result<Option<DeviceId>, ApiError> {
    match (scope, asked) {
        (Some(scope), Some(asked)) if *scope != asked => Err(ApiError::not_found("device")),
        (Some(scope), _) => Ok(Some(scope.clone())),
        (None, asked) => Ok(asked),
    }
}

/// A campaign's numbers: a scoped key's campaigns go out from its own device only.
pub fn devices_for(scope: Option<&DeviceId>, asked: Vec<DeviceId>) -> Result<Vec<DeviceId>, ApiError> {
    match scope {
        None => Ok(asked),
        Some(scope) => match asked.iter().find(|d| *d != scope) {
            Some(_) => Err(ApiError::not_found("device")),
            None => Ok(vec![scope.clone()]),
        },
    }
}

/// The one device a set of numbers amounts to, as campaigns are indexed for scoped listing.
pub fn sole_device(devices: &[DeviceId]) -> Option<&DeviceId> {
    match devices {
        [only] => Some(only),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> DeviceId {
        DeviceId::generate()
    }

    #[test]
    fn unscoped_keys_may_do_everything() {
        for capability in [Capability::CreateDevice, Capability::ChangeIpWhitelist, Capability::OptOuts] {
            assert_eq!(admit(None, capability), Ok(()));
        }
    }

    #[test]
    fn scoped_keys_are_refused_app_wide_operations_with_403() {
        let own = dev();
        for capability in [Capability::CreateDevice, Capability::ChangeIpWhitelist, Capability::OptOuts] {
            match admit(Some(&own), capability) {
                Err(ApiError::Forbidden { code, message }) => {
                    assert_eq!(code, SCOPED_KEY);
                    assert!(message.contains(own.as_str()));
                }
                other => panic!("{capability:?}: {other:?}"),
            }
        }
        for capability in [
            Capability::Send,
            Capability::MessageStatus,
            Capability::CheckPhone,
            Capability::ListDevices,
            Capability::Device,
            Capability::Webhooks,
            Capability::AutoReplies,
            Capability::Campaigns,
            Capability::ReadIpWhitelist,
        ] {
            assert_eq!(admit(Some(&own), capability), Ok(()), "{capability:?}");
        }
    }

    #[test]
    fn a_scoped_key_sees_only_its_own_devices_resources() {
        let (own, other) = (dev(), dev());
        assert!(visible(Some(&own), Some(own.as_str())));
        assert!(!visible(Some(&own), Some(other.as_str())));
        assert!(!visible(Some(&own), None), "app-wide resources cover the other numbers too");
        assert!(visible(None, None) && visible(None, Some(other.as_str())));
    }

    #[test]
    fn a_scoped_keys_device_is_forced_and_another_is_not_found() {
        let (own, other) = (dev(), dev());
        assert_eq!(device_for(Some(&own), None), Ok(Some(own.clone())));
        assert_eq!(device_for(Some(&own), Some(own.clone())), Ok(Some(own.clone())));
        assert_eq!(device_for(Some(&own), Some(other.clone())), Err(ApiError::not_found("device")));
        assert_eq!(device_for(None, Some(other.clone())), Ok(Some(other.clone())));
        assert_eq!(device_for(None, None), Ok(None));
    }

    #[test]
    fn a_scoped_keys_campaigns_go_out_from_its_device_only() {
        let (own, other) = (dev(), dev());
        assert_eq!(devices_for(Some(&own), vec![]), Ok(vec![own.clone()]), "not all the app's numbers");
        assert_eq!(devices_for(Some(&own), vec![own.clone()]), Ok(vec![own.clone()]));
        assert!(devices_for(Some(&own), vec![own.clone(), other.clone()]).is_err());
        assert_eq!(devices_for(None, vec![other.clone()]), Ok(vec![other.clone()]));
        assert_eq!(sole_device(std::slice::from_ref(&own)), Some(&own));
        assert_eq!(sole_device(&[own, other]), None);
        assert_eq!(sole_device(&[]), None);
    }
}
