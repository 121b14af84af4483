//! The one error type of the API tier. Durable Objects return it across their
//! boundary as JSON; each dialect maps it to its status code and body in one place.

use serde::{Deserialize, Serialize};

use super::otp::Verdict;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ApiError {
    /// Missing, unknown or revoked API key (or admin token).
    Unauthorized,
    Suspended,
    Validation {
        errors: Vec<FieldError>,
    },
    MalformedJson,
    NotFound {
        resource: String,
    },
    RouteNotFound,
    /// The path exists but not with this method; `allow` lists those it has (the `Allow` header).
    MethodNotAllowed {
        allow: String,
    },
    QuotaExceeded,
    /// A batch (a campaign) needs more of the month's quota than is left.
    QuotaInsufficient {
        required: i64,
        remaining: i64,
    },
    /// The app has no connected device to send from.
    NoDeviceAvailable,
    /// The chosen device (by id or by key scope) is not connected.
    DeviceNotConnected,
    /// The app already has as many devices as its plan allows.
    DeviceLimitReached {
        max_devices: i64,
    },
    Conflict {
        message: String,
    },
    /// The app allows calls only from listed addresses, and this one is not.
    IpNotAllowed {
        ip: String,
    },
    /// The caller is known (or holds a link) but may not do this; `code` says why.
    Forbidden {
        code: String,
        message: String,
    },
    /// The request body is larger than its route accepts; refused before it is read.
    PayloadTooLarge {
        max_bytes: u64,
    },
    /// Too many requests; the client may retry after this many seconds.
    RateLimited {
        retry_after_secs: u64,
        message: String,
        /// Extra response headers (the IETF `RateLimit` pair), name and value.
        #[serde(default)]
        headers: Vec<(String, String)>,
    },
    /// A one-time code was not accepted.
    OtpRejected {
        verdict: Verdict,
    },
    /// An `Idempotency-Key` reused for a different request.
    IdempotencyMismatch,
    /// The first request with this `Idempotency-Key` is still being handled.
    IdempotencyInFlight,
    /// A media `source` could not be fetched, or is not the file it claims to be.
    MediaFetchFailed {
        message: String,
    },
    /// WhatsApp refused a message while its request waited for the outcome (`SEND_WAIT_MS`):
    /// it is FAILED for good (its quota unit goes back), and `error_code` / `error_reason` say
    /// why, as the message log and the `message.failed` webhook do.
    SendFailed {
        message_id: String,
        error_code: Option<String>,
        error_reason: Option<String>,
    },
    /// The device bridge could not be reached or refused the call.
    BridgeUnavailable {
        message: String,
    },
    /// Something unexpected; `detail` is logged, never shown to clients.
    Internal {
        detail: String,
    },
}

impl ApiError {
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::Internal { detail: detail.to_string() }
    }

    pub fn not_found(resource: &str) -> Self {
        Self::NotFound { resource: resource.to_owned() }
    }

    pub fn method_not_allowed(allow: &str) -> Self {
        Self::MethodNotAllowed { allow: allow.to_owned() }
    }

    /// Whether this refusal is the request's final answer, which an `Idempotency-Key` replays:
    /// a failed send stays failed, so a retry under the key must not send again (a new key does).
    pub fn is_final(&self) -> bool {
        matches!(self, Self::SendFailed { .. })
    }

    pub fn field(field: &str, rule: Rule) -> Self {
        Self::Validation { errors: vec![FieldError { field: field.to_owned(), rule }] }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for ApiError {}

/// One failed rule on one field; each dialect words it in its own style.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub rule: Rule,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Rule {
    Required,
    /// The value has the wrong JSON type; `expected` is "string", "integer", "boolean", "object", ….
    Type {
        expected: String,
    },
    MinChars {
        min: usize,
    },
    MaxChars {
        max: usize,
    },
    Range {
        min: i64,
        max: i64,
    },
    /// Any other failure, worded as the predicate after the field name ("must have at least 7 digits").
    Invalid {
        reason: String,
    },
}
