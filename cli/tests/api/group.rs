//! The group runner of the ping's two statements, on a real database: requests share
//! statements and keep their own answers, a request the database refuses fails alone, an idle
//! group runs a request at once, an unreachable database fails a group at once, a kept
//! connection's ended session fails no request after an idle while, and a claim whose caller
//! has gone is not made.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use gavel::store::group::{Group, GroupStatement};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool};

/// Doubles each request in SQL, recording every statement's requests when `RECORD` (one
/// test reads the record; tests run at once); a negative request divides by zero, so the
/// database refuses the whole statement it is in.
struct Double<const RECORD: bool>;

static STATEMENTS: Mutex<Vec<Vec<i64>>> = Mutex::new(Vec::new());

impl<const RECORD: bool> GroupStatement for Double<RECORD> {
    const NAME: &'static str = "double";
    type Request = i64;
    type Answer = i64;
    const MAX_REQUESTS: usize = 64;
    const MAX_WORK: usize = 1_000;

    fn work(_: &i64) -> usize {
        1
    }

    async fn run(db: &mut PgConnection, requests: &[i64]) -> Result<Vec<i64>, sqlx::Error> {
        if RECORD {
            STATEMENTS.lock().unwrap().push(requests.to_vec());
        }
        sqlx::query_scalar(
            "SELECT CASE WHEN r < 0 THEN r / 0 ELSE r * 2 END
             FROM unnest($1::bigint[]) WITH ORDINALITY AS t (r, n) ORDER BY n",
        )
        .bind(requests)
        .fetch_all(db)
        .await
    }
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn requests_arriving_together_share_statements_and_a_refused_one_fails_alone(pool: PgPool) {
    let group = Group::<Double<true>>::start(pool);

    let requests = (1..=40).map(|i| if i == 7 { -7 } else { i });
    let answers = futures::future::join_all(requests.map(|r| group.run(r))).await;
    for (i, answer) in (1..=40).zip(answers) {
        match i {
            7 => assert!(
                matches!(answer, Err(sqlx::Error::Database(_))),
                "the refused request fails with the database's error: {answer:?}"
            ),
            _ => assert_eq!(answer.unwrap(), i * 2, "request {i} gets its own answer"),
        }
    }
    let statements = std::mem::take(&mut *STATEMENTS.lock().unwrap());
    assert!(
        statements.iter().any(|s| s.len() > 1 && s.contains(&-7)),
        "the refused request shared a statement with others: {statements:?}"
    );
    assert!(
        statements.contains(&vec![-7]),
        "then ran again alone: {statements:?}"
    );

    assert_eq!(group.run(21).await.unwrap(), 42);
    assert_eq!(
        *STATEMENTS.lock().unwrap(),
        vec![vec![21]],
        "an idle group runs a request at once, alone"
    );
}

/// With no connection to be had, a group fails once for all its requests: it does not wait
/// for a connection again for each of them.
#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_group_that_gets_no_connection_fails_all_its_requests_at_once(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(300))
        .connect_with(connect)
        .await
        .unwrap();
    let taken = pool.acquire().await.unwrap();
    let group = Group::<Double<false>>::start(pool.clone());

    let started = Instant::now();
    let answers = futures::future::join_all((1..=40).map(|r| group.run(r))).await;
    let elapsed = started.elapsed();
    for answer in answers {
        assert!(
            matches!(answer, Err(sqlx::Error::PoolTimedOut)),
            "each request is told the database is unavailable: {answer:?}"
        );
    }
    // One wait for the direct statement and one per group; a request-by-request retry
    // would wait 40 times (12 s).
    assert!(
        elapsed < Duration::from_secs(4),
        "the requests waited {elapsed:?}"
    );
    drop(taken);
}

