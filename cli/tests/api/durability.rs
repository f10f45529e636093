//! Pings committed without waiting for the WAL flush (`ping_synchronous_commit = false`,
//! docs/durability.md): what a database crash can lose is the last moments of ping records,
//! and a post of such a ping must fail cleanly, selling and charging nothing.

use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fixtures::{ContractSpec, Exchange, consent, full_lead, outcome_of, ping_lead};
use crate::harness::{TestApp, spawn_app, spawn_app_with, test_settings};

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_post_of_a_ping_whose_record_was_lost_is_ping_not_found_and_sells_nothing(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let (buyer, _) = exchange
        .buyer_with(100_000, ContractSpec::fixed(Some(1000), None))
        .await;
    let app = spawn_app(pool.clone()).await;
    assert!(
        !crate::harness::test_settings().ping_synchronous_commit,
        "pings do not wait for the flush by default"
    );

    let (status, ping) = app
        .ping(&exchange.posting_key, json!({ "lead": ping_lead() }))
        .await;
    assert_eq!(
        (status, ping["status"].as_str()),
        (200, Some("bids")),
        "{ping}"
    );
    // A crash before the WAL flush loses the ping's record whole: its row and its contracts'.
    for statement in [
        "DELETE FROM distribution_winners WHERE tenant_id = $1",
        "DELETE FROM distribution_declines WHERE tenant_id = $1",
        "DELETE FROM posting_log WHERE tenant_id = $1",
    ] {
        sqlx::query(statement)
            .bind(exchange.tenant_id)
            .execute(&pool)
            .await
            .unwrap();
    }

    let (status, problem) = app
        .post(
            &exchange.posting_key,
            json!({ "ping_id": ping["ping_id"], "lead": full_lead(), "consent": consent() }),
        )
        .await;
    assert_eq!(status, 404, "{problem}");
    assert_eq!(problem["code"], "ping_not_found");
    let leads: i64 = sqlx::query_scalar("SELECT count(*) FROM leads WHERE tenant_id = $1")
        .bind(exchange.tenant_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(leads, 0, "no lead is stored");
    assert_eq!(
        exchange.buyer_books(buyer).await,
        (100_000, 100_000),
        "the buyer is charged nothing: balance and ledger"
    );
}

/// An exchange whose one buyer accepts every delivery, served with `settings` and
/// `ping_record_max_wait_ms = 100`.
struct Stalled {
    app: TestApp,
    exchange: Exchange,
    buyer: uuid::Uuid,
    _buyer_server: MockServer,
}

/// A lock on `posting_log` that stands in for a stalled disk: no record can be written until
/// it is committed (reads go on).
type Stall = sqlx::Transaction<'static, sqlx::Postgres>;

impl Stalled {
    async fn start(pool: &PgPool, mut settings: gavel::config::Settings) -> (Self, Stall) {
        settings.ping_record_max_wait_ms = 100;
        Self::start_with(pool, settings, |_| ContractSpec::fixed(Some(1000), None)).await
    }

    /// [`Stalled::start`] with `settings` as they are, the buyer's contract priced by
    /// `pricing` (given the buyer's server, which bids 10.00 on `/bid`).
    async fn start_with(
        pool: &PgPool,
        settings: gavel::config::Settings,
        pricing: impl FnOnce(&MockServer) -> ContractSpec,
    ) -> (Self, Stall) {
        let buyer_server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/bid"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({ "exclusive_bid": "10.00" })),
            )
            .mount(&buyer_server)
            .await;
        Mock::given(method("POST"))
            .and(path("/leads"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "status": "accepted" })))
            .mount(&buyer_server)
            .await;
        let exchange = Exchange::create(pool, "exclusive").await;
        let delivery = json!({ "url": format!("{}/leads", buyer_server.uri()), "timeout_ms": 1000,
                               "accept": { "path": "/status", "equals": "accepted" } });
        let (buyer, _) = exchange
            .buyer_with(
                100_000,
                ContractSpec {
                    delivery: Some(delivery),
                    ..pricing(&buyer_server)
                },
            )
            .await;
        let app = spawn_app_with(pool.clone(), settings, axum::Router::new()).await;
        let mut stall = pool.begin().await.unwrap();
        sqlx::query("LOCK TABLE posting_log IN EXCLUSIVE MODE")
            .execute(&mut *stall)
            .await
            .unwrap();
        let stalled = Self {
            app,
            exchange,
            buyer,
            _buyer_server: buyer_server,
        };
        (stalled, stall)
    }

    /// A ping, answered while its record cannot be written.
    async fn ping(&self, pool: &PgPool) -> serde_json::Value {
        let ping = ping_at_once(&self.app, &self.exchange, "its record cannot be written").await;
        assert_eq!(
            self.records(pool).await,
            0,
            "answered before its record was written"
        );
        ping
    }

    async fn records(&self, pool: &PgPool) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM posting_log WHERE tenant_id = $1")
            .bind(self.exchange.tenant_id)
            .fetch_one(pool)
            .await
            .unwrap()
    }

    fn post(
        &self,
        ping: &serde_json::Value,
    ) -> impl std::future::Future<Output = (u16, serde_json::Value)> + '_ {
        post_of(&self.app, &self.exchange, ping)
    }
}

