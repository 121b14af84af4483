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

/// What the bridge (an event, or its answer to a link or a send) says of the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// A QR code to scan, for a new pairing session.
    QrShown,
    Connected,
    Disconnected,
}

/// Work a status change asks for, carried out by the device's object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUp {
    /// Record the change's event with the app, which mirrors the status in its device list.
    Announce,
    /// Run the queue now: online, it sends what waited; offline, it starts the expiry clock
    /// on what now waits.
    DrainQueue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub status: DeviceStatus,
    pub follow_ups: &'static [FollowUp],
}

/// Where `signal` takes a device that is `current`, or `None` when it changes nothing: a
/// deleted device stays deleted whatever the bridge still reports, and a QR arriving for a
/// device already online is a stale pairing session's. A repeated connect is announced again
/// (the phone may have changed) and runs the queue, which costs nothing when it is empty.
pub fn transition(current: DeviceStatus, signal: Signal) -> Option<Transition> {
    use FollowUp::{Announce, DrainQueue};
    let (status, follow_ups): (_, &'static [FollowUp]) = match (current, signal) {
        (DeviceStatus::Deleted, _) | (DeviceStatus::Online, Signal::QrShown) => return None,
        (_, Signal::QrShown) => (DeviceStatus::QrWaiting, &[Announce]),
        (_, Signal::Connected) => (DeviceStatus::Online, &[Announce, DrainQueue]),
        (_, Signal::Disconnected) => (DeviceStatus::Offline, &[Announce, DrainQueue]),
    };
    Some(Transition { status, follow_ups })
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

    fn to(current: DeviceStatus, signal: Signal) -> Option<(DeviceStatus, Vec<FollowUp>)> {
        transition(current, signal).map(|t| (t.status, t.follow_ups.to_vec()))
    }

    #[test]
    fn pairing_shows_a_qr_then_connects_and_runs_the_queue() {
        use FollowUp::*;
        assert_eq!(to(DeviceStatus::Registering, Signal::QrShown), Some((DeviceStatus::QrWaiting, vec![Announce])));
        assert_eq!(to(DeviceStatus::QrWaiting, Signal::QrShown), Some((DeviceStatus::QrWaiting, vec![Announce])));
        assert_eq!(
            to(DeviceStatus::QrWaiting, Signal::Connected),
            Some((DeviceStatus::Online, vec![Announce, DrainQueue]))
        );
        assert_eq!(to(DeviceStatus::Offline, Signal::QrShown), Some((DeviceStatus::QrWaiting, vec![Announce])));
    }

    #[test]
    fn a_disconnect_announces_and_starts_the_queues_expiry_clock() {
        use FollowUp::*;
        for current in [DeviceStatus::Online, DeviceStatus::QrWaiting, DeviceStatus::Offline] {
            assert_eq!(to(current, Signal::Disconnected), Some((DeviceStatus::Offline, vec![Announce, DrainQueue])));
        }
    }

    #[test]
    fn a_disconnect_while_registering_leaves_it_offline() {
        assert_eq!(to(DeviceStatus::Registering, Signal::Disconnected).map(|t| t.0), Some(DeviceStatus::Offline));
    }

    #[test]
    fn a_duplicate_connect_is_announced_again_and_runs_the_queue() {
        use FollowUp::*;
        assert_eq!(
            to(DeviceStatus::Online, Signal::Connected),
            Some((DeviceStatus::Online, vec![Announce, DrainQueue]))
        );
    }

    #[test]
    fn a_stale_qr_for_an_online_device_changes_nothing() {
        assert_eq!(to(DeviceStatus::Online, Signal::QrShown), None);
    }

    #[test]
    fn nothing_the_bridge_reports_revives_a_deleted_device() {
        for signal in [Signal::QrShown, Signal::Connected, Signal::Disconnected] {
            assert_eq!(to(DeviceStatus::Deleted, signal), None);
        }
    }
}
