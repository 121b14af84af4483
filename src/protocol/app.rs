//! The `APPS` namespace. For now only its binding: the operations are still declared beside the
//! object (`objects::app::AppOp`) until they move here, so that the facets (webhooks, auto-replies,
//! audience, allow-list) can be declared as `facet … of App via AppOp::…` meanwhile.

#[cfg(target_arch = "wasm32")]
pub use crate::objects::app::AppOp;

/// Natively, where the object is not built, the facets alone: enough for their wire forms to be
/// tested. Removed at the merge, when `AppOp` itself is declared here.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AppOp {
    AllowList(super::access::AllowListOp),
}

/// The `APPS` namespace: one object per app.
pub struct App;

impl super::Object for App {
    const BINDING: &'static str = "APPS";
    type Op = AppOp;
}
