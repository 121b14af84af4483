//! The part of the audience and auto-reply facets (`store::audience`, `store::autoreplies`)
//! only the app's object can do: reserve a message's quota, whose period turns over by the
//! runtime's clock.

use super::app::AppObject;
use crate::domain::error::ApiError;
use crate::domain::ids::DeviceId;
use crate::protocol::app::Reservation;
use crate::store::audience::Quota;

impl Quota for AppObject {
    fn reserve(&self, device_id: &DeviceId, period: &str, now: u64) -> Result<Reservation, ApiError> {
        AppObject::reserve(self, Some(device_id.clone()), period, now)
    }
}