/// A ping of `exchange`'s campaign that must answer `bids` within 5 s, while `stalled`.
async fn ping_at_once(app: &TestApp, exchange: &Exchange, stalled: &str) -> serde_json::Value {
    let (status, ping) = tokio::time::timeout(
        Duration::from_secs(5),
        app.ping(&exchange.posting_key, json!({ "lead": ping_lead() })),
    )
    .await
    .unwrap_or_else(|_| panic!("the ping answers while {stalled}"));
    assert_eq!(
        (status, ping["status"].as_str()),
        (200, Some("bids")),
        "{ping}"
    );
    ping
}

/// The post of `ping` with the full lead and consent.
fn post_of<'a>(
    app: &'a TestApp,
    exchange: &'a Exchange,
    ping: &serde_json::Value,
) -> impl std::future::Future<Output = (u16, serde_json::Value)> + 'a {
    app.post(
        &exchange.posting_key,
        json!({ "ping_id": ping["ping_id"], "lead": full_lead(), "consent": consent() }),
    )
}

/// True when `future` has not finished after half a second (the stall still holds it).
async fn still_running<F: std::future::Future + Unpin>(future: &mut F) -> bool {
    still_running_for(future, Duration::from_millis(500)).await
}

/// True when `future` has not finished after `wait`.
async fn still_running_for<F: std::future::Future + Unpin>(future: &mut F, wait: Duration) -> bool {
    tokio::time::timeout(wait, future).await.is_err()
}

/// Asserts that `post` still waits while `stall` holds (`waits` says why it should), and sells
/// once `stall` commits.
async fn sells_once_released(
    post: impl std::future::Future<Output = (u16, serde_json::Value)>,
    stall: Stall,
    waits: &str,
) {
    sells_once_released_after(post, stall, Duration::from_millis(500), waits).await;
}

/// [`sells_once_released`], `stall` held for `hold`.
async fn sells_once_released_after(
    post: impl std::future::Future<Output = (u16, serde_json::Value)>,
    stall: Stall,
    hold: Duration,
    waits: &str,
) {
    let mut post = std::pin::pin!(post);
    assert!(still_running_for(&mut post, hold).await, "{waits}");
    stall.commit().await.unwrap();
    let (status, answer) = post.await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("sold")),
        "{answer}"
    );
}

