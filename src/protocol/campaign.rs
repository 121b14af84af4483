//! Broadcast campaigns, one object per campaign (named by its id): what the edge asks of
//! them, the views they answer with, and the contact outcomes devices report.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use wagate_contract::wire::{MediaKind, MediaRef};

use crate::domain::campaign::{CampaignStatus, ContactFilter, ContactStatus, Progress};
use crate::domain::ids::{AppId, CampaignId, DeviceId};
use crate::domain::message::MessageStatus;

/// Contacts per page of `GET …/contacts`.
pub const CONTACTS_PAGE: i64 = 50;

crate::protocol! {
    /// The `CAMPAIGNS` namespace.
    Campaign = "CAMPAIGNS", CampaignOp, CampaignHandler {
        Create(CreateCampaign) -> CampaignView => create,
        Get(GetCampaign) -> CampaignView => get,
        Contacts(ListContacts) -> ContactPage => contacts,
        Send(SendCampaign) -> CampaignView => send,
        Pause(PauseCampaign) -> CampaignView => pause,
        Resume(ResumeCampaign) -> CampaignView => resume,
        Delete(DeleteCampaign) -> Deleted => delete,
        /// A contact's message moved on. Sent from the device's `campaign_outbox`, which
        /// stores it serialized: its wire form is durable, see the tests.
        Outcome(ContactOutcome) -> () => outcome,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContactSpec {
    /// International number, digits only.
    pub phone: String,
    pub name: Option<String>,
    pub variables: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignMedia {
    pub kind: MediaKind,
    pub media: MediaRef,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CampaignSpec {
    pub campaign_id: CampaignId,
    pub app_id: AppId,
    pub name: String,
    /// The template, already checked against every contact's values.
    pub message: String,
    pub media: Option<CampaignMedia>,
    pub delay_seconds: u32,
    pub schedule_at: Option<u64>,
    pub device_ids: Vec<DeviceId>,
    pub contacts: Vec<ContactSpec>,
    pub now: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CreateCampaign {
    pub spec: CampaignSpec,
}

/// Every operation the edge sends names the app it acts for: another app's campaign is not
/// found, as if absent.
#[derive(Debug, Serialize, Deserialize)]
pub struct GetCampaign {
    pub app_id: AppId,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ListContacts {
    pub app_id: AppId,
    pub status: Option<ContactFilter>,
    pub page: i64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SendCampaign {
    pub app_id: AppId,
    pub now: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PauseCampaign {
    pub app_id: AppId,
    pub now: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ResumeCampaign {
    pub app_id: AppId,
    pub now: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DeleteCampaign {
    pub app_id: AppId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactOutcome {
    /// The contact's index in the campaign.
    pub contact: i64,
    pub message_id: String,
    pub status: MessageStatus,
    pub error_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignView {
    pub id: CampaignId,
    pub name: String,
    pub status: CampaignStatus,
    pub pause_reason: Option<String>,
    /// Only while sending: what holds the next contact back, and until when.
    pub waiting: Option<Waiting>,
    pub total_contacts: u64,
    pub progress: Progress,
    pub delay_seconds: u32,
    pub schedule_at: Option<u64>,
    pub media: Option<CampaignMedia>,
    pub device_ids: Vec<DeviceId>,
    pub created_at: u64,
    pub started_at: Option<u64>,
    pub completed_at: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Waiting {
    pub reason: Option<String>,
    pub until: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactPage {
    pub page: i64,
    /// Contacts the filter matches, on every page.
    pub total: i64,
    pub contacts: Vec<ContactView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactView {
    pub index: i64,
    pub phone: String,
    pub name: Option<String>,
    pub text: String,
    pub status: ContactStatus,
    pub message_id: Option<String>,
    pub device_id: Option<String>,
    pub error_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deleted {
    pub id: CampaignId,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{decode, encode};

    fn app() -> AppId {
        AppId::parse("app_0123456789abcdef").unwrap()
    }

    #[test]
    fn a_stored_outcome_of_an_older_deployment_still_decodes() {
        // As a device's `campaign_outbox` holds it, written before the protocol existed.
        let stored = r#"{"op":"outcome","contact":3,"message_id":"msg_0123456789abcdef0123456789abcdef","status":"FAILED","error_code":"not_on_whatsapp"}"#;
        let CampaignOp::Outcome(outcome) = serde_json::from_str(stored).unwrap() else { panic!("not an outcome") };
        let expected = ContactOutcome {
            contact: 3,
            message_id: "msg_0123456789abcdef0123456789abcdef".into(),
            status: MessageStatus::Failed,
            error_code: Some("not_on_whatsapp".into()),
        };
        assert_eq!(outcome, expected);
        assert_eq!(serde_json::to_string(&CampaignOp::from(expected)).unwrap(), stored, "and is written the same");
        let delivered: CampaignOp = serde_json::from_str(
            r#"{"op":"outcome","contact":0,"message_id":"m","status":"DELIVERED","error_code":null}"#,
        )
        .unwrap();
        assert!(matches!(
            delivered,
            CampaignOp::Outcome(ContactOutcome { status: MessageStatus::Delivered, error_code: None, .. })
        ));
    }

    #[test]
    fn operations_keep_their_wire_form() {
        let pause = CampaignOp::from(PauseCampaign { app_id: app(), now: 7 });
        assert_eq!(serde_json::to_string(&pause).unwrap(), r#"{"op":"pause","app_id":"app_0123456789abcdef","now":7}"#);
        let list = CampaignOp::from(ListContacts { app_id: app(), status: Some(ContactFilter::Sent), page: 2 });
        assert_eq!(
            serde_json::to_string(&list).unwrap(),
            r#"{"op":"contacts","app_id":"app_0123456789abcdef","status":"sent","page":2}"#
        );
        let get: CampaignOp = serde_json::from_str(r#"{"op":"get","app_id":"app_0123456789abcdef"}"#).unwrap();
        assert!(matches!(get, CampaignOp::Get(GetCampaign { app_id }) if app_id == app()));
        let create: CampaignOp = serde_json::from_str(
            r#"{"op":"create","spec":{"campaign_id":"camp_0123456789abcdef","app_id":"app_0123456789abcdef",
                "name":"Sale","message":"Hi {name}","media":null,"delay_seconds":5,"schedule_at":null,
                "device_ids":[],"contacts":[{"phone":"628111","name":"Ani","variables":{"city":"Jakarta"}}],"now":1}}"#,
        )
        .unwrap();
        assert!(
            matches!(create, CampaignOp::Create(CreateCampaign { spec }) if spec.contacts[0].variables["city"] == "Jakarta")
        );
    }

    #[test]
    fn answers_decode_as_their_operation_names_them() {
        let deleted = Deleted { id: CampaignId::parse("camp_0123456789abcdef").unwrap() };
        assert_eq!(decode::<DeleteCampaign>("CAMPAIGNS", &encode(&Ok(deleted.clone()))).unwrap(), deleted);
        decode::<ContactOutcome>("CAMPAIGNS", br#"{"Ok":null}"#).unwrap();
        assert!(decode::<GetCampaign>("CAMPAIGNS", &encode(&Ok(deleted))).is_err(), "a view is not a deletion");
    }
}
