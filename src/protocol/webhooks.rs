//! The app's webhook endpoints and their deliveries, a facet of the `APPS` namespace. Every
//! operation carries the device of a device-scoped key (`scope`), which sees and changes only
//! that device's endpoints.

use serde::{Deserialize, Serialize};

use super::app::{App, AppOp};
use crate::domain::delivery::DeliveryStatus;
use crate::domain::events::EventName;
use crate::domain::ids::DeviceId;
use crate::domain::webhook::Format;

crate::protocol! {
    facet WebhookOp of App via AppOp::Webhooks, WebhookHandler {
        List(ListEndpoints) -> Vec<EndpointView> => list_endpoints,
        Create(CreateEndpoint) -> CreatedEndpoint => create_endpoint,
        Get(GetEndpoint) -> EndpointView => get_endpoint,
        Update(UpdateEndpoint) -> EndpointView => update_endpoint,
        Delete(DeleteEndpoint) -> () => delete_endpoint,
        RegenerateSecret(RegenerateSecret) -> RotatedSecret => regenerate_secret,
        Test(TestEndpoint) -> TestQueued => test_endpoint,
        Deliveries(ListDeliveries) -> Vec<DeliveryView> => list_deliveries,
        Replay(Replay) -> Replayed => replay,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointSpec {
    pub url: String,
    pub events: Vec<EventName>,
    pub format: Format,
    pub device_id: Option<String>,
    pub retry_count: i64,
    pub secret: Option<String>,
}

/// Absent fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub events: Option<Vec<EventName>>,
    pub active: Option<bool>,
    pub secret: Option<String>,
    pub retry_count: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ListEndpoints {
    pub scope: Option<DeviceId>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CreateEndpoint {
    pub scope: Option<DeviceId>,
    pub spec: EndpointSpec,
    pub now: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct GetEndpoint {
    pub scope: Option<DeviceId>,
    pub id: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct UpdateEndpoint {
    pub scope: Option<DeviceId>,
    pub id: String,
    pub patch: EndpointPatch,
    pub now: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DeleteEndpoint {
    pub scope: Option<DeviceId>,
    pub id: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RegenerateSecret {
    pub scope: Option<DeviceId>,
    pub id: String,
    pub now: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TestEndpoint {
    pub scope: Option<DeviceId>,
    pub id: String,
    pub now: u64,
}

/// The endpoint's latest deliveries, newest first; `status` as clients see it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ListDeliveries {
    pub scope: Option<DeviceId>,
    pub id: String,
    pub status: Option<DeliveryStatus>,
}

/// One delivery of the endpoint again, or (without `delivery_id`) its failures from `since`
/// on. A replay keeps the delivery's id and body; only its schedule starts over.
#[derive(Debug, Serialize, Deserialize)]
pub struct Replay {
    pub scope: Option<DeviceId>,
    pub id: String,
    pub delivery_id: Option<String>,
    pub since: Option<u64>,
    pub now: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointView {
    pub id: String,
    pub url: String,
    /// None: every event.
    pub events: Vec<EventName>,
    pub format: Format,
    pub device_id: Option<String>,
    pub retry_count: i64,
    pub active: bool,
    pub disabled_reason: Option<String>,
    pub created_at: u64,
    pub health: Health,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub attempts: i64,
    pub successes: i64,
    pub failures: i64,
    pub consecutive_failures: i64,
    pub last_success_at: Option<u64>,
    pub last_failure_at: Option<u64>,
    pub last_status_code: Option<i64>,
}

/// The signing secret is shown once, when the endpoint is made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedEndpoint {
    pub endpoint: EndpointView,
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RotatedSecret {
    pub id: String,
    pub secret: String,
    /// `None` when the new secret takes over at once (a `loginwa` endpoint).
    pub previous_secret_valid_until: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestQueued {
    pub delivery_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryView {
    pub id: String,
    pub event_id: String,
    pub event: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: u64,
    pub next_attempt_at: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replayed {
    pub replayed: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{decode, encode};

    #[test]
    fn operations_travel_under_the_webhooks_facet_with_their_scope() {
        let op = AppOp::from(ListDeliveries { scope: None, id: "wh_1".into(), status: Some(DeliveryStatus::Failed) });
        assert_eq!(
            serde_json::to_string(&op).unwrap(),
            r#"{"op":"webhooks","call":"deliveries","scope":null,"id":"wh_1","status":"failed"}"#
        );
        let replay: AppOp = serde_json::from_str(
            r#"{"op":"webhooks","call":"replay","scope":"dev_0123456789abcdef","id":"wh_1","delivery_id":null,"since":18446744073709551615,"now":1}"#,
        )
        .unwrap();
        assert!(matches!(replay, AppOp::Webhooks(WebhookOp::Replay(Replay { since: Some(u64::MAX), .. }))));
    }

    #[test]
    fn answers_decode_as_their_operation_names_them() {
        let queued = TestQueued { delivery_id: "dlv_1".into() };
        assert_eq!(decode::<TestEndpoint>("APPS", &encode(&Ok(queued.clone()))).unwrap(), queued);
        assert!(decode::<Replay>("APPS", &encode(&Ok(queued))).is_err());
        decode::<DeleteEndpoint>("APPS", br#"{"Ok":null}"#).unwrap();
    }
}