/// `ping_record_max_wait_ms`: a database that cannot write the ping's record (a disk stalled on
/// a flush, here a lock held on `posting_log`) holds up the record, not the ping's answer; a post
/// of the ping that arrives meanwhile waits for the record, then sells as usual.
#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_ping_whose_record_write_stalls_answers_within_its_bound_and_its_post_waits_for_the_record(
    pool: PgPool,
) {
    let (stalled, stall) = Stalled::start(&pool, test_settings()).await;
    let ping = stalled.ping(&pool).await;

    let waits = "the post waits for the ping's record rather than answer ping_not_found";
    sells_once_released(stalled.post(&ping), stall, waits).await;
    assert_eq!(
        stalled.exchange.buyer_books(stalled.buyer).await,
        (99_000, 99_000),
        "the buyer is charged once: balance and ledger"
    );
}

/// A stall that `ping_record_max_wait_ms` (a minute here) would make every ping wait for, on
/// the record of a ping of one buyer's contract (`pricing`).
async fn stalled_for_a_minute(
    pool: &PgPool,
    rtb_answer_before_record: bool,
    pricing: impl FnOnce(&MockServer) -> ContractSpec,
) -> (Stalled, Stall) {
    let mut settings = test_settings();
    settings.ping_record_max_wait_ms = 60_000;
    settings.rtb_answer_before_record = rtb_answer_before_record;
    Stalled::start_with(pool, settings, pricing).await
}

fn rtb(buyer: &MockServer) -> ContractSpec {
    ContractSpec::rtb(format!("{}/bid", buyer.uri()), 2000)
}

/// Asserts that a ping of `stalled` waits for its record, and answers `bids` once `stall` ends.
async fn ping_waits_for_its_record(pool: &PgPool, stalled: &Stalled, stall: Stall) {
    let waits = "the ping waits for its record";
    answers_bids_once_released(&stalled.app, &stalled.exchange, stall, waits).await;
    assert_eq!(stalled.records(pool).await, 1, "answered once recorded");
}

/// Asserts that a ping of `exchange` still waits while `stall` holds (`waits` says why it
/// should), and answers `bids` once `stall` commits; that answer.
async fn answers_bids_once_released(
    app: &TestApp,
    exchange: &Exchange,
    stall: Stall,
    waits: &str,
) -> serde_json::Value {
    let mut ping = std::pin::pin!(app.ping(&exchange.posting_key, json!({ "lead": ping_lead() })));
    assert!(still_running(&mut ping).await, "{waits}");
    stall.commit().await.unwrap();
    let (status, ping) = ping.await;
    assert_eq!(
        (status, ping["status"].as_str()),
        (200, Some("bids")),
        "{ping}"
    );
    ping
}

/// `rtb_answer_before_record`: a ping that waited for its buyers' bids answers without waiting
/// for its record's write at all (here one that cannot be written); a post of it waits for the
/// record, then sells as usual.
#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_ping_that_waited_for_its_buyers_answers_without_waiting_for_its_record(pool: PgPool) {
    let (stalled, stall) = stalled_for_a_minute(&pool, true, rtb).await;
    let ping = stalled.ping(&pool).await;
    assert_eq!(ping["payout"], json!(7.0), "{ping}");

    let waits = "the post waits for the ping's record rather than answer ping_not_found";
    sells_once_released(stalled.post(&ping), stall, waits).await;
    assert_eq!(
        stalled.exchange.buyer_books(stalled.buyer).await,
        (99_000, 99_000),
        "the buyer is charged its bid once: balance and ledger"
    );
}

/// Another Gavel process serving the same database: a post of a ping whose record the first
/// process is still writing behind its answer is looked for again there (docs/durability.md),
/// and sells once the record lands, rather than be answered `ping_not_found`.
#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_post_reaching_another_process_before_its_pings_record_waits_for_it(pool: PgPool) {
    let (stalled, stall) = stalled_for_a_minute(&pool, true, rtb).await;
    let other = spawn_app_with(pool.clone(), test_settings(), axum::Router::new()).await;
    let ping = stalled.ping(&pool).await;

    // Released well within the second the other process looks again.
    let post = post_of(&other, &stalled.exchange, &ping);
    let hold = Duration::from_millis(200);
    let waits = "the other process looks for the ping again rather than answer ping_not_found";
    sells_once_released_after(post, stall, hold, waits).await;
}

