//! Versioned schema migrations, per backend: SQL files under
//! `host/migrations/<backend>/NNNN_name.sql`, embedded in the binary and
//! applied in order at open, each recorded in the store's `schema_version`
//! table in the same transaction. A store whose version is newer than this
//! binary knows is refused, never written to.
//!
//! To change a schema: add the next numbered file for EACH backend and its
//! line below; never edit a released file.

use super::StoreError;

/// One schema step.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// The SQLite store's steps, in order.
pub const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../../migrations/sqlite/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "cluster",
        sql: include_str!("../../migrations/sqlite/0002_cluster.sql"),
    },
    Migration {
        version: 3,
        name: "cheaper writes",
        sql: include_str!("../../migrations/sqlite/0003_cheaper_writes.sql"),
    },
    Migration {
        version: 4,
        name: "event journeys",
        sql: include_str!("../../migrations/sqlite/0004_event_journeys.sql"),
    },
];

/// The PostgreSQL store's steps, in order.
pub const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../../migrations/postgres/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "cluster",
        sql: include_str!("../../migrations/postgres/0002_cluster.sql"),
    },
    Migration {
        version: 3,
        name: "cheaper writes",
        sql: include_str!("../../migrations/postgres/0003_cheaper_writes.sql"),
    },
    Migration {
        version: 4,
        name: "event journeys",
        sql: include_str!("../../migrations/postgres/0004_event_journeys.sql"),
    },
];

/// The version `steps` bring a store to.
pub fn latest(steps: &[Migration]) -> u32 {
    steps.last().map_or(0, |m| m.version)
}

/// The steps a store at version `found` still needs, or why it must not be
/// opened: it was written by a newer Switchyard.
pub fn pending(steps: &[Migration], found: u32) -> Result<&[Migration], StoreError> {
    let known = latest(steps);
    if found > known {
        return Err(StoreError::Other(format!(
            "store schema version {found} is newer than this switchyard knows ({known}): upgrade switchyard"
        )));
    }
    Ok(&steps[steps.partition_point(|m| m.version <= found)..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_numbered_in_order_without_gaps() {
        for steps in [SQLITE, POSTGRES] {
            for (i, m) in steps.iter().enumerate() {
                assert_eq!(m.version as usize, i + 1, "{}", m.name);
            }
        }
        assert_eq!(latest(SQLITE), latest(POSTGRES), "backends move together");
    }

    #[test]
    fn a_newer_store_is_refused_with_what_to_do() {
        assert_eq!(pending(SQLITE, 0).unwrap().len(), SQLITE.len());
        assert!(pending(SQLITE, latest(SQLITE)).unwrap().is_empty());
        let error = pending(SQLITE, 99).unwrap_err().to_string();
        assert!(
            error.contains(&format!(
                "store schema version 99 is newer than this switchyard knows ({}): upgrade switchyard",
                latest(SQLITE)
            )),
            "{error}"
        );
    }
}