/// The runners and the direct caller keep their connections between statements, and give
/// them back when the pool closes: closing completes, and the database can be dropped.
#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn kept_connections_are_given_back_when_the_pool_closes(pool: PgPool) {
    let group = Group::<Double<false>>::start(pool.clone());
    // A burst (runners take connections) and a lone request (the direct caller takes one).
    futures::future::join_all((1..=20).map(|r| group.run(r))).await;
    assert_eq!(group.run(5).await.unwrap(), 10);
    assert!(pool.size() >= 2, "connections are kept: {}", pool.size());

    tokio::time::timeout(Duration::from_secs(5), pool.close())
        .await
        .expect("the pool closes: every kept connection was given back");
}

/// A kept connection whose session the server ends (an administrator, a restart) is let go:
/// the statement after the one that met the ended session runs on a new connection.
#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_kept_connection_whose_session_was_ended_is_replaced(pool: PgPool) {
    let group = Group::<Double<false>>::start(pool.clone());
    assert_eq!(group.run(1).await.unwrap(), 2);

    end_the_kept_sessions(&pool).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    // The first statement may meet the ended session; the next one must not.
    let _ = group.run(2).await;
    assert_eq!(group.run(3).await.unwrap(), 6);
}

/// A kept connection whose session the server ended while it was idle is tested before its
/// next statement and replaced: that statement does not fail (the first post after a
/// database restart, say).
#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn an_idle_kept_connection_whose_session_was_ended_fails_no_request(pool: PgPool) {
    let group = Group::<Double<false>>::start(pool.clone());
    assert_eq!(group.run(1).await.unwrap(), 2);
    end_the_kept_sessions(&pool).await;
    tokio::time::sleep(Duration::from_millis(700)).await;

    assert_eq!(group.run(2).await.unwrap(), 4);
}

/// Records the requests it runs; a request of 1000 sleeps a while first, holding the group.
struct Claimish;

static CLAIMED: Mutex<Vec<i64>> = Mutex::new(Vec::new());

impl GroupStatement for Claimish {
    const NAME: &'static str = "claimish";
    const DROP_ABANDONED: bool = true;
    type Request = i64;
    type Answer = i64;
    const MAX_REQUESTS: usize = 64;
    const MAX_WORK: usize = 1_000;

    fn work(_: &i64) -> usize {
        1
    }

    async fn run(db: &mut PgConnection, requests: &[i64]) -> Result<Vec<i64>, sqlx::Error> {
        CLAIMED.lock().unwrap().extend_from_slice(requests);
        sqlx::query_scalar(
            "SELECT CASE WHEN r = 1000 THEN (SELECT r FROM pg_sleep(0.5)) ELSE r END
             FROM unnest($1::bigint[]) WITH ORDINALITY AS t (r, n) ORDER BY n",
        )
        .bind(requests)
        .fetch_all(db)
        .await
    }
}

/// A post's claim whose caller has gone (a client that hung up) before its group runs is
/// not made: nobody would settle it, and its ping would stay claimed and unsold.
#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_request_whose_caller_has_gone_is_left_out_of_its_group(pool: PgPool) {
    let group = Group::<Claimish>::start(pool);
    // Warm the connections (the direct caller's and the runner's), so that the slow
    // statements below start at once.
    futures::future::join_all((101..=120).map(|r| group.run(r))).await;

    // Both the direct caller and the runner busy for half a second.
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let group = group.clone();
            tokio::spawn(async move { group.run(1000).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Queued behind the slow statement, then abandoned by its caller.
    let abandoned = tokio::time::timeout(Duration::from_millis(50), group.run(7)).await;
    assert!(
        abandoned.is_err(),
        "the caller gave up while its request was queued"
    );
    assert_eq!(group.run(8).await.unwrap(), 8);
    for slow in slow {
        assert_eq!(slow.await.unwrap().unwrap(), 1000);
    }

    let claimed = CLAIMED.lock().unwrap().clone();
    assert!(claimed.contains(&8), "{claimed:?}");
    assert!(
        !claimed.contains(&7),
        "the abandoned request ran: {claimed:?}"
    );
}

/// Ends every other session of the test's database, as a restart would: the group's kept
/// connection's among them.
async fn end_the_kept_sessions(pool: &PgPool) {
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(!ended.is_empty(), "the kept connection's session was ended");
}