/// A post of a ping never recorded is `ping_not_found`: after looking again for a second when
/// its id says it was created moments ago, at once when it is older than two minutes.
#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_post_of_an_unknown_ping_looks_again_only_for_a_fresh_id(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let app = spawn_app(pool.clone()).await;
    let old = {
        let since = (std::time::SystemTime::now() - Duration::from_secs(180))
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let at = uuid::Timestamp::from_unix(uuid::NoContext, since.as_secs(), since.subsec_nanos());
        uuid::Uuid::new_v7(at)
    };
    for (ping_id, looks_again) in [(uuid::Uuid::now_v7(), true), (old, false)] {
        let started = std::time::Instant::now();
        let ping = json!({ "ping_id": ping_id.to_string() });
        let (status, problem) = post_of(&app, &exchange, &ping).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (404, Some("ping_not_found")),
            "{problem}"
        );
        let took = started.elapsed();
        if looks_again {
            assert!(took >= Duration::from_millis(900), "looked again: {took:?}");
        } else {
            assert!(
                took < Duration::from_millis(900),
                "not looked for again: {took:?}"
            );
        }
    }
}

/// A ping that asked its buyers answers ahead of its record only while records are written: once
/// one written behind its answer has failed (a standby after a failover, here a trigger), the
/// next such ping waits for its own and answers its failure, not `bids` it could never sell; once
/// writes succeed again, pings answer `bids`.
#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn after_a_record_written_behind_fails_the_next_ping_waits_for_its_own(pool: PgPool) {
    let mut settings = test_settings();
    settings.ping_record_max_wait_ms = 10_000;
    let (stalled, stall) = Stalled::start_with(&pool, settings, rtb).await;
    stall.rollback().await.unwrap();
    for statement in [
        "CREATE FUNCTION refuse_records() RETURNS trigger LANGUAGE plpgsql
         AS $$ BEGIN RAISE EXCEPTION 'a standby' USING ERRCODE = 'read_only_sql_transaction'; END $$",
        "CREATE TRIGGER refuse_records BEFORE INSERT ON posting_log
         FOR EACH ROW EXECUTE FUNCTION refuse_records()",
    ] {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    let ping = || {
        stalled.app.ping(
            &stalled.exchange.posting_key,
            json!({ "lead": ping_lead() }),
        )
    };
    let (status, first) = ping().await;
    assert_eq!(
        (status, first["status"].as_str()),
        (200, Some("bids")),
        "{first}"
    );
    // Its write behind fails at once; the next ping waits for its own, which fails too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, second) = ping().await;
    assert_eq!(status, 503, "the failure answered, not bids: {second}");

    sqlx::query("DROP TRIGGER refuse_records ON posting_log")
        .execute(&pool)
        .await
        .unwrap();
    for _ in 0..2 {
        let (status, ping) = ping().await;
        assert_eq!(
            (status, ping["status"].as_str()),
            (200, Some("bids")),
            "{ping}"
        );
    }
    assert_eq!(stalled.records(&pool).await, 2, "both written");
}

/// With `rtb_answer_before_record = false` such a ping waits for its record like any other (up
/// to `ping_record_max_wait_ms`).
#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn with_rtb_answer_before_record_off_a_ping_of_bids_waits_for_its_record(pool: PgPool) {
    let (stalled, stall) = stalled_for_a_minute(&pool, false, rtb).await;
    ping_waits_for_its_record(&pool, &stalled, stall).await;
}

/// `rtb_answer_before_record` is for pings that waited for their buyers: a ping of fixed
/// prices still waits for its record.
#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_ping_of_fixed_prices_waits_for_its_record_whatever_rtb_answer_before_record(
    pool: PgPool,
) {
    let (stalled, stall) =
        stalled_for_a_minute(&pool, true, |_| ContractSpec::fixed(Some(1000), None)).await;
    ping_waits_for_its_record(&pool, &stalled, stall).await;
}

