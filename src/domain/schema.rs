//! Versioned schema migrations for the Durable Objects' SQLite storage. Each object lists its
//! migrations once, oldest first, and never edits or reorders them; an object records how many
//! it has applied and, on construction, applies only the rest, so an upgraded deployment brings
//! its existing objects up to date and a fresh object runs them all.

/// One migration: what it changes, applied once and recorded with its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migration {
    /// Statements run in order.
    Sql(&'static [&'static str]),
    /// `(table, column, definition)`: columns that releases from before versioning added on
    /// every construction, so an object they ran in may have some already; each is added only
    /// where it is missing.
    AddColumns(&'static [(&'static str, &'static str, &'static str)]),
}

/// The object's storage was migrated by a newer release than this one (a rollback): nothing
/// runs, the newer schema is left as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Newer {
    pub applied: u32,
    pub known: u32,
}

/// The migrations an object that applied `applied` of them still needs, each with the number
/// to record once it has run.
pub fn pending(applied: u32, migrations: &[Migration]) -> Result<Vec<(u32, Migration)>, Newer> {
    let known = migrations.len() as u32;
    if applied > known {
        return Err(Newer { applied, known });
    }
    Ok(migrations.iter().zip(1..).skip(applied as usize).map(|(m, n)| (n, *m)).collect())
}

/// The statement that adds a column.
pub fn add_column(table: &str, column: &str, definition: &str) -> String {
    format!("ALTER TABLE {table} ADD COLUMN {column} {definition}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIGRATIONS: [Migration; 3] = [
        Migration::Sql(&["CREATE TABLE a (x INTEGER)"]),
        Migration::AddColumns(&[("a", "y", "TEXT")]),
        Migration::Sql(&["CREATE INDEX a_y ON a (y)"]),
    ];

    #[test]
    fn a_fresh_object_runs_every_migration_in_order() {
        let numbers: Vec<u32> = pending(0, &MIGRATIONS).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(numbers, [1, 2, 3]);
    }

    #[test]
    fn an_upgraded_object_runs_only_what_it_lacks() {
        assert_eq!(pending(2, &MIGRATIONS).unwrap(), [(3, MIGRATIONS[2])]);
        assert_eq!(pending(3, &MIGRATIONS).unwrap(), []);
    }

    #[test]
    fn an_object_of_a_newer_release_is_left_alone() {
        assert_eq!(pending(4, &MIGRATIONS), Err(Newer { applied: 4, known: 3 }));
    }

    #[test]
    fn columns_are_added_by_name() {
        assert_eq!(add_column("keys", "expires_at", "INTEGER"), "ALTER TABLE keys ADD COLUMN expires_at INTEGER");
    }
}
