//! The `APPS` namespace. For now only its binding: the operations are still declared beside the
//! object (`objects::app::AppOp`) until they move here, so that the facets (webhooks, auto-replies,
//! audience, allow-list) can be declared as `facet … of App via AppOp::…` meanwhile.

pub use crate::objects::app::AppOp;

/// The `APPS` namespace: one object per app.
pub struct App;

impl super::Object for App {
    const BINDING: &'static str = "APPS";
    type Op = AppOp;
}
