//! Gavel's application error below the handlers: a database error, or a fault of Gavel's own.
//! A handler turns it into `503 unavailable` when the database cannot serve now, and into a
//! `500` otherwise.

use crate::api::{ErrorCode, Problem};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A statement failed, or the database could not be reached.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A fault of Gavel's own (a task that panicked, a lost answer): never taken for an
    /// unavailable database.
    #[error("{0}")]
    Fault(String),
}

impl Error {
    /// True when a retry later may succeed (see [`crate::store::is_unavailable`]).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Database(error) => crate::store::is_unavailable(error),
            Self::Fault(_) => false,
        }
    }
}

impl From<Error> for Problem {
    fn from(error: Error) -> Self {
        match error {
            Error::Database(error) => Problem::from(error),
            Error::Fault(fault) => {
                tracing::error!(%fault, "internal fault");
                Problem::new(ErrorCode::Internal)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unavailable_database_is_unavailable() {
        assert!(Error::from(sqlx::Error::PoolTimedOut).is_unavailable());
        assert!(!Error::from(sqlx::Error::RowNotFound).is_unavailable());
        assert!(!Error::Fault("a sale's task panicked".into()).is_unavailable());
    }
}
