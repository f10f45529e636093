//! Durable settlement and coherent time limits (issue 14): a sale the buyer accepted survives
//! the database going away before its completion, and a post outlasting its request answers
//! "settling", never 503. Buyers are real HTTP servers on 127.0.0.1; the faults are real (the
//! database refuses connections and Gavel's sessions are terminated).

use std::future::Future;
use std::time::Duration;

use axum::Json;
use axum::routing::post;
use chrono::Utc;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use crate::fixtures::{ContractSpec, Exchange, consent, full_lead, ping_lead};
use crate::harness::{TestApp, spawn_app, spawn_app_with, test_settings};

/// A buyer's delivery endpoint on 127.0.0.1 that runs `on_delivery` when a lead arrives, then
/// accepts it. Returns the contract's `delivery`.
async fn buyer<F, Fut>(on_delivery: F, timeout_ms: u32) -> Value
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let router = axum::Router::new().route(
        "/leads",
        post(move || {
            let on_delivery = on_delivery.clone();
            async move {
                on_delivery().await;
                Json(json!({ "status": "accepted" }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    json!({ "url": format!("http://{address}/leads"), "timeout_ms": timeout_ms,
            "accept": { "path": "/status", "equals": "accepted" } })
}

async fn sql(conn: &mut PgConnection, statement: &'static str) {
    sqlx::query(statement).execute(conn).await.unwrap();
}

/// Makes database `name` refuse new connections and terminates every session on it: Gavel's
/// pooled connections die, and new ones are refused. `conn` is on another database.
async fn cut_the_database(conn: &mut PgConnection, name: &str) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"
    )))
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(name)
        .execute(&mut *conn)
        .await
        .unwrap();
}

async fn restore_the_database(conn: &mut PgConnection, name: &str) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"
    )))
    .execute(&mut *conn)
    .await
    .unwrap();
}

async fn ping_with_bids(app: &TestApp, key: &str) -> Value {
    let (status, answer) = app.ping(key, json!({ "lead": ping_lead() })).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("bids")),
        "{answer}"
    );
    answer
}

fn post_body(ping: &Value) -> Value {
    json!({ "ping_id": ping["ping_id"], "lead": full_lead(), "consent": consent() })
}

/// What the books say about the one sale of `ping_id`: its status, the buyer's sale charges
/// and releases, the partner's payouts, and the sale's dedup keys.
#[derive(Debug, PartialEq, Eq)]
struct Books {
    status: String,
    buyer_charges: Vec<i64>,
    buyer_releases: i64,
    partner_payouts: Vec<i64>,
    dedup_keys: i64,
}

async fn books(pool: &PgPool, ping_id: &Value) -> Books {
    let ping_id: Uuid = ping_id.as_str().unwrap().parse().unwrap();
    let (sale_id, status): (Uuid, String) =
        sqlx::query_as("SELECT id, status FROM lead_sales WHERE ping_id = $1")
            .bind(ping_id)
            .fetch_one(pool)
            .await
            .unwrap();
    let amounts = |account: &'static str, kind: &'static str| async move {
        sqlx::query_scalar::<_, i64>(
            "SELECT amount_cents FROM ledger_entries WHERE sale_id = $1 AND account = $2 AND kind = $3",
        )
        .bind(sale_id)
        .bind(account)
        .bind(kind)
        .fetch_all(pool)
        .await
        .unwrap()
    };
    Books {
        status,
        buyer_charges: amounts("buyer", "sale").await,
        buyer_releases: amounts("buyer", "release").await.len() as i64,
        partner_payouts: amounts("partner", "sale").await,
        dedup_keys: sqlx::query_scalar("SELECT count(*) FROM dedup_keys WHERE sale_id = $1")
            .bind(sale_id)
            .fetch_one(pool)
            .await
            .unwrap(),
    }
}

