//! Retrying a database write whose failure says "the database is not there now" (a dropped
//! connection, a pool timeout, a restart or failover), for the writes that must not be lost:
//! a sale's completion or release. Which errors those are is [`super::is_unavailable`]'s
//! answer, the same that makes an HTTP answer a 503.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

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
            Err(error) if super::is_unavailable(&error) && Instant::now() + pause < deadline => {
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
