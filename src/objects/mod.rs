//! Durable Objects, one file each. Callers talk to them through [`call`]: a typed
//! operation in, a `Result<T, ApiError>` out, both as JSON over the stub's fetch.

pub mod app;
pub mod audience;
pub mod campaign;
pub mod device;
pub mod guard;
pub mod otp;
pub mod registry;
mod retention;
pub mod sender;
pub mod webhooks;

use serde::de::DeserializeOwned;
use worker::{Env, Method, Request, RequestInit, Response, SqlStorage, SqlStorageValue, State};

use crate::domain::error::ApiError;
use crate::domain::schema::{Migration, Newer};
use crate::protocol::{self, Object, Operation};
use crate::store::{self, Bind, Sql, SqlError};

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

/// Brings an object's storage up to date (see `store::migrate`). A migration that fails is a
/// bug of this release: the object stops (its error is logged) rather than run on a schema it
/// does not know.
pub fn migrate(state: &State, object: &str, migrations: &[Migration]) {
    match store::migrate(&state.storage().sql(), migrations) {
        Ok(None) => {}
        Ok(Some(Newer { applied, known })) => {
            worker::console_warn!(
                "{object} storage migrated by a newer release ({applied} of {known} known): left as it is"
            )
        }
        Err(e) => {
            worker::console_error!("{object} storage: {}", e.0);
            panic!("{object} storage cannot be migrated: {}", e.0);
        }
    }
}

/// The runtime's storage under the facets of `store`.
impl Sql for SqlStorage {
    fn run(&self, query: &str, binds: Vec<Bind>) -> Result<(), SqlError> {
        self.exec(query, binds.into_iter().map(value).collect::<Vec<_>>()).map(drop).map_err(failed)
    }

    fn rows<T: DeserializeOwned>(&self, query: &str, binds: Vec<Bind>) -> Result<Vec<T>, SqlError> {
        let cursor = self.exec(query, binds.into_iter().map(value).collect::<Vec<_>>()).map_err(failed)?;
        cursor.to_array::<T>().map_err(failed)
    }
}

fn value(bind: Bind) -> SqlStorageValue {
    match bind {
        Bind::Null => SqlStorageValue::Null,
        Bind::Int(n) => SqlStorageValue::Integer(n),
        Bind::Text(s) => SqlStorageValue::String(s),
    }
}

fn failed(e: worker::Error) -> SqlError {
    SqlError(e.to_string())
}
