//! The wagate HTTP API as the CLI calls it: one bearer credential, JSON in and out.

use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, PercentEncode, NON_ALPHANUMERIC};
use serde_json::Value;
use ureq::http::Response;
use ureq::{Agent, Body};

use crate::error::CliError;

/// Long enough for a cold Durable Object, short enough that a hung server is reported.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything but RFC 3986's unreserved characters, so an id can never step into another route.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// An id typed by the operator, made safe to put in a path.
pub fn segment(id: &str) -> PercentEncode<'_> {
    utf8_percent_encode(id, SEGMENT)
}

pub struct Api {
    agent: Agent,
    base_url: String,
    authorization: String,
}

impl Api {
    pub fn new(base_url: &str, token: &str) -> Self {
        let agent = Agent::config_builder()
            // Error answers carry the API's explanation; they are read, not turned into transport errors.
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .user_agent(concat!("wagate-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Api { agent, base_url: base_url.trim_end_matches('/').to_owned(), authorization: format!("Bearer {token}") }
    }

    pub fn get(&self, path: &str) -> Result<Value, CliError> {
        self.answer(self.agent.get(self.url(path)).header("Authorization", &self.authorization).call())
    }

    /// Answers `Value::Null` for a 204.
    pub fn delete(&self, path: &str) -> Result<Value, CliError> {
        self.answer(self.agent.delete(self.url(path)).header("Authorization", &self.authorization).call())
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        let request = self.agent.post(self.url(path)).header("Authorization", &self.authorization);
        self.answer(request.header("Content-Type", "application/json").send(body.to_string()))
    }

    pub fn patch(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        let request = self.agent.patch(self.url(path)).header("Authorization", &self.authorization);
        self.answer(request.header("Content-Type", "application/json").send(body.to_string()))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    fn answer(&self, sent: Result<Response<Body>, ureq::Error>) -> Result<Value, CliError> {
        let unreachable = |e: ureq::Error| CliError::Unreachable { url: self.base_url.clone(), cause: e.to_string() };
        let mut response = sent.map_err(unreachable)?;
        let status = response.status();
        let body = response.body_mut().read_to_string().map_err(unreachable)?;
        if !status.is_success() {
            return Err(CliError::from_answer(status.as_u16(), &body));
        }
        if body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&body)
            .map_err(|e| CliError::UnexpectedAnswer(format!("{status} with a body that is not JSON ({e})")))
    }
}
