//! LoginWA: errors `{"error", "message", "errors"?}` with snake_case codes; validation
//! messages in the Laravel wording its clients already display.

use serde_json::{json, Map, Value};

use crate::domain::error::{ApiError, Rule};
use crate::domain::otp::Verdict;

/// The reference's words for `send_failed`.
const SEND_FAILED: &str = "WhatsApp engine failed to send the message";

pub fn error(err: &ApiError) -> (u16, Value) {
    let (status, code, message) = match err {
        ApiError::Unauthorized => (401, "unauthorized", "Invalid or missing API key"),
        ApiError::Suspended => (402, "subscription_suspended", "Subscription inactive, suspended, or past due"),
        ApiError::Validation { errors } => {
            let mut by_field = Map::new();
            for e in errors {
                let list = by_field.entry(e.field.clone()).or_insert_with(|| Value::Array(vec![]));
                if let Value::Array(list) = list {
                    list.push(Value::String(field_message(&e.field, &e.rule)));
                }
            }
            return (
                422,
                json!({"error": "validation_failed", "message": "Invalid request parameters", "errors": by_field}),
            );
        }
        ApiError::MalformedJson => {
            return (
                422,
                json!({
                    "error": "validation_failed",
                    "message": "Invalid request parameters",
                    "errors": {"body": ["The request body must be valid JSON."]},
                }),
            )
        }
        ApiError::NotFound { resource } => {
            return (404, json!({"error": "not_found", "message": format!("{} not found", capitalised(resource))}))
        }
        ApiError::RouteNotFound => (404, "not_found", "Route not found"),
        ApiError::MethodNotAllowed { .. } => (405, "method_not_allowed", "Method not allowed on this route"),
        ApiError::QuotaExceeded => {
            return (
                429,
                json!({"error": "quota_exceeded", "message": "Monthly message quota exceeded", "quota_remaining": 0}),
            )
        }
        ApiError::QuotaInsufficient { required, remaining } => {
            let message = format!("This needs {required} messages but only {remaining} remain in this month's quota");
            return (
                402,
                json!({"error": "quota_exceeded", "message": message, "required": required, "quota_remaining": remaining}),
            );
        }
        ApiError::NoDeviceAvailable => (503, "no_device_available", "No connected WhatsApp device available"),
        ApiError::DeviceNotConnected => (503, "no_device_connected", "The selected WhatsApp device is not connected"),
        ApiError::Conflict { message } => return (409, json!({"error": "conflict", "message": message})),
        ApiError::IpNotAllowed { ip } => {
            let message = "Your IP address is not whitelisted for this API key.";
            return (403, json!({"error": "ip_not_allowed", "message": message, "ip": ip}));
        }
        ApiError::Forbidden { code, message } => return (403, json!({"error": code, "message": message})),
        ApiError::DeviceLimitReached { max_devices } => {
            let message = format!("This app may link at most {max_devices} devices");
            return (403, json!({"error": "device_limit_reached", "message": message, "max_devices": max_devices}));
        }
        ApiError::PayloadTooLarge { max_bytes } => {
            let message = format!("The request body is larger than the {max_bytes} bytes this route accepts");
            return (413, json!({"error": "payload_too_large", "message": message, "max_bytes": max_bytes}));
        }
        ApiError::RateLimited { message, .. } => return (429, json!({"error": "rate_limited", "message": message})),
        ApiError::OtpRejected { verdict } => {
            let (status, message, left) = match verdict {
                Verdict::InvalidCode { attempts_left } => {
                    ("invalid_code", "OTP code is incorrect", Some(*attempts_left))
                }
                Verdict::Expired => ("expired", "OTP session has expired", None),
                Verdict::MaxAttempts | Verdict::Verified => ("max_attempts", "Too many verification attempts", None),
            };
            let mut body = json!({"error": status, "status": status, "message": message});
            if let Some(left) = left {
                body["attempts_remaining"] = left.into();
            }
            return (422, body);
        }
        ApiError::IdempotencyMismatch => {
            (422, "idempotency_key_reused", "This Idempotency-Key was already used with a different request")
        }
        ApiError::IdempotencyInFlight => (409, "idempotency_key_in_use", super::IDEMPOTENCY_IN_FLIGHT),
        ApiError::MediaFetchFailed { message } => {
            return (422, json!({"error": "media_fetch_failed", "message": message}))
        }
        ApiError::SendFailed { message_id, error_code, error_reason } => {
            return (
                502,
                json!({
                    "error": "send_failed",
                    "message": SEND_FAILED,
                    "message_id": message_id,
                    "error_code": error_code,
                    "error_reason": error_reason,
                }),
            )
        }
        ApiError::BridgeUnavailable { .. } => (502, "send_failed", SEND_FAILED),
        ApiError::Internal { .. } => (500, "internal_error", "Something went wrong on our side"),
    };
    (status, json!({"error": code, "message": message}))
}