/// A post whose ping's record is still being written when the post must answer is told to
/// retry (`503 unavailable`), not `ping_not_found`, which the partner would take as final; the
/// same post once the record is written sells.
#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_post_whose_pings_record_outlasts_its_deadline_is_told_to_retry_and_its_retry_sells(
    pool: PgPool,
) {
    let mut settings = test_settings();
    // A post answers by 1.5 s (a quarter of its 2 s request timeout before it).
    settings.request_timeout_ms = 2000;
    let (stalled, stall) = Stalled::start(&pool, settings).await;
    let ping = stalled.ping(&pool).await;

    let body = json!({ "ping_id": ping["ping_id"], "lead": full_lead(), "consent": consent() });
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        stalled
            .app
            .client
            .post(stalled.app.url("/v1/post"))
            .bearer_auth(&stalled.exchange.posting_key)
            .json(&body)
            .send(),
    )
    .await
    .expect("the post answers at its deadline")
    .unwrap();
    let (status, headers) = (answer.status().as_u16(), answer.headers().clone());
    let problem: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(
        (status, problem["code"].as_str()),
        (503, Some("unavailable")),
        "{problem}"
    );
    assert_eq!(
        headers.get("retry-after").map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let books = || stalled.exchange.buyer_books(stalled.buyer);
    assert_eq!(
        books().await,
        (100_000, 100_000),
        "nothing charged before the record"
    );
    stall.commit().await.unwrap();
    // The record lands once the stall ends: the partner's retry (waiting for the write if it
    // has not ended yet) sells.
    let (status, answer) = stalled.post(&ping).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("sold")),
        "{answer}"
    );
    assert_eq!(
        books().await,
        (99_000, 99_000),
        "the buyer is charged once: balance and ledger"
    );
}

/// A server told to stop (SIGTERM) first finishes the records it answered before, a ping's and
/// a refused post's: a stopped Gavel has lost none of them.
#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn shutdown_waits_for_the_records_written_behind_their_answers(pool: PgPool) {
    let (stalled, stall) = Stalled::start(&pool, test_settings()).await;
    stalled.ping(&pool).await;
    // A post of a ping that does not exist, refused while its record cannot be written.
    let unknown = json!({ "ping_id": uuid::Uuid::now_v7().to_string() });
    let (status, problem) = tokio::time::timeout(Duration::from_secs(5), stalled.post(&unknown))
        .await
        .expect("the refusal answers while its record cannot be written");
    assert_eq!(
        (status, problem["code"].as_str()),
        (404, Some("ping_not_found")),
        "{problem}"
    );
    let tenant_id = stalled.exchange.tenant_id;
    let Stalled { app, .. } = stalled;

    let mut stopping = std::pin::pin!(app.shut_down());
    assert!(
        still_running(&mut stopping).await,
        "the server waits for the records before it stops"
    );
    stall.commit().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("the server stops once the record is written")
        .unwrap();
    let records: i64 = sqlx::query_scalar("SELECT count(*) FROM posting_log WHERE tenant_id = $1")
        .bind(tenant_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        records, 2,
        "the ping's and the refusal's records were written before the server stopped"
    );
}

/// An offer of more contracts than `DECLINES_WRITTEN_WITH_THE_PING` (fixed prices, the last
/// one best), served with pings waiting up to a minute for their record (a declines' write
/// held with the record would hold the ping's answer), and a database that cannot write
/// declines until `Stall` ends: their insert waits for a lock the test holds (a lock on the
/// table would hold the ping's record too: its statement names the table).
struct ManyContracts {
    app: TestApp,
    exchange: Exchange,
    /// (buyer, contract), best bid first.
    ranked: Vec<(uuid::Uuid, uuid::Uuid)>,
    _buyer_server: MockServer,
}