fn sold_once() -> Books {
    Books {
        status: "sold".to_owned(),
        buyer_charges: vec![-4000],
        buyer_releases: 0,
        // The campaign's 70 % revenue share of 40.00.
        partner_payouts: vec![2800],
        // The consumer's email and phone.
        dedup_keys: 2,
    }
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_sale_the_buyer_accepted_survives_the_database_dropping_before_its_completion(
    pool: PgPool,
) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let name = pool.connect_options().get_database().unwrap().to_owned();
    let connect = pool.connect_options().as_ref().clone().database("postgres");
    // When the lead arrives, the database goes away for a second and a half: Gavel's
    // connections are terminated and new ones refused while the buyer's "accepted" travels.
    let delivery = buyer(
        move || {
            let (connect, name) = (connect.clone(), name.clone());
            async move {
                let mut conn = PgConnection::connect_with(&connect).await.unwrap();
                cut_the_database(&mut conn, &name).await;
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    restore_the_database(&mut conn, &name).await;
                });
            }
        },
        5000,
    )
    .await;
    let spec = ContractSpec {
        delivery: Some(delivery),
        dedup_days: 30,
        ..ContractSpec::fixed(Some(4000), None)
    };
    let (buyer_id, _) = exchange.buyer_with(100_000, spec).await;
    let app = spawn_app(pool.clone()).await;

    let ping = ping_with_bids(&app, &exchange.posting_key).await;
    let (status, answer) = app.post(&exchange.posting_key, post_body(&ping)).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("sold")),
        "{answer}"
    );
    assert_eq!(books(&pool, &ping["ping_id"]).await, sold_once());
    assert_eq!(exchange.buyer_books(buyer_id).await, (96_000, 96_000));

    // The sweep, run now and past the sale's deadline, changes nothing.
    gavel::store::sales::release_interrupted(&pool, Utc::now())
        .await
        .unwrap();
    assert_eq!(books(&pool, &ping["ping_id"]).await, sold_once());
    // The consumer is the buyer's now: a second post of the same consumer is a duplicate. (The
    // ping's own connections were cut too: it may take a try or two to get them back.)
    let mut again = Value::Null;
    for _ in 0..20 {
        let (status, answer) = app
            .ping(&exchange.posting_key, json!({ "lead": ping_lead() }))
            .await;
        if status == 200 {
            again = answer;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(again["status"], "bids", "{again}");
    let (_, answer) = app.post(&exchange.posting_key, post_body(&again)).await;
    assert_eq!(answer["results"][0]["status"], "duplicate", "{answer}");
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn the_sweep_completes_a_sale_whose_completion_could_not_run(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let delivery = buyer(|| async {}, 5000).await;
    let spec = ContractSpec {
        delivery: Some(delivery),
        dedup_days: 30,
        ..ContractSpec::fixed(Some(4000), None)
    };
    let (buyer_id, _) = exchange.buyer_with(100_000, spec).await;
    // The database refuses to mark any sale sold (as a failing disk or a broken replica would).
    let mut conn = pool.acquire().await.unwrap();
    sql(
        &mut conn,
        "CREATE FUNCTION refuse_sold() RETURNS trigger LANGUAGE plpgsql AS
         $$ BEGIN RAISE EXCEPTION 'cannot write now'; END $$",
    )
    .await;
    sql(
        &mut conn,
        "CREATE TRIGGER refuse_sold BEFORE UPDATE ON lead_sales FOR EACH ROW
         WHEN (NEW.status = 'sold') EXECUTE FUNCTION refuse_sold()",
    )
    .await;
    let app = spawn_app(pool.clone()).await;

    let ping = ping_with_bids(&app, &exchange.posting_key).await;
    let (status, answer) = app.post(&exchange.posting_key, post_body(&ping)).await;
    // Not a failure: the sale goes on, and the partner is told to ask again.
    assert_eq!(
        (status, answer["status"].as_str()),
        (202, Some("settling")),
        "{answer}"
    );
    assert_eq!(answer["ping_id"], ping["ping_id"]);
    let pending = books(&pool, &ping["ping_id"]).await;
    assert_eq!(
        (
            pending.status.as_str(),
            &pending.buyer_charges,
            pending.partner_payouts.len()
        ),
        ("pending", &vec![-4000], 0)
    );
    let verdict: Option<String> =
        sqlx::query_scalar("SELECT verdict FROM lead_sales WHERE ping_id = $1")
            .bind(Uuid::parse_str(ping["ping_id"].as_str().unwrap()).unwrap())
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        verdict.as_deref(),
        Some("accepted"),
        "the buyer's verdict is kept"
    );

    // The database recovers; the sale's deadline passes; the sweep completes the sale (not
    // releases it), exactly once however often it runs.
    sql(&mut conn, "DROP TRIGGER refuse_sold ON lead_sales").await;
    sql(
        &mut conn,
        "UPDATE lead_sales SET pending_until = now() - interval '1 second' WHERE status = 'pending'",
    )
    .await;
    let swept = gavel::store::sales::release_interrupted(&pool, Utc::now())
        .await
        .unwrap();
    assert_eq!(swept.len(), 1);
    gavel::store::sales::release_interrupted(&pool, Utc::now())
        .await
        .unwrap();
    assert_eq!(books(&pool, &ping["ping_id"]).await, sold_once());
    assert_eq!(exchange.buyer_books(buyer_id).await, (96_000, 96_000));

    // The post's answer is its final state now. (The sweep answers a post a minute after it.)
    sql(
        &mut conn,
        "UPDATE leads SET created_at = created_at - interval '2 minutes'",
    )
    .await;
    gavel::store::sales::release_interrupted(&pool, Utc::now())
        .await
        .unwrap();
    let (status, replayed, text) = app
        .post_raw("/v1/post", &exchange.posting_key, &post_body(&ping))
        .await;
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!((status, replayed), (200, true), "{answer}");
    assert_eq!(
        (answer["status"].as_str(), &answer["results"][0]["status"]),
        (Some("sold"), &json!("sold"))
    );
}

/// A buyer that takes `delay` to accept.
async fn slow_buyer(delay: Duration, timeout_ms: u32) -> Value {
    buyer(move || tokio::time::sleep(delay), timeout_ms).await
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_post_outlasting_its_request_answers_settling_and_its_retry_the_final_state(
    pool: PgPool,
) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let delivery = slow_buyer(Duration::from_millis(2500), 10_000).await;
    let spec = ContractSpec {
        delivery: Some(delivery),
        ..ContractSpec::fixed(Some(4000), None)
    };
    exchange.buyer_with(100_000, spec).await;
    let mut settings = test_settings();
    settings.request_timeout_ms = 2000;
    let app = spawn_app_with(pool.clone(), settings, axum::Router::new()).await;

    let ping = ping_with_bids(&app, &exchange.posting_key).await;
    let (status, text) = {
        let (status, _, text) = app
            .post_raw("/v1/post", &exchange.posting_key, &post_body(&ping))
            .await;
        (status, text)
    };
    assert_eq!(status, 202, "not 503 while the sale goes on: {text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["status"], "settling");
    // A retry waiting for it within its own deadline gets the final state.
    let (status, replayed, text) = app
        .post_raw("/v1/post", &exchange.posting_key, &post_body(&ping))
        .await;
    assert_eq!((status, replayed), (200, true), "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["status"], "sold");

    // The direct post too.
    let mut lead = full_lead();
    lead["email"] = json!("someone.else@example.com");
    let direct_other = json!({ "lead": lead, "consent": consent() });
    let (status, _, text) = app
        .post_raw("/v1/leads", &exchange.posting_key, &direct_other)
        .await;
    assert_eq!(status, 202, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["status"], "settling");
    let ping_id: Uuid = answer["ping_id"].as_str().unwrap().parse().unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stored: Option<Value> =
        sqlx::query_scalar("SELECT post_response FROM leads WHERE ping_id = $1")
            .bind(ping_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stored.unwrap()["status"], "sold");
}

/// POSTs `body` to `path` over raw TCP, its head at once and its body in four pieces over
/// about a second (a slow client); returns the status and the body's text.
async fn post_slowly(app: &TestApp, path: &str, key: &str, body: &Value) -> (u16, String) {
    use std::io::{Read, Write};
    let address = app.address;
    let (path, key, body) = (path.to_owned(), key.to_owned(), body.to_string());
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        for piece in body.as_bytes().chunks(body.len().div_ceil(4)) {
            std::thread::sleep(Duration::from_millis(250));
            stream.write_all(piece).unwrap();
        }
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let status = answer[9..12].parse().unwrap();
        let text = answer.split_once("\r\n\r\n").unwrap().1.to_owned();
        (status, text)
    })
    .await
    .unwrap()
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_post_whose_body_arrives_slowly_answers_settling_before_its_request_times_out(
    pool: PgPool,
) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    // 1.2 s: within the 1.5 s answer deadline counted from the handler's start, but the body
    // takes about 1 s to arrive, and the 2 s request timeout counts from the request's arrival.
    let delivery = slow_buyer(Duration::from_millis(1200), 10_000).await;
    let spec = ContractSpec {
        delivery: Some(delivery),
        ..ContractSpec::fixed(Some(4000), None)
    };
    exchange.buyer_with(100_000, spec).await;
    let mut settings = test_settings();
    settings.request_timeout_ms = 2000;
    let app = spawn_app_with(pool.clone(), settings, axum::Router::new()).await;

    let ping = ping_with_bids(&app, &exchange.posting_key).await;
    let (status, text) =
        post_slowly(&app, "/v1/post", &exchange.posting_key, &post_body(&ping)).await;
    assert_eq!(status, 202, "not 503 while the sale goes on: {text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["status"], "settling");
    let (status, replayed, text) = app
        .post_raw("/v1/post", &exchange.posting_key, &post_body(&ping))
        .await;
    assert_eq!((status, replayed), (200, true), "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["status"], "sold");
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_contracts_delivery_timeout_is_cut_to_the_longest_allowed(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    // The contract gives its buyer 60 s; the settings allow 1 s.
    let delivery = slow_buyer(Duration::from_secs(3), 60_000).await;
    let spec = ContractSpec {
        delivery: Some(delivery),
        ..ContractSpec::fixed(Some(4000), None)
    };
    let (buyer_id, _) = exchange.buyer_with(100_000, spec).await;
    let mut settings = test_settings();
    settings.delivery_timeout_ms = 1000;
    settings.delivery_timeout_max_ms = 1000;
    let app = spawn_app_with(pool.clone(), settings, axum::Router::new()).await;

    let ping = ping_with_bids(&app, &exchange.posting_key).await;
    let started = std::time::Instant::now();
    let (status, answer) = app.post(&exchange.posting_key, post_body(&ping)).await;
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["results"][0]["status"], "failed");
    assert_eq!(answer["results"][0]["reason"], "no answer within 1000 ms");
    assert_eq!(exchange.buyer_books(buyer_id).await, (100_000, 100_000));
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn waiting_retries_are_bounded_and_woken_when_the_post_settles(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let delivery = slow_buyer(Duration::from_millis(2000), 10_000).await;
    let spec = ContractSpec {
        delivery: Some(delivery),
        ..ContractSpec::fixed(Some(4000), None)
    };
    exchange.buyer_with(100_000, spec).await;
    let mut settings = test_settings();
    settings.max_waiting_retries = 1;
    let app =
        std::sync::Arc::new(spawn_app_with(pool.clone(), settings, axum::Router::new()).await);
    let ping = ping_with_bids(&app, &exchange.posting_key).await;
    let body = post_body(&ping);

    let send = |delay_ms: u64| {
        let (app, key, body) = (app.clone(), exchange.posting_key.clone(), body.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            let sent = std::time::Instant::now();
            let (status, replayed, text) = app.post_raw("/v1/post", &key, &body).await;
            (status, replayed, text, sent, std::time::Instant::now())
        })
    };
    let first = send(0);
    let waiting = send(300);
    let beyond = send(800);

    // Beyond the bound: answered at once, "settling", to be sent again.
    let (status, replayed, text, sent, answered) = beyond.await.unwrap();
    assert_eq!((status, replayed), (202, true), "{text}");
    assert!(
        answered - sent < Duration::from_millis(300),
        "{:?}",
        answered - sent
    );
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["status"],
        "settling"
    );

    let (status, _, first_text, _, first_answered) = first.await.unwrap();
    assert_eq!(status, 200, "{first_text}");
    // The waiting retry: the same answer, as soon as the first post has it (a poll would
    // answer up to half a second later).
    let (status, replayed, text, _, answered) = waiting.await.unwrap();
    assert_eq!((status, replayed), (200, true), "{text}");
    assert_eq!(text, first_text);
    let lag = answered.saturating_duration_since(first_answered);
    assert!(
        lag < Duration::from_millis(150),
        "answered {lag:?} after the first post"
    );
}
