//! The Durable Objects' storage, written over [`Sql`] rather than the Workers runtime's
//! `SqlStorage`: each facet owns its schema and statements here, and its native tests run them
//! on a real SQLite (`Memory`). The objects keep what only the runtime can do: alarms, calls to
//! other objects, outbound fetches.

pub mod access;
pub mod audience;
pub mod autoreplies;
pub mod campaign;
pub mod device;
pub mod otp;
// The app's core, by facet.
pub mod devices;
pub mod events;
pub mod idempotency;
pub mod keys;
pub mod quota;
pub mod tenant;
pub mod webhooks;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::domain::error::ApiError;
use crate::domain::schema::{self, Migration, Newer};

/// A value bound to a statement's parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Null,
    Int(i64),
    Text(String),
}

impl From<&str> for Bind {
    fn from(s: &str) -> Self {
        Bind::Text(s.to_owned())
    }
}

impl From<String> for Bind {
    fn from(s: String) -> Self {
        Bind::Text(s)
    }
}

impl From<&String> for Bind {
    fn from(s: &String) -> Self {
        Bind::Text(s.clone())
    }
}

impl From<i64> for Bind {
    fn from(n: i64) -> Self {
        Bind::Int(n)
    }
}

/// Milliseconds and counters: SQLite integers are signed, and none of ours reaches 2^63.
impl From<u64> for Bind {
    fn from(n: u64) -> Self {
        Bind::Int(n as i64)
    }
}

impl From<u32> for Bind {
    fn from(n: u32) -> Self {
        Bind::Int(n.into())
    }
}

impl From<bool> for Bind {
    fn from(b: bool) -> Self {
        Bind::Int(b.into())
    }
}

impl<T: Into<Bind>> From<Option<T>> for Bind {
    fn from(value: Option<T>) -> Self {
        value.map_or(Bind::Null, Into::into)
    }
}

/// A statement the storage refused (a bug of this release, or the runtime's storage failing).
#[derive(Debug, Clone, PartialEq)]
pub struct SqlError(pub String);

impl From<SqlError> for ApiError {
    fn from(e: SqlError) -> Self {
        ApiError::internal(format!("storage: {}", e.0))
    }
}

/// An object's SQLite: the runtime's storage in the worker, an in-memory database in tests.
pub trait Sql {
    /// Runs a statement for its effect.
    fn run(&self, query: &str, binds: Vec<Bind>) -> Result<(), SqlError>;
    /// Runs a query and deserialises each row (columns by name).
    fn rows<T: DeserializeOwned>(&self, query: &str, binds: Vec<Bind>) -> Result<Vec<T>, SqlError>;

    /// The first row of a query, if any.
    fn row<T: DeserializeOwned>(&self, query: &str, binds: Vec<Bind>) -> Result<Option<T>, SqlError> {
        Ok(self.rows(query, binds)?.into_iter().next())
    }

    /// The one number a `SELECT <aggregate> AS n …` query yields; `None` when it yields no row
    /// (an aggregate under `HAVING COUNT(*) > 0` over nothing).
    fn number(&self, query: &str, binds: Vec<Bind>) -> Result<Option<i64>, SqlError> {
        #[derive(Deserialize)]
        struct Number {
            n: i64,
        }
        Ok(self.row::<Number>(query, binds)?.map(|r| r.n))
    }

    /// Whether a `SELECT COUNT(*) AS n …` counts anything.
    fn any(&self, query: &str, binds: Vec<Bind>) -> Result<bool, SqlError> {
        Ok(self.number(query, binds)?.unwrap_or(0) > 0)
    }
}

/// Brings an object's storage up to date with `migrations` (see `domain::schema`): each one not
/// yet applied runs once, in order, and its number is recorded with it. Storage migrated by a
/// newer release (a rollback) is left as it is, and said so in the answer.
pub fn migrate(sql: &impl Sql, migrations: &[Migration]) -> Result<Option<Newer>, SqlError> {
    sql.run(
        "CREATE TABLE IF NOT EXISTS schema_version (one INTEGER PRIMARY KEY CHECK (one = 1), applied INTEGER NOT NULL)",
        vec![],
    )?;
    let applied = sql.number("SELECT applied AS n FROM schema_version", vec![])?.unwrap_or(0);
    let pending = match schema::pending(applied as u32, migrations) {
        Ok(pending) => pending,
        Err(newer) => return Ok(Some(newer)),
    };
    for (number_applied, migration) in pending {
        match migration {
            Migration::Sql(statements) => {
                for statement in statements {
                    sql.run(statement, vec![])?;
                }
            }
            Migration::AddColumns(columns) => {
                for (table, column, definition) in columns {
                    let has = "SELECT COUNT(*) AS n FROM pragma_table_info(?) WHERE name = ?";
                    if !sql.any(has, vec![(*table).into(), (*column).into()])? {
                        sql.run(&schema::add_column(table, column, definition), vec![])?;
                    }
                }
            }
        }
        sql.run(
            "INSERT INTO schema_version (one, applied) VALUES (1, ?) ON CONFLICT (one) DO UPDATE SET applied = excluded.applied",
            vec![number_applied.into()],
        )?;
    }
    Ok(None)
}