impl ManyContracts {
    /// The best contract's buyer answers `best_answer` to its delivery, the others accept.
    async fn start(pool: &PgPool, best_answer: &str) -> (Self, Stall) {
        Self::start_with(pool, best_answer, 60_000).await
    }

    async fn start_with(pool: &PgPool, best_answer: &str, max_wait_ms: u64) -> (Self, Stall) {
        use gavel::store::pings::DECLINES_WRITTEN_WITH_THE_PING;
        use wiremock::matchers::path;

        let buyer_server = MockServer::start().await;
        for (route, answer) in [("/best", best_answer), ("/others", "accepted")] {
            Mock::given(method("POST"))
                .and(path(route))
                .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "status": answer })))
                .mount(&buyer_server)
                .await;
        }
        let exchange = Exchange::create(pool, "exclusive").await;
        let contracts = DECLINES_WRITTEN_WITH_THE_PING + 2;
        let mut ranked = Vec::new();
        for i in 0..contracts {
            let route = if i + 1 == contracts {
                "/best"
            } else {
                "/others"
            };
            let delivery = json!({ "url": format!("{}{route}", buyer_server.uri()), "timeout_ms": 1000,
                                   "accept": { "path": "/status", "equals": "accepted" } });
            let spec = ContractSpec {
                delivery: Some(delivery),
                ..ContractSpec::fixed(Some(1000 + i as i64), None)
            };
            ranked.insert(0, exchange.buyer_with(100_000, spec).await);
        }
        let mut settings = test_settings();
        settings.ping_record_max_wait_ms = max_wait_ms;
        let app = spawn_app_with(pool.clone(), settings, axum::Router::new()).await;
        for statement in [
            "CREATE FUNCTION stall_declines() RETURNS trigger LANGUAGE plpgsql
             AS $$ BEGIN PERFORM pg_advisory_xact_lock(4242); RETURN NEW; END $$",
            "CREATE TRIGGER stall_declines BEFORE INSERT ON distribution_declines
             FOR EACH ROW EXECUTE FUNCTION stall_declines()",
        ] {
            sqlx::query(statement).execute(pool).await.unwrap();
        }
        let mut stall = pool.begin().await.unwrap();
        sqlx::query("SELECT pg_advisory_xact_lock(4242)")
            .execute(&mut *stall)
            .await
            .unwrap();
        let many = Self {
            app,
            exchange,
            ranked,
            _buyer_server: buyer_server,
        };
        (many, stall)
    }

    /// A ping, answered while its declines cannot be written.
    async fn ping(&self) -> serde_json::Value {
        ping_at_once(&self.app, &self.exchange, "its declines cannot be written").await
    }

    fn post(
        &self,
        ping: &serde_json::Value,
    ) -> impl std::future::Future<Output = (u16, serde_json::Value)> + '_ {
        post_of(&self.app, &self.exchange, ping)
    }

    /// What the buyer at `rank` (0: the best bid) was charged.
    async fn charged(&self, rank: usize) -> (i64, i64) {
        let (balance, ledger) = self.exchange.buyer_books(self.ranked[rank].0).await;
        (100_000 - balance, 100_000 - ledger)
    }
}

