//! Which database errors mean "the database is not there now" (a restart, a failover, a full
//! pool), so that every route answers them `503 unavailable` with `Retry-After`, never 500.

use std::borrow::Cow;

/// True when `error` says the database cannot serve now but a retry later may succeed: the
/// pool's timeout or closing, I/O, TLS and protocol failures (a dropped connection), and the
/// SQLSTATEs of a server that is shutting down, starting, refusing connections, cancelling
/// statements or read-only after a failover. False for errors of the statement or the data
/// (a constraint, a bad value) and for Gavel's own faults ([`fault`]).
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        // sqlx reports a garbled or cut stream as a protocol error: the connection is gone.
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => true,
        sqlx::Error::Database(error) => error.code().is_some_and(unavailable_sqlstate),
        _ => false,
    }
}

/// PostgreSQL's SQLSTATEs of a server that cannot serve now (Appendix A of its manual).
fn unavailable_sqlstate(code: Cow<'_, str>) -> bool {
    code.starts_with("08") // connection exceptions
        || matches!(
            &*code,
            "57P01" // admin_shutdown
                | "57P02" // crash_shutdown
                | "57P03" // cannot_connect_now (starting up, shutting down, recovering)
                | "57P05" // idle_session_timeout
                | "57014" // query_canceled (statement_timeout, a cancel request)
                | "55P03" // lock_not_available (lock_timeout)
                | "53300" // too_many_connections
                | "55000" // "database is not currently accepting connections" (ALLOW_CONNECTIONS false)
                | "53200" // out_of_memory
                | "25006" // read_only_sql_transaction (a standby, during a failover)
                | "40001" // serialization_failure
                | "40P01" // deadlock_detected
        )
}

/// A fault of Gavel's own (a lost answer, a task that panicked) where only sqlx's error can
/// travel (the statement group's replies): never taken for an unavailable database (500).
/// Elsewhere a fault is [`crate::Error::Fault`].
pub fn fault(message: impl Into<String>) -> sqlx::Error {
    sqlx::Error::InvalidArgument(message.into())
}

/// `error` again, for each request of a group that failed as a whole (sqlx's errors are not
/// `Clone`), of the same class: unavailable stays unavailable, anything else is a fault.
pub fn same_class(error: &sqlx::Error) -> sqlx::Error {
    match error {
        sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
        sqlx::Error::PoolClosed => sqlx::Error::PoolClosed,
        sqlx::Error::Io(io) => sqlx::Error::Io(std::io::Error::new(io.kind(), io.to_string())),
        other if is_unavailable(other) => sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            other.to_string(),
        )),
        other => fault(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_pool_io_protocol_and_faults() {
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(is_unavailable(&sqlx::Error::PoolClosed));
        assert!(is_unavailable(&sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused
        ))));
        assert!(is_unavailable(&sqlx::Error::Protocol("eof".into())));
        assert!(!is_unavailable(&fault("a statement lost its answer")));
        assert!(!is_unavailable(&sqlx::Error::RowNotFound));
        assert!(is_unavailable(&same_class(&sqlx::Error::Protocol(
            "x".into()
        ))));
        assert!(!is_unavailable(&same_class(&fault("x"))));
    }

    #[test]
    fn classifies_sqlstates() {
        for code in [
            "57P01", "57P02", "57P03", "08006", "08001", "53300", "57014",
        ] {
            assert!(unavailable_sqlstate(code.into()), "{code}");
        }
        for code in ["23505", "22P02", "42601", "28P01"] {
            assert!(!unavailable_sqlstate(code.into()), "{code}");
        }
    }
}
