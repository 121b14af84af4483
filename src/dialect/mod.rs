//! The two public API dialects: how each one words errors and wraps results.
//! Pure: handlers hand over an [`ApiError`] or a payload, these decide the bytes.

pub mod admin;
pub mod loginwa;
pub mod loginwa_access;
pub mod loginwa_autoreplies;
pub mod loginwa_campaigns;
pub mod loginwa_devices;
pub mod loginwa_otp;
pub mod loginwa_webhooks;
pub mod routes;
pub mod spwp;

use serde_json::Value;

use crate::domain::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    LoginWa,
    Spwp,
}

impl Dialect {
    /// SPWP's paths speak SPWP; everything else (including the operator API) speaks LoginWA.
    pub fn of_path(path: &str) -> Self {
        match routes::area(&routes::segments(path)).0 {
            routes::Area::Spwp => Self::Spwp,
            routes::Area::Admin | routes::Area::LoginWa | routes::Area::Service => Self::LoginWa,
        }
    }
}

/// Both dialects' words for a retry that overlaps the first request under its key (Stripe's).
pub const IDEMPOTENCY_IN_FLIGHT: &str =
    "A request with this Idempotency-Key is still being processed; retry once it has answered";

/// What every response of a request shares.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub request_id: String,
    pub path: String,
    /// RFC 3339 with milliseconds, UTC.
    pub timestamp: String,
}

/// Status code and JSON body of an error in `dialect`.
pub fn error(dialect: Dialect, err: &ApiError, meta: &RequestMeta) -> (u16, Value) {
    match dialect {
        Dialect::LoginWa => loginwa::error(err),
        Dialect::Spwp => spwp::error(err, meta),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_decides_the_dialect() {
        assert_eq!(Dialect::of_path("/api/v1/public/messages/text"), Dialect::Spwp);
        assert_eq!(Dialect::of_path("/api/v1/messages/send"), Dialect::LoginWa);
        assert_eq!(Dialect::of_path("/api/auth/start"), Dialect::LoginWa);
        assert_eq!(Dialect::of_path("/api/v1/publications"), Dialect::LoginWa);
        assert_eq!(Dialect::of_path("/api/v1/public"), Dialect::Spwp);
        assert_eq!(Dialect::of_path("/api/v1/public/"), Dialect::Spwp);
        assert_eq!(Dialect::of_path("/admin/v1/apps"), Dialect::LoginWa);
    }
}
