//! The `APPS` namespace. For now only its binding: the operations are still declared beside the
//! object (`objects::app::AppOp`) until they move here, so that the facets (webhooks, auto-replies,
//! audience, allow-list) can be declared as `facet … of App via AppOp::…` meanwhile.

#[cfg(target_arch = "wasm32")]
pub use crate::objects::app::AppOp;

/// Natively, where the object is not built, the facets alone: enough for their wire forms to be
/// tested. Removed at the merge, when `AppOp` itself is declared here.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AppOp {
    AllowList(super::access::AllowListOp),
    Audience(super::audience::AudienceOp),
    AutoReplies(super::autoreplies::AutoReplyOp),
    Webhooks(super::webhooks::WebhookOp),
}

use serde::{Deserialize, Serialize};

use crate::domain::ids::{DeviceId, MessageId};

/// One unit of the month's quota, held for a message the device is to send. A campaign
/// contact's is stored as it is (`campaign_reservations`), so its wire form is durable.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reservation {
    pub device_id: DeviceId,
    pub message_id: MessageId,
    pub quota_remaining: i64,
}

/// The `APPS` namespace: one object per app.
pub struct App;

impl super::Object for App {
    const BINDING: &'static str = "APPS";
    type Op = AppOp;
}
