//! The operator's list of apps: one Durable Object (named `apps`) that only indexes them; each
//! app's state stays in its own object.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use worker::{durable_object, DurableObject, Env, Request, Response, SqlStorage, State};

use super::{create_schema, int, number, rows, serve};
use crate::domain::error::ApiError;
use crate::domain::ids::AppId;
use crate::domain::paging;

/// The one registry object's name.
pub const NAME: &str = "apps";
pub const PAGE_SIZE: i64 = 50;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RegistryOp {
    Add {
        app_id: AppId,
        name: String,
        now: u64,
    },
    /// App ids, oldest first.
    List {
        page: i64,
    },
    /// Whether the app exists (answered `true`/`false`).
    Has {
        app_id: AppId,
    },
}

#[durable_object]
pub struct RegistryObject {
    state: State,
}

impl DurableObject for RegistryObject {
    fn new(state: State, _env: Env) -> Self {
        create_schema(
            &state,
            &["CREATE TABLE IF NOT EXISTS apps (app_id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at INTEGER NOT NULL)"],
        );
        Self { state }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        serve(req, |op: RegistryOp| async move { self.handle(op) }).await
    }
}

impl RegistryObject {
    fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
    }

    fn handle(&self, op: RegistryOp) -> Result<Value, ApiError> {
        match op {
            RegistryOp::Add { app_id, name, now } => {
                self.sql().exec(
                    "INSERT OR IGNORE INTO apps (app_id, name, created_at) VALUES (?, ?, ?)",
                    vec![app_id.as_str().into(), name.into(), int(now)],
                )?;
                Ok(Value::Null)
            }
            RegistryOp::List { page } => {
                #[derive(Deserialize)]
                struct Id {
                    app_id: String,
                }
                let total = number(&self.sql(), "SELECT COUNT(*) AS n FROM apps", vec![])?.unwrap_or(0);
                let ids = rows::<Id>(self.sql().exec(
                    "SELECT app_id FROM apps ORDER BY created_at, app_id LIMIT ? OFFSET ?",
                    vec![PAGE_SIZE.into(), paging::offset(page, PAGE_SIZE).into()],
                )?)?;
                Ok(json!({"total": total, "app_ids": ids.into_iter().map(|i| i.app_id).collect::<Vec<_>>()}))
            }
            RegistryOp::Has { app_id } => {
                let n = number(
                    &self.sql(),
                    "SELECT COUNT(*) AS n FROM apps WHERE app_id = ?",
                    vec![app_id.as_str().into()],
                )?;
                Ok(Value::Bool(n.unwrap_or(0) > 0))
            }
        }
    }
}
