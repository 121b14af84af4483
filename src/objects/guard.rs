//! One Durable Object per client address (an IPv6 client's /64): a GCRA budget of failed
//! authentications, so that guessing keys from one address slows to a crawl. Only failures
//! reach it (the edge remembers when a budget is spent, see `edge::auth`), so an address that
//! never failed has no object and no storage.

use worker::{durable_object, DurableObject, Env, Request, Response, SqlStorage, State};

use super::{migrate, serve};
use crate::domain::error::ApiError;
use crate::domain::ratelimit::{count_failure, Throttle};
use crate::domain::schema::Migration;
use crate::protocol::guard::{AuthFailed, Guard, GuardHandler};
use crate::store::Sql;

/// Oldest first; append, never edit (see `domain::schema`).
const MIGRATIONS: [Migration; 1] = [Migration::Sql(&[
    "CREATE TABLE IF NOT EXISTS budget (one INTEGER PRIMARY KEY CHECK (one = 1), tat INTEGER NOT NULL)",
])];

#[durable_object]
pub struct GuardObject {
    state: State,
}

impl DurableObject for GuardObject {
    fn new(state: State, _env: Env) -> Self {
        migrate(&state, "guard", &MIGRATIONS);
        Self { state }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        serve::<Guard, _>(req, |op| op.dispatch(self)).await
    }
}

impl GuardObject {
    fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
    }
}

impl GuardHandler for GuardObject {
    async fn failed(&self, AuthFailed { per_minute, now }: AuthFailed) -> Result<Throttle, ApiError> {
        let tat = self.sql().number("SELECT tat AS n FROM budget", vec![])?.map(|t| t as u64);
        let (throttle, store) = count_failure(per_minute, tat, now);
        if let Some(tat) = store {
            self.sql().run(
                "INSERT INTO budget (one, tat) VALUES (1, ?) ON CONFLICT (one) DO UPDATE SET tat = excluded.tat",
                vec![tat.into()],
            )?;
        }
        Ok(throttle)
    }
}
