//! Retrying a database write whose failure says "the database is not there now" (a dropped
//! connection, a pool timeout, a restart or failover), for the writes that must not be lost:
//! a sale's completion or release. Another change (`store::is_unavailable`) classifies the
//! same errors for HTTP answers; this one adds the conflicts a retry resolves.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// True when the same statement may well succeed if sent again: the connection or the server
/// went away, the pool had no connection in time, or a conflict a retry resolves.
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed => true,
        // A server that closed the connection mid-message.
        sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // Class 08: connection exception; 57P01-03: admin shutdown, crash shutdown, cannot
            // connect now; 53300: too many connections; 55000: "database is not currently
            // accepting connections"; 57014: a cancelled statement (statement timeout);
            // 40001/40P01: serialization failure, deadlock.
            code.starts_with("08")
                || matches!(
                    code.as_ref(),
                    "57P01" | "57P02" | "57P03" | "53300" | "55000" | "57014" | "40001" | "40P01"
                )
        }),
        _ => false,
    }
}

/// Runs `attempt` until it succeeds, fails for a reason a retry cannot fix, or `deadline`
/// passes, waiting 50 ms, then twice as long each time (at most 2 s) between attempts.
pub async fn with_backoff<T, F, Fut>(deadline: Instant, mut attempt: F) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let mut pause = Duration::from_millis(50);
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) if is_transient(&error) && Instant::now() + pause < deadline => {
                tracing::warn!(%error, "a settlement write failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn retries_transient_errors_until_success_and_stops_on_others() {
        let mut calls = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        let answer = with_backoff(deadline, || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Err(sqlx::Error::PoolTimedOut)
                } else {
                    Ok(n)
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(answer, 3);

        let mut calls = 0;
        let failed = with_backoff(deadline, || {
            calls += 1;
            async { Err::<(), _>(sqlx::Error::RowNotFound) }
        })
        .await;
        assert!(matches!(failed, Err(sqlx::Error::RowNotFound)));
        assert_eq!(calls, 1, "a lasting error is not retried");
    }
}
