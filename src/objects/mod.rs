//! Durable Objects, one file each. Callers talk to them through [`call`]: a typed
//! operation in, a `Result<T, ApiError>` out, both as JSON over the stub's fetch.

pub mod access;
pub mod app;
pub mod audience;
pub mod autoreplies;
pub mod campaign;
pub mod device;
pub mod guard;
pub mod otp;
pub mod registry;
mod retention;
pub mod sender;
pub mod webhooks;

use serde::de::DeserializeOwned;
use worker::{Env, Method, Request, RequestInit, Response, SqlStorageValue, State};

use crate::domain::error::ApiError;
use crate::domain::schema::{self, Migration, Newer};
use crate::protocol::{self, Object, Operation};

/// Runs `op` on the object named `name` in the namespace its protocol binds it to, and
/// answers what that protocol says it answers.
pub async fn call<O: Operation>(env: &Env, name: &str, op: O) -> Result<O::Answer, ApiError> {
    let binding = <O::Object as Object>::BINDING;
    let stub = env.durable_object(binding)?.get_by_name(name)?;
    let body = serde_json::to_string(&op.into()).map_err(ApiError::internal)?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(body.into()));
    let req = Request::new_with_init("https://object/", &init)?;
    let mut resp = stub.fetch_with_request(req).await?;
    protocol::decode::<O>(binding, &resp.bytes().await?)
}

/// The object side of [`call`]: decodes the operation and answers what `handle` makes of it
/// (the protocol's generated `dispatch`).
pub async fn serve<O: Object, Fut>(mut req: Request, handle: impl FnOnce(O::Op) -> Fut) -> worker::Result<Response>
where
    Fut: std::future::Future<Output = Vec<u8>>,
{
    let body = match protocol::operation::<O>(&req.bytes().await?) {
        Ok(op) => handle(op).await,
        Err(e) => protocol::encode::<()>(&Err(e)),
    };
    let mut response = Response::from_bytes(body)?;
    response.headers_mut().set("content-type", "application/json")?;
    Ok(response)
}

/// How every object's alarm ends: a failure is logged and, with `retry_ms`, the alarm is set to try
/// again (an alarm handler that errors is retried by the runtime only a few times, then dropped).
pub async fn end_alarm(
    state: &State,
    what: &str,
    outcome: Result<(), ApiError>,
    retry_ms: Option<u64>,
) -> worker::Result<Response> {
    if let Err(e) = outcome {
        worker::console_error!("{what}: {e}");
        if let Some(retry_ms) = retry_ms {
            state.storage().set_alarm(retry_ms as i64).await?;
        }
    }
    Response::empty()
}

/// The one number a `SELECT <aggregate> AS n …` query yields; `None` when it yields no row
/// (an aggregate under `HAVING COUNT(*) > 0` over nothing).
pub fn number(sql: &worker::SqlStorage, query: &str, bindings: Vec<SqlStorageValue>) -> Result<Option<i64>, ApiError> {
    #[derive(serde::Deserialize)]
    struct Number {
        n: i64,
    }
    Ok(rows::<Number>(sql.exec(query, bindings)?)?.first().map(|r| r.n))
}

/// Deserialises every row of a query.
pub fn rows<T: DeserializeOwned>(cursor: worker::SqlCursor) -> Result<Vec<T>, ApiError> {
    Ok(cursor.to_array::<T>()?)
}

/// Brings an object's storage up to date with `migrations` (see `domain::schema`): each one not
/// yet applied runs once, in order, and its number is recorded with it. A migration that fails
/// is a bug of this release: the object stops (its error is logged) rather than run on a schema
/// it does not know.
pub fn migrate(state: &State, object: &str, migrations: &[Migration]) {
    if let Err(e) = try_migrate(&state.storage().sql(), migrations) {
        worker::console_error!("{object} storage: {e}");
        panic!("{object} storage cannot be migrated: {e}");
    }
}

fn try_migrate(sql: &worker::SqlStorage, migrations: &[Migration]) -> Result<(), ApiError> {
    sql.exec(
        "CREATE TABLE IF NOT EXISTS schema_version (one INTEGER PRIMARY KEY CHECK (one = 1), applied INTEGER NOT NULL)",
        None,
    )?;
    let applied = number(sql, "SELECT applied AS n FROM schema_version", vec![])?.unwrap_or(0);
    let pending = match schema::pending(applied as u32, migrations) {
        Ok(pending) => pending,
        Err(Newer { applied, known }) => {
            worker::console_warn!("storage migrated by a newer release ({applied} of {known} known): left as it is");
            return Ok(());
        }
    };
    for (number_applied, migration) in pending {
        match migration {
            Migration::Sql(statements) => {
                for statement in statements {
                    sql.exec(statement, None)?;
                }
            }
            Migration::AddColumns(columns) => {
                for (table, column, definition) in columns {
                    let has = "SELECT COUNT(*) AS n FROM pragma_table_info(?) WHERE name = ?";
                    if number(sql, has, vec![(*table).into(), (*column).into()])?.unwrap_or(0) == 0 {
                        sql.exec(&schema::add_column(table, column, definition), None)?;
                    }
                }
            }
        }
        sql.exec(
            "INSERT INTO schema_version (one, applied) VALUES (1, ?) ON CONFLICT (one) DO UPDATE SET applied = excluded.applied",
            vec![int(number_applied.into())],
        )?;
    }
    Ok(())
}

/// Milliseconds and counters as SQL integers.
pub fn int(n: u64) -> SqlStorageValue {
    SqlStorageValue::Integer(n as i64)
}
