//! Field validation of JSON request bodies, collecting every error at once so a
//! client can fix its request in one round trip.

use serde_json::{Map, Value};

use super::error::{ApiError, FieldError, Rule};
use super::ids::DeviceId;
use super::phone::{CountryCode, Recipient};

/// Parses a request body that must be a JSON object.
pub fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::field("body", Rule::Type { expected: "object".into() })),
        Err(_) => Err(ApiError::MalformedJson),
    }
}

pub struct Fields<'a> {
    body: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    pub fn new(body: &'a Map<String, Value>) -> Self {
        Self { body, errors: Vec::new() }
    }

    pub fn fail(&mut self, field: &str, rule: Rule) {
        self.errors.push(FieldError { field: field.to_owned(), rule });
    }

    fn present(&self, field: &str) -> Option<&'a Value> {
        self.body.get(field).filter(|v| !v.is_null())
    }

    /// A string whose length in characters lies in `min..=max`.
    pub fn string(&mut self, field: &str, required: bool, min: usize, max: usize) -> Option<String> {
        let Some(value) = self.present(field) else {
            if required {
                self.fail(field, Rule::Required);
            }
            return None;
        };
        let Some(s) = value.as_str() else {
            self.fail(field, Rule::Type { expected: "string".into() });
            return None;
        };
        let chars = s.chars().count();
        if required && s.trim().is_empty() {
            self.fail(field, Rule::Required);
        } else if chars < min {
            self.fail(field, Rule::MinChars { min });
        } else if chars > max {
            self.fail(field, Rule::MaxChars { max });
        } else {
            return Some(s.to_owned());
        }
        None
    }

    pub fn integer(&mut self, field: &str, min: i64, max: i64) -> Option<i64> {
        let value = self.present(field)?;
        // JSON has one number type: `7.0` is the integer 7 (as JSON Schema also says).
        let integral = value.as_f64().filter(|n| n.fract() == 0.0 && n.abs() < 9.0e15).map(|n| n as i64);
        match value.as_i64().or(integral) {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(_) => {
                self.fail(field, Rule::Range { min, max });
                None
            }
            None => {
                self.fail(field, Rule::Type { expected: "integer".into() });
                None
            }
        }
    }

    /// A JSON number in `min..=max`.
    pub fn number(&mut self, field: &str, required: bool, min: f64, max: f64) -> Option<f64> {
        let Some(value) = self.present(field) else {
            if required {
                self.fail(field, Rule::Required);
            }
            return None;
        };
        match value.as_f64() {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(_) => {
                self.fail(field, Rule::Invalid { reason: format!("must be between {min} and {max}") });
                None
            }
            None => {
                self.fail(field, Rule::Type { expected: "number".into() });
                None
            }
        }
    }

    pub fn boolean(&mut self, field: &str) -> Option<bool> {
        let value = self.present(field)?;
        let b = value.as_bool();
        if b.is_none() {
            self.fail(field, Rule::Type { expected: "boolean".into() });
        }
        b
    }

    /// Any JSON object, kept as is (client metadata).
    pub fn object(&mut self, field: &str) -> Option<Map<String, Value>> {
        let value = self.present(field)?;
        let map = value.as_object().cloned();
        if map.is_none() {
            self.fail(field, Rule::Type { expected: "object".into() });
        }
        map
    }

    /// A person's number (not a group), as international digits; a leading-zero local number
    /// takes `default_country_code` when there is one.
    pub fn phone_number(&mut self, field: &str, required: bool, default_country_code: Option<&str>) -> Option<String> {
        let text = self.string(field, required, 1, 64)?;
        self.person(field, Recipient::parse(&text, default_country_code))
    }

    fn person(&mut self, field: &str, parsed: Result<Recipient, super::phone::PhoneError>) -> Option<String> {
        match parsed {
            Ok(Recipient::Phone(digits)) => Some(digits),
            Ok(Recipient::Group(_)) => {
                self.fail(field, Rule::Invalid { reason: "must be a phone number, not a group".into() });
                None
            }
            Err(e) => {
                self.fail(field, Rule::Invalid { reason: e.to_string() });
                None
            }
        }
    }

    /// A country calling code (`62` or `+62`).
    pub fn country_code(&mut self, field: &str) -> Option<CountryCode> {
        let text = self.string(field, false, 1, 16)?;
        let code = CountryCode::parse(&text);
        if code.is_none() {
            self.fail(field, Rule::Invalid { reason: CountryCode::RULE.into() });
        }
        code
    }

    /// A person's number (not a group) completed with LoginWA's `country_code` when the request
    /// gives one (`Recipient::parse_with_country_code`), else with the app's default.
    pub fn phone_number_with(&mut self, field: &str, given: Option<&CountryCode>, app_default: &str) -> Option<String> {
        let text = self.string(field, true, 1, 64)?;
        self.person(field, Recipient::parse_with_country_code(&text, given, app_default))
    }

    /// A `dev_…` id.
    pub fn device_id(&mut self, field: &str) -> Option<DeviceId> {
        let text = self.string(field, false, 1, 64)?;
        let id = DeviceId::parse(&text);
        if id.is_none() {
            self.fail(field, Rule::Invalid { reason: "is not a device id".into() });
        }
        id
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation { errors: self.errors })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn rules(result: Result<(), ApiError>) -> Vec<(String, Rule)> {
        match result {
            Err(ApiError::Validation { errors }) => errors.into_iter().map(|e| (e.field, e.rule)).collect(),
            other => panic!("expected validation errors, got {other:?}"),
        }
    }

    #[test]
    fn collects_every_error() {
        let b = body(json!({"message": "", "meta": 3, "count": 99, "flag": "yes"}));
        let mut f = Fields::new(&b);
        assert_eq!(f.string("phone", true, 1, 20), None);
        assert_eq!(f.string("message", true, 1, 4096), None);
        assert_eq!(f.object("meta"), None);
        assert_eq!(f.integer("count", 0, 10), None);
        assert_eq!(f.boolean("flag"), None);
        assert_eq!(
            rules(f.finish()),
            vec![
                ("phone".into(), Rule::Required),
                ("message".into(), Rule::Required),
                ("meta".into(), Rule::Type { expected: "object".into() }),
                ("count".into(), Rule::Range { min: 0, max: 10 }),
                ("flag".into(), Rule::Type { expected: "boolean".into() }),
            ]
        );
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        let b = body(json!({"text": "é".repeat(4096), "long": "a".repeat(4097), "n": 7}));
        let mut f = Fields::new(&b);
        assert_eq!(f.string("text", true, 1, 4096).map(|s| s.chars().count()), Some(4096));
        assert_eq!(f.string("long", true, 1, 4096), None);
        assert_eq!(f.string("n", true, 1, 10), None);
        assert_eq!(
            rules(f.finish()),
            vec![("long".into(), Rule::MaxChars { max: 4096 }), ("n".into(), Rule::Type { expected: "string".into() })]
        );
    }

    #[test]
    fn numbers_are_range_checked() {
        let b = body(json!({"lat": 36.19, "far": 91.0, "text": "north"}));
        let mut f = Fields::new(&b);
        assert_eq!(f.number("lat", true, -90.0, 90.0), Some(36.19));
        assert_eq!(f.number("far", true, -90.0, 90.0), None);
        assert_eq!(f.number("text", true, -90.0, 90.0), None);
        assert_eq!(f.number("lng", true, -180.0, 180.0), None);
        assert_eq!(
            rules(f.finish()),
            vec![
                ("far".into(), Rule::Invalid { reason: "must be between -90 and 90".into() }),
                ("text".into(), Rule::Type { expected: "number".into() }),
                ("lng".into(), Rule::Required),
            ]
        );
    }

    #[test]
    fn optional_absent_fields_pass() {
        let b = body(json!({"device_id": null}));
        let mut f = Fields::new(&b);
        assert_eq!(f.string("device_id", false, 1, 64), None);
        assert_eq!(f.integer("limit", 1, 5), None);
        assert!(f.finish().is_ok());
    }

    #[test]
    fn bodies_must_be_json_objects() {
        assert_eq!(json_object(b"{\"a\":1"), Err(ApiError::MalformedJson));
        assert!(matches!(json_object(b"[1]"), Err(ApiError::Validation { .. })));
        assert_eq!(json_object(b"  ").unwrap().len(), 0);
        assert_eq!(json_object(b"{\"a\":1}").unwrap()["a"], 1);
    }
}