#[cfg(test)]
pub mod memory;

#[cfg(test)]
mod tests {
    use super::memory::Memory;
    use super::*;

    const MIGRATIONS: [Migration; 3] = [
        Migration::Sql(&["CREATE TABLE a (x INTEGER)"]),
        Migration::AddColumns(&[("a", "y", "TEXT"), ("a", "z", "INTEGER")]),
        Migration::Sql(&["CREATE INDEX a_y ON a (y)"]),
    ];

    fn columns(sql: &Memory) -> Vec<String> {
        #[derive(Deserialize)]
        struct Column {
            name: String,
        }
        let cols = sql.rows::<Column>("SELECT name FROM pragma_table_info('a')", vec![]).unwrap();
        cols.into_iter().map(|c| c.name).collect()
    }

    #[test]
    fn a_fresh_object_gets_every_migration_once() {
        let sql = Memory::default();
        assert_eq!(migrate(&sql, &MIGRATIONS), Ok(None));
        assert_eq!(migrate(&sql, &MIGRATIONS), Ok(None), "a second construction runs nothing");
        assert_eq!(columns(&sql), ["x", "y", "z"]);
        assert_eq!(sql.number("SELECT applied AS n FROM schema_version", vec![]), Ok(Some(3)));
    }

    #[test]
    fn storage_from_before_versioning_gets_only_the_columns_it_lacks() {
        let sql = Memory::default();
        // What an unversioned release left: the table, with one of the columns it added itself.
        sql.run("CREATE TABLE a (x INTEGER, z INTEGER)", vec![]).unwrap();
        sql.run("INSERT INTO a (x, z) VALUES (1, 2)", vec![]).unwrap();
        let first_only = [Migration::Sql(&["CREATE TABLE IF NOT EXISTS a (x INTEGER)"]), MIGRATIONS[1], MIGRATIONS[2]];
        assert_eq!(migrate(&sql, &first_only), Ok(None));
        assert_eq!(columns(&sql), ["x", "z", "y"]);
        assert_eq!(sql.number("SELECT z AS n FROM a", vec![]), Ok(Some(2)), "rows are kept");
    }

    #[test]
    fn storage_of_a_newer_release_is_left_alone() {
        let sql = Memory::default();
        migrate(&sql, &MIGRATIONS).unwrap();
        assert_eq!(migrate(&sql, &MIGRATIONS[..2]), Ok(Some(Newer { applied: 3, known: 2 })));
    }

    #[test]
    fn a_failing_migration_is_not_recorded() {
        let sql = Memory::default();
        let broken = [MIGRATIONS[0], Migration::Sql(&["CREATE TABLE a (x INTEGER)"])];
        assert!(migrate(&sql, &broken).is_err());
        assert_eq!(sql.number("SELECT applied AS n FROM schema_version", vec![]), Ok(Some(1)));
    }

    #[test]
    fn binds_keep_their_types() {
        let sql = Memory::default();
        sql.run("CREATE TABLE t (i INTEGER, s TEXT, n TEXT, b INTEGER)", vec![]).unwrap();
        let binds = vec![7u64.into(), "x".into(), Option::<&str>::None.into(), true.into()];
        sql.run("INSERT INTO t VALUES (?, ?, ?, ?)", binds).unwrap();
        #[derive(Deserialize, PartialEq, Debug)]
        struct T {
            i: u64,
            s: String,
            n: Option<String>,
            b: i64,
        }
        let row = sql.row::<T>("SELECT * FROM t", vec![]).unwrap();
        assert_eq!(row, Some(T { i: 7, s: "x".into(), n: None, b: 1 }));
    }
}