/// A ping that declined more contracts than `DECLINES_WRITTEN_WITH_THE_PING` answers once its
/// row and its winners are written, and its post sells, while its declines are still being
/// written; the ping's view waits for them and shows every contract's outcome.
#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_ping_of_many_contracts_answers_and_sells_before_its_declines_are_written(pool: PgPool) {
    let (many, stall) = ManyContracts::start(&pool, "accepted").await;
    let ping = many.ping().await;
    let (status, answer) = tokio::time::timeout(Duration::from_secs(5), many.post(&ping))
        .await
        .expect("the post does not wait for the declines");
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("sold")),
        "{answer}"
    );
    let best_price = 1000 + many.ranked.len() as i64 - 1;
    assert_eq!(
        many.charged(0).await,
        (best_price, best_price),
        "the best bid's buyer is charged its price: balance and ledger"
    );

    let ping_id = ping["ping_id"].as_str().unwrap();
    let mut view = std::pin::pin!(many.app.ping_view(&many.exchange.admin_key, ping_id));
    assert!(
        still_running(&mut view).await,
        "the ping's view waits for its declines"
    );
    stall.commit().await.unwrap();
    let (status, view) = view.await;
    assert_eq!(status, 200, "{view}");
    let outcomes = view["contracts"].as_array().unwrap();
    assert_eq!(
        outcomes.len(),
        many.ranked.len(),
        "every contract's outcome: {view:#}"
    );
    assert_eq!(outcome_of(&view, many.ranked[0].1)["outcome"], "won");
    let outbid = outcomes.iter().filter(|c| c["reason"] == "outbid").count();
    assert_eq!(outbid, many.ranked.len() - 1, "{view:#}");
}

/// The cascade's runner-ups are among the declines: when the winner's buyer rejects the lead
/// before the ping's declines are written, the cascade waits for them and sells to the next
/// best bid.
#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_cascade_waits_for_the_declines_written_behind_the_ping(pool: PgPool) {
    let (many, stall) = ManyContracts::start(&pool, "rejected").await;
    let ping = many.ping().await;
    sells_once_released(
        many.post(&ping),
        stall,
        "the cascade waits for the runner-ups",
    )
    .await;
    let second_price = 1000 + many.ranked.len() as i64 - 2;
    assert_eq!(
        many.charged(0).await,
        (0, 0),
        "the best bid's buyer rejected it"
    );
    assert_eq!(
        many.charged(1).await,
        (second_price, second_price),
        "the runner-up bought it at its own price: balance and ledger"
    );
}

/// With `ping_record_max_wait_ms = 0` every ping waits for its whole record: a ping of many
/// contracts too, its declines included.
#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn with_no_record_behind_a_ping_of_many_contracts_waits_for_its_declines(pool: PgPool) {
    let (many, stall) = ManyContracts::start_with(&pool, "accepted", 0).await;
    let waits = "the ping waits for its declines";
    let ping = answers_bids_once_released(&many.app, &many.exchange, stall, waits).await;
    let declined: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM lead_distribution WHERE ping_id = $1::uuid AND outcome <> 'won'",
    )
    .bind(ping["ping_id"].as_str().unwrap())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        declined,
        many.ranked.len() as i64 - 1,
        "written with the ping"
    );
}

/// A partner that hangs up while its ping waits for its record leaves nothing unwritten: the
/// record, and then the declines written apart, land once the database can write them.
#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_ping_whose_partner_hangs_up_still_has_its_declines_written(pool: PgPool) {
    let (many, declines_stall) = ManyContracts::start(&pool, "accepted").await;
    declines_stall.commit().await.unwrap();
    // The record itself cannot be written now: the ping waits for it (up to a minute).
    let mut stall = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE posting_log IN EXCLUSIVE MODE")
        .execute(&mut *stall)
        .await
        .unwrap();
    let ping = many
        .app
        .client
        .post(many.app.url("/v1/ping"))
        .bearer_auth(&many.exchange.posting_key)
        .json(&json!({ "lead": ping_lead() }))
        .send();
    // The partner hangs up once the ping's record waits for the lock.
    let record_waiting = async {
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'
                   AND query LIKE '%INSERT INTO posting_log%'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            if waiting > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        answer = ping => panic!("the ping answered before its record was written: {answer:?}"),
        () = record_waiting => {}
    }
    // The request is dropped: its connection closes, and the server drops the ping's handler.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stall.commit().await.unwrap();

    let declined = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM lead_distribution WHERE tenant_id = $1 AND outcome <> 'won'",
        )
        .bind(many.exchange.tenant_id)
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let expected = many.ranked.len() as i64 - 1;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while declined().await < expected && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(declined().await, expected, "every decline written");
}
