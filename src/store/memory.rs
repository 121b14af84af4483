//! [`Sql`] over an in-memory SQLite, for native tests of the storage facets: the same engine
//! the Durable Objects run, so a statement that works here works there.

use rusqlite::types::{Value as Cell, ValueRef};
use rusqlite::{params_from_iter, Connection};
use serde::de::DeserializeOwned;
use serde_json::{Map, Number, Value};

use super::{Bind, Sql, SqlError};

pub struct Memory(Connection);

impl Default for Memory {
    fn default() -> Self {
        Memory(Connection::open_in_memory().expect("an in-memory database opens"))
    }
}

impl Memory {
    /// A database holding a facet's tables, made by its own schema statements.
    pub fn with(schema: &[&str]) -> Self {
        let sql = Memory::default();
        for statement in schema {
            sql.run(statement, vec![]).expect("a facet's schema runs");
        }
        sql
    }
}

fn cell(bind: Bind) -> Cell {
    match bind {
        Bind::Null => Cell::Null,
        Bind::Int(n) => Cell::Integer(n),
        Bind::Text(s) => Cell::Text(s),
    }
}

fn json(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(n) => n.into(),
        ValueRef::Real(x) => Number::from_f64(x).map_or(Value::Null, Value::Number),
        ValueRef::Text(s) => String::from_utf8_lossy(s).into_owned().into(),
        ValueRef::Blob(b) => b.to_vec().into(),
    }
}

fn failed(e: impl std::fmt::Display) -> SqlError {
    SqlError(e.to_string())
}

impl Sql for Memory {
    fn run(&self, query: &str, binds: Vec<Bind>) -> Result<(), SqlError> {
        let mut statement = self.0.prepare(query).map_err(failed)?;
        let mut rows = statement.query(params_from_iter(binds.into_iter().map(cell))).map_err(failed)?;
        while rows.next().map_err(failed)?.is_some() {}
        Ok(())
    }

    fn rows<T: DeserializeOwned>(&self, query: &str, binds: Vec<Bind>) -> Result<Vec<T>, SqlError> {
        let mut statement = self.0.prepare(query).map_err(failed)?;
        let names: Vec<String> = statement.column_names().into_iter().map(str::to_owned).collect();
        let mut rows = statement.query(params_from_iter(binds.into_iter().map(cell))).map_err(failed)?;
        let mut out = vec![];
        while let Some(row) = rows.next().map_err(failed)? {
            let mut object = Map::new();
            for (i, name) in names.iter().enumerate() {
                object.insert(name.clone(), json(row.get_ref(i).map_err(failed)?));
            }
            out.push(serde_json::from_value(Value::Object(object)).map_err(failed)?);
        }
        Ok(out)
    }
}

/// Runs a storage facet's handler to its end: they never wait on anything but SQLite.
pub fn now<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => unreachable!("a storage handler waited"),
    }
}