fn capitalised(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// Laravel's wording: attribute names lose their underscores ("The device id field is required.").
fn field_message(field: &str, rule: &Rule) -> String {
    let name = field.replace('_', " ");
    match rule {
        Rule::Required => format!("The {name} field is required."),
        Rule::Type { expected } => match expected.as_str() {
            "integer" => format!("The {name} field must be an integer."),
            "boolean" => format!("The {name} field must be true or false."),
            "object" => format!("The {name} field must be an object."),
            other => format!("The {name} field must be a {other}."),
        },
        Rule::MinChars { min } => format!("The {name} field must be at least {min} characters."),
        Rule::MaxChars { max } => format!("The {name} field must not be greater than {max} characters."),
        Rule::Range { min, max } => format!("The {name} field must be between {min} and {max}."),
        Rule::Invalid { reason } => format!("The {name} field {reason}."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::error::FieldError;

    #[test]
    fn validation_errors_group_by_field_in_laravel_words() {
        let err = ApiError::Validation {
            errors: vec![
                FieldError { field: "phone".into(), rule: Rule::Required },
                FieldError { field: "device_id".into(), rule: Rule::Type { expected: "string".into() } },
                FieldError {
                    field: "phone".into(),
                    rule: Rule::Invalid { reason: "must start with the country code, not 0".into() },
                },
            ],
        };
        let (status, body) = error(&err);
        assert_eq!(status, 422);
        assert_eq!(body["error"], "validation_failed");
        assert_eq!(body["message"], "Invalid request parameters");
        assert_eq!(
            body["errors"]["phone"],
            json!(["The phone field is required.", "The phone field must start with the country code, not 0."])
        );
        assert_eq!(body["errors"]["device_id"], json!(["The device id field must be a string."]));
    }

    #[test]
    fn codes_and_statuses_follow_the_reference() {
        let cases = [
            (ApiError::Unauthorized, 401, "unauthorized"),
            (ApiError::Suspended, 402, "subscription_suspended"),
            (ApiError::QuotaExceeded, 429, "quota_exceeded"),
            (ApiError::NoDeviceAvailable, 503, "no_device_available"),
            (ApiError::DeviceNotConnected, 503, "no_device_connected"),
            (ApiError::BridgeUnavailable { message: "x".into() }, 502, "send_failed"),
            (ApiError::MalformedJson, 422, "validation_failed"),
            (ApiError::not_found("device"), 404, "not_found"),
            (ApiError::PayloadTooLarge { max_bytes: 10 }, 413, "payload_too_large"),
        ];
        for (err, status, code) in cases {
            let (s, body) = error(&err);
            assert_eq!((s, body["error"].as_str().unwrap()), (status, code), "{err:?}");
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
        assert_eq!(error(&ApiError::QuotaExceeded).1["quota_remaining"], 0);
        let refused = ApiError::SendFailed {
            message_id: "msg_1".into(),
            error_code: Some("not_on_whatsapp".into()),
            error_reason: Some("the number is not on WhatsApp".into()),
        };
        assert_eq!(
            error(&refused),
            (
                502,
                json!({
                    "error": "send_failed",
                    "message": "WhatsApp engine failed to send the message",
                    "message_id": "msg_1",
                    "error_code": "not_on_whatsapp",
                    "error_reason": "the number is not on WhatsApp",
                })
            ),
            "the reference's code and words, with what the message log says of it"
        );
        assert_eq!(error(&ApiError::not_found("device")).1["message"], "Device not found");
    }

    #[test]
    fn ip_not_allowed_is_the_references_body() {
        let (status, body) = error(&ApiError::IpNotAllowed { ip: "203.0.113.5".into() });
        assert_eq!(status, 403);
        assert_eq!(
            body.to_string(),
            r#"{"error":"ip_not_allowed","ip":"203.0.113.5","message":"Your IP address is not whitelisted for this API key."}"#
        );
    }

    #[test]
    fn internal_details_never_reach_the_client() {
        let (status, body) = error(&ApiError::internal("sqlite: disk I/O error at /secret/path"));
        assert_eq!(status, 500);
        assert!(!body.to_string().contains("secret"));
    }
}
