//! What the app's object keeps for its campaigns, a facet of the `APPS` namespace: the
//! campaign index (for listing), the opt-out list, and the choice and reservation of the number
//! that sends a campaign's next message (asked by the campaign objects).

use serde::{Deserialize, Serialize};

use super::app::{App, AppOp, Reservation};
use crate::domain::ids::{CampaignId, DeviceId};

/// Campaigns per page of the app's listing.
pub const PAGE_SIZE: i64 = 20;

crate::protocol! {
    facet AudienceOp of App via AppOp::Audience, AudienceHandler {
        Index(IndexCampaign) -> () => index_campaign,
        Unindex(UnindexCampaign) -> () => unindex_campaign,
        Page(ListCampaigns) -> CampaignIndex => list_campaigns,
        OptOuts(ListOptOuts) -> Vec<OptOut> => list_opt_outs,
        /// Answers the number as listed.
        AddOptOut(AddOptOut) -> String => add_opt_out,
        RemoveOptOut(RemoveOptOut) -> () => remove_opt_out,
        Pick(PickSender) -> Pick => pick_sender,
        Reserve(ReserveContact) -> Reservation => reserve_contact,
    }
}

/// `device_id`: the campaign's one number, if it has only one (what a scoped key may list).
#[derive(Debug, Serialize, Deserialize)]
pub struct IndexCampaign {
    pub campaign_id: CampaignId,
    pub device_id: Option<DeviceId>,
    pub now: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct UnindexCampaign {
    pub campaign_id: CampaignId,
}

/// Campaign ids, newest first; with `scope`, only those sent from that one device.
#[derive(Debug, Serialize, Deserialize)]
pub struct ListCampaigns {
    pub page: i64,
    pub scope: Option<DeviceId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignIndex {
    /// Campaigns the scope sees, on every page.
    pub total: i64,
    pub ids: Vec<CampaignId>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ListOptOuts {}

/// Newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptOut {
    pub phone: String,
    /// `keyword` (the contact said so) or `api`.
    pub source: String,
    pub created_at: u64,
}

/// `phone`: international, digits only.
#[derive(Debug, Serialize, Deserialize)]
pub struct AddOptOut {
    pub phone: String,
    pub now: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RemoveOptOut {
    pub phone: String,
}

/// The number to send a campaign's next message to `phone` (none: only whether one is online).
#[derive(Debug, Serialize, Deserialize)]
pub struct PickSender {
    pub device_ids: Vec<DeviceId>,
    pub phone: Option<String>,
    pub now: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "pick", rename_all = "snake_case")]
pub enum Pick {
    Device {
        device_id: DeviceId,
    },
    OptedOut,
    NoDevice,
    /// Every online number has used today's warm-up allowance; more from `until`.
    WarmingUp {
        until: u64,
    },
}

/// Reserves quota for a campaign contact (idempotent by `reference`) and counts it against
/// the number's warm-up allowance.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReserveContact {
    pub device_id: DeviceId,
    pub reference: String,
    pub period: String,
    pub now: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::MessageId;
    use crate::protocol::{decode, encode};

    #[test]
    fn operations_travel_under_the_audience_facet() {
        let campaign_id = CampaignId::parse("camp_0123456789abcdef").unwrap();
        let op = AppOp::from(UnindexCampaign { campaign_id });
        assert_eq!(
            serde_json::to_string(&op).unwrap(),
            r#"{"op":"audience","call":"unindex","campaign_id":"camp_0123456789abcdef"}"#
        );
        let pick: AppOp =
            serde_json::from_str(r#"{"op":"audience","call":"pick","device_ids":[],"phone":"628111","now":1}"#)
                .unwrap();
        assert!(matches!(pick, AppOp::Audience(AudienceOp::Pick(PickSender { phone: Some(_), .. }))));
        let list: AppOp = serde_json::from_str(r#"{"op":"audience","call":"opt_outs"}"#).unwrap();
        assert!(matches!(list, AppOp::Audience(AudienceOp::OptOuts(_))));
    }

    #[test]
    fn a_stored_reservation_keeps_its_form() {
        // As `campaign_reservations` holds it, so a retried dispatch gets the same message id.
        let stored = r#"{"device_id":"dev_0123456789abcdef","message_id":"msg_0123456789abcdef0123456789abcdef","quota_remaining":41}"#;
        let reservation: Reservation = serde_json::from_str(stored).unwrap();
        assert_eq!(reservation.message_id, MessageId::parse("msg_0123456789abcdef0123456789abcdef").unwrap());
        assert_eq!(serde_json::to_string(&reservation).unwrap(), stored);
    }

    #[test]
    fn picks_decode_as_the_campaign_reads_them() {
        let waiting = Pick::WarmingUp { until: 9 };
        assert_eq!(serde_json::to_string(&waiting).unwrap(), r#"{"pick":"warming_up","until":9}"#);
        assert_eq!(decode::<PickSender>("APPS", &encode(&Ok(waiting.clone()))).unwrap(), waiting);
        assert!(decode::<PickSender>("APPS", br#"{"Ok":null}"#).is_err());
    }
}
