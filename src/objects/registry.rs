//! The operator's list of apps: one Durable Object (named `apps`) that only indexes them; each
//! app's state stays in its own object.

use serde::Deserialize;
use worker::{durable_object, DurableObject, Env, Request, Response, SqlStorage, State};

use super::{migrate, serve};
use crate::domain::error::ApiError;
use crate::domain::ids::AppId;
use crate::domain::paging;
use crate::domain::schema::Migration;
use crate::protocol::registry::{AddApp, AppPage, HasApp, ListApps, Registry, RegistryHandler, PAGE_SIZE};
use crate::store::Sql;

/// Oldest first; append, never edit (see `domain::schema`).
const MIGRATIONS: [Migration; 1] = [Migration::Sql(&[
    "CREATE TABLE IF NOT EXISTS apps (app_id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at INTEGER NOT NULL)",
])];

#[durable_object]
pub struct RegistryObject {
    state: State,
}

impl DurableObject for RegistryObject {
    fn new(state: State, _env: Env) -> Self {
        migrate(&state, "registry", &MIGRATIONS);
        Self { state }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        serve::<Registry, _>(req, |op| op.dispatch(self)).await
    }
}

impl RegistryObject {
    fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
    }
}

impl RegistryHandler for RegistryObject {
    async fn add(&self, AddApp { app_id, name, now }: AddApp) -> Result<(), ApiError> {
        self.sql().run(
            "INSERT OR IGNORE INTO apps (app_id, name, created_at) VALUES (?, ?, ?)",
            vec![app_id.as_str().into(), name.into(), now.into()],
        )?;
        Ok(())
    }

    async fn list(&self, ListApps { page }: ListApps) -> Result<AppPage, ApiError> {
        #[derive(Deserialize)]
        struct Id {
            app_id: AppId,
        }
        let total = self.sql().number("SELECT COUNT(*) AS n FROM apps", vec![])?.unwrap_or(0);
        let ids = self.sql().rows::<Id>(
            "SELECT app_id FROM apps ORDER BY created_at, app_id LIMIT ? OFFSET ?",
            vec![PAGE_SIZE.into(), paging::offset(page, PAGE_SIZE).into()],
        )?;
        Ok(AppPage { total, app_ids: ids.into_iter().map(|i| i.app_id).collect() })
    }

    async fn has(&self, HasApp { app_id }: HasApp) -> Result<bool, ApiError> {
        Ok(self.sql().any("SELECT COUNT(*) AS n FROM apps WHERE app_id = ?", vec![app_id.as_str().into()])?)
    }
}
