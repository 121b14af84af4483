//! One Durable Object per client address that failed to authenticate: a GCRA budget of
//! failures, so that guessing keys from one address slows to a crawl. Only failures reach it;
//! a valid key from the same address never waits on it.

use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Request, Response, SqlStorage, State};

use super::{create_schema, int, number, serve, to_json};
use crate::domain::error::ApiError;
use crate::domain::ratelimit::Gcra;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum GuardOp {
    /// Counts one failed authentication; answers whether the address is now throttled.
    Failed { per_minute: u64, now: u64 },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Throttle {
    pub retry_after_secs: Option<u64>,
}

#[durable_object]
pub struct GuardObject {
    state: State,
}

impl DurableObject for GuardObject {
    fn new(state: State, _env: Env) -> Self {
        create_schema(
            &state,
            &["CREATE TABLE IF NOT EXISTS budget (one INTEGER PRIMARY KEY CHECK (one = 1), tat INTEGER NOT NULL)"],
        );
        Self { state }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        serve(req, |op: GuardOp| async move {
            match op {
                GuardOp::Failed { per_minute, now } => to_json(&self.failed(per_minute, now)?),
            }
        })
        .await
    }
}

impl GuardObject {
    fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
    }

    fn failed(&self, per_minute: u64, now: u64) -> Result<Throttle, ApiError> {
        let gcra = Gcra { limit: per_minute.max(1), window_ms: 60_000 };
        let tat = number(&self.sql(), "SELECT tat AS n FROM budget", vec![])?.map(|t| t as u64);
        let verdict = gcra.check(tat, now);
        if !verdict.allowed {
            return Ok(Throttle { retry_after_secs: Some(verdict.retry_after_secs) });
        }
        self.sql().exec(
            "INSERT INTO budget (one, tat) VALUES (1, ?) ON CONFLICT (one) DO UPDATE SET tat = excluded.tat",
            vec![int(verdict.tat)],
        )?;
        Ok(Throttle { retry_after_secs: None })
    }
}
