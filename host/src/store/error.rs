//! [`StoreError`]: why a store call failed, sorted so that callers can act
//! on it: an outage to wait out, a conflict to retry or count as a
//! duplicate, or anything else. Each backend maps its own errors here
//! (`sqlite::classify`, `postgres::classify`); nothing else does.

/// Why a store call failed. The message names what the store was doing and
/// the backend's own words; it never holds a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store cannot serve right now, through no fault of the data: an
    /// I/O error, a full disk or database, a refused or broken connection, a
    /// refused login, a statement timeout, a server shutting down or read
    /// only during a failover. An outage: wait it out and try the same
    /// thing again; never a reason to dead-letter an event.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Another writer got there first: an applied event id is already
    /// recorded (another host applied it), or PostgreSQL aborted a
    /// transaction that raced another (serialization failure, deadlock).
    /// Retry, or treat the events as duplicates.
    #[error("store conflict: {0}")]
    Conflict(String),
    /// Anything else (a schema the binary does not know, a bug, corrupt
    /// data).
    #[error("store error: {0}")]
    Other(String),
}

impl StoreError {
    /// The store is down, full or unreachable: wait, then try again.
    pub fn is_outage(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    /// Another writer got there first: retry, or count as a duplicate.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict(_))
    }

    /// The same kind of error, its message prefixed with what was being
    /// done (`"committing a batch: ..."`).
    pub fn doing(self, what: &str) -> Self {
        match self {
            StoreError::Unavailable(m) => StoreError::Unavailable(format!("{what}: {m}")),
            StoreError::Conflict(m) => StoreError::Conflict(format!("{what}: {m}")),
            StoreError::Other(m) => StoreError::Other(format!("{what}: {m}")),
        }
    }
}

/// Adds what the store was doing to an error's message.
pub(crate) trait Doing<T> {
    fn doing(self, what: &str) -> Result<T, StoreError>;
}

impl<T, E: Into<StoreError>> Doing<T> for Result<T, E> {
    fn doing(self, what: &str) -> Result<T, StoreError> {
        self.map_err(|e| e.into().doing(what))
    }
}

/// The chain of an error's causes on one line (`a: b: c`), skipping a
/// cause whose text its parent already shows.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doing_keeps_the_kind_and_names_the_step() {
        let e = StoreError::Unavailable("disk full".into()).doing("committing a batch");
        assert!(e.is_outage());
        assert_eq!(
            e.to_string(),
            "store unavailable: committing a batch: disk full"
        );
        assert!(StoreError::Conflict("x".into()).is_conflict());
        assert!(!StoreError::Other("x".into()).is_outage());
    }
}
