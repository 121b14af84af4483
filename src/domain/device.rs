//! Where a linked WhatsApp number stands.

use serde::{Deserialize, Serialize};

/// A device's pairing and connection state, as its views, events and the app's device list
/// spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    /// Created; the bridge has not yet started its pairing.
    Registering,
    /// A QR code (or pair code) waits to be scanned.
    QrWaiting,
    Online,
    Offline,
    /// Logged out and retired; only its `device.disconnected` event says so.
    Deleted,
}

impl DeviceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registering => "registering",
            Self::QrWaiting => "qr_waiting",
            Self::Online => "online",
            Self::Offline => "offline",
            Self::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Registering, Self::QrWaiting, Self::Online, Self::Offline, Self::Deleted]
            .into_iter()
            .find(|status| status.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_back_as_they_are_written() {
        for status in [
            DeviceStatus::Registering,
            DeviceStatus::QrWaiting,
            DeviceStatus::Online,
            DeviceStatus::Offline,
            DeviceStatus::Deleted,
        ] {
            assert_eq!(DeviceStatus::parse(status.as_str()), Some(status));
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        assert_eq!(DeviceStatus::parse("ONLINE"), None);
    }
}
