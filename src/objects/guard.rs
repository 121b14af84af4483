//! One Durable Object per client address (an IPv6 client's /64): a GCRA budget of failed
//! authentications, so that guessing keys from one address slows to a crawl. Only failures
//! reach it (the edge remembers when a budget is spent, see `edge::auth`), so an address that
//! never failed has no object and no storage.

use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Request, Response, SqlStorage, State};

use super::{create_schema, int, legacy_serve, number, to_json};
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
    /// This failure was over the budget: answer 429, to be retried after this many seconds.
    pub retry_after_secs: Option<u64>,
    /// The budget is spent (by this failure or before it): for this long, no request from the
    /// address should have its credential checked.
    pub spent_for_secs: Option<u64>,
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
        legacy_serve(req, |op: GuardOp| async move {
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
            let refused = Some(verdict.retry_after_secs);
            return Ok(Throttle { retry_after_secs: refused, spent_for_secs: refused });
        }
        self.sql().exec(
            "INSERT INTO budget (one, tat) VALUES (1, ?) ON CONFLICT (one) DO UPDATE SET tat = excluded.tat",
            vec![int(verdict.tat)],
        )?;
        // Whether this failure spent the budget: then the next request need not be tried at all.
        let next = gcra.check(Some(verdict.tat), now);
        Ok(Throttle { retry_after_secs: None, spent_for_secs: (!next.allowed).then_some(next.retry_after_secs) })
    }
}
