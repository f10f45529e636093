//! A ping's RTB calls start while its consumer's history is read (docs/auction.md, step 7):
//! with the offer's state from a fresh copy, only the consumer's hashes are read, and that read
//! can only decline contracts. A stalled read (an exclusive lock on `dedup_keys`, which the
//! consumer's read looks up) shows which calls went out before it ended.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fixtures::{ContractSpec, Exchange, outcome_of, ping_lead};
use crate::harness::{TestApp, spawn_app_with, test_settings};

/// Two RTB buyers on one offer, each (buyer, contract): `high` bids 40.00 and keeps a 30-day
/// dedup window, `low` bids 30.00.
struct TwoBidders {
    exchange: Exchange,
    buyers: MockServer,
    high: (Uuid, Uuid),
    low: (Uuid, Uuid),
    app: TestApp,
}

impl TwoBidders {
    /// The exchange, with `setup` run on its offer (by SQL) before Gavel starts.
    async fn start(pool: &PgPool, setup: impl AsyncFnOnce(&Exchange)) -> TwoBidders {
        let exchange = Exchange::create(pool, "exclusive").await;
        let buyers = MockServer::start().await;
        for (route, bid) in [("/high", "40.00"), ("/low", "30.00")] {
            Mock::given(method("POST"))
                .and(path(route))
                .respond_with(
                    ResponseTemplate::new(200).set_body_json(json!({ "exclusive_bid": bid })),
                )
                .mount(&buyers)
                .await;
        }
        let high = exchange
            .buyer_with(
                100_000,
                ContractSpec {
                    dedup_days: 30,
                    ..ContractSpec::rtb(format!("{}/high", buyers.uri()), 2000)
                },
            )
            .await;
        let low = exchange
            .buyer_with(
                100_000,
                ContractSpec::rtb(format!("{}/low", buyers.uri()), 2000),
            )
            .await;
        setup(&exchange).await;
        let mut settings = test_settings();
        // The offer's state stays fresh for the whole test: only the consumer is read.
        settings.state_cache_ms = 10_000;
        let app = spawn_app_with(pool.clone(), settings, axum::Router::new()).await;
        TwoBidders {
            exchange,
            buyers,
            high,
            low,
            app,
        }
    }

    async fn ping(&self, email: &str) -> (u16, Value) {
        let body = json!({ "lead": ping_lead(), "dedup": { "email_sha256": sha256_hex(email) } });
        self.app.ping(&self.exchange.posting_key, body).await
    }

    /// Pings for `email` while its consumer's read is held (an exclusive lock on `dedup_keys`,
    /// which that read looks up), runs `while_held`, which the ping must not outlast, then
    /// lets the read go: the answer, and the ping's admin view.
    async fn ping_held(&self, email: &str, while_held: impl AsyncFnOnce()) -> (Value, Value) {
        let mut hold = self.exchange.pool.begin().await.unwrap();
        sqlx::query("LOCK TABLE dedup_keys IN ACCESS EXCLUSIVE MODE")
            .execute(&mut *hold)
            .await
            .unwrap();
        let mut ping = std::pin::pin!(self.ping(email));
        tokio::select! {
            answer = &mut ping => panic!("the ping answered before its consumer was read: {answer:?}"),
            () = while_held() => {}
        }
        hold.rollback().await.unwrap();
        let (status, answer) = ping.await;
        assert_eq!(status, 200, "{answer}");
        let ping_id = answer["ping_id"].as_str().unwrap();
        let (_, view) = self.app.ping_view(&self.exchange.admin_key, ping_id).await;
        (answer, view)
    }

    /// From now on the high bidder answers its 40.00 after `ms` milliseconds.
    async fn high_answers_after(&self, ms: u64) {
        Mock::given(method("POST"))
            .and(path("/high"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({ "exclusive_bid": "40.00" }))
                    .set_delay(Duration::from_millis(ms)),
            )
            .with_priority(2)
            .mount(&self.buyers)
            .await;
    }

    /// A first ping, which reads the offer's state whole and leaves a copy of it.
    async fn warm_up(&self) {
        let (status, answer) = self.ping("first@example.com").await;
        assert_eq!(
            (status, answer["status"].as_str()),
            (200, Some("bids")),
            "{answer}"
        );
        assert_eq!(self.calls().await, 2);
    }

    /// `buyer` bought the consumer of `email` on the offer three days ago.
    async fn bought(&self, buyer: Uuid, email: &str) {
        sqlx::query(
            "INSERT INTO dedup_keys (tenant_id, key_hash, buyer_id, offer_id, kind, sold_at, sale_id)
             VALUES ($1, decode($2, 'hex'), $3, $4, 'email', now() - interval '3 days', gen_random_uuid())",
        )
        .bind(self.exchange.tenant_id)
        .bind(sha256_hex(email))
        .bind(buyer)
        .bind(self.exchange.offer_id)
        .execute(&self.exchange.pool)
        .await
        .unwrap();
    }

    async fn calls(&self) -> usize {
        self.buyers.received_requests().await.unwrap().len()
    }

    /// Asserts that both buyers are called for the ping after the warm-up's, within 5 s.
    async fn both_called_again(&self) {
        let reached = self.calls_reach(4, Duration::from_secs(5)).await;
        assert!(reached, "the calls waited for the consumer's history");
    }

    /// Waits up to `wait` for the buyers to have received `count` calls in all.
    async fn calls_reach(&self, count: usize, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if self.calls().await >= count {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

fn sha256_hex(text: &str) -> String {
    hex::encode(gavel::keys::hash(text))
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn rtb_calls_go_out_while_the_consumer_is_read_and_a_buyer_that_bought_it_does_not_win(
    pool: PgPool,
) {
    let bidders = TwoBidders::start(&pool, async |_| {}).await;
    bidders.warm_up().await;
    bidders.bought(bidders.high.0, "ada@example.com").await;
    bidders.high_answers_after(1900).await;

    let started = Instant::now();
    let (answer, view) = bidders
        .ping_held("ada@example.com", async || {
            bidders.both_called_again().await
        })
        .await;

    // The buyer that bought this consumer bid the most, but its bid is not taken.
    assert_eq!(answer["status"], "bids", "{answer}");
    assert_eq!(answer["payout"], json!(21.0), "70 % of 30.00: {answer}");
    let high = outcome_of(&view, bidders.high.1);
    assert_eq!(high["reason"], "duplicate", "{high}");
    assert_eq!(outcome_of(&view, bidders.low.1)["outcome"], "won", "{view}");
    // Its call, still waiting for the slow answer, was aborted: the ping did not wait for it.
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_consumer_the_offer_sold_is_a_duplicate_though_its_calls_went_out(pool: PgPool) {
    let bidders = TwoBidders::start(&pool, async |exchange| {
        sqlx::query("UPDATE offers SET dedup_days = 30 WHERE id = $1")
            .bind(exchange.offer_id)
            .execute(&exchange.pool)
            .await
            .unwrap();
    })
    .await;
    bidders.warm_up().await;
    bidders.bought(bidders.low.0, "bob@example.com").await;
    // From now on the high bidder answers just within its 2 s timeout.
    bidders.high_answers_after(1900).await;

    let started = Instant::now();
    let (answer, view) = bidders
        .ping_held("bob@example.com", async || {
            bidders.both_called_again().await
        })
        .await;

    assert_eq!(answer["status"], "duplicate", "{answer}");
    // Its calls were aborted: the ping did not wait for the slow one.
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(view["status"], "duplicate", "{view}");
    assert_eq!(
        view["contracts"],
        json!([]),
        "no auction is recorded: {view}"
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn with_a_suppression_list_no_call_goes_out_before_the_consumer_is_read(pool: PgPool) {
    let bidders = TwoBidders::start(&pool, async |exchange| {
        let list = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO suppression_lists (tenant_id, id, name, entry_count)
             VALUES ($1, $2, 'Do not call', 1)",
        )
        .bind(exchange.tenant_id)
        .bind(list)
        .execute(&exchange.pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO suppression_entries (tenant_id, list_id, hash)
             VALUES ($1, $2, decode($3, 'hex'))",
        )
        .bind(exchange.tenant_id)
        .bind(list)
        .bind(sha256_hex("carol@example.com"))
        .execute(&exchange.pool)
        .await
        .unwrap();
        sqlx::query("UPDATE offers SET suppression_list_ids = ARRAY[$2] WHERE id = $1")
            .bind(exchange.offer_id)
            .bind(list)
            .execute(&exchange.pool)
            .await
            .unwrap();
    })
    .await;
    bidders.warm_up().await;

    let (answer, view) = bidders
        .ping_held("carol@example.com", async || {
            // An early call reaches the buyers within milliseconds.
            let reached = bidders.calls_reach(3, Duration::from_millis(500)).await;
            assert!(
                !reached,
                "a buyer was called before the suppression lists were read"
            );
        })
        .await;

    assert_eq!(answer["status"], "no_bids", "{answer}");
    assert_eq!(
        outcome_of(&view, bidders.high.1)["reason"],
        "suppressed",
        "{view}"
    );
    assert_eq!(
        bidders.calls().await,
        2,
        "a suppressed consumer was offered to a buyer"
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_half_open_breakers_probe_made_early_is_taken_and_closes_it(pool: PgPool) {
    let bidders = TwoBidders::start(&pool, async |_| {}).await;
    let key = &bidders.exchange.admin_key;
    let breaker = json!({ "breaker": { "failures": 1, "cooldown_ms": 500 } });
    let settings = "/v1/admin/settings";
    let (status, answer) = bidders
        .app
        .admin(reqwest::Method::PATCH, settings, key, Some(breaker))
        .await;
    assert_eq!(status, 200, "{answer}");
    // The high bidder fails once, on the warm-up: its breaker opens.
    Mock::given(method("POST"))
        .and(path("/high"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&bidders.buyers)
        .await;
    bidders.warm_up().await;
    let contract = format!("/v1/admin/contracts/{}", bidders.high.1);
    let rtb_state = async || {
        let (_, health) = bidders
            .app
            .admin(reqwest::Method::GET, &contract, key, None)
            .await;
        health["endpoint_health"]["rtb"]["state"].clone()
    };
    assert_eq!(rtb_state().await, "open");
    // Past the cool-down: half-open, the next call is the probe.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(rtb_state().await, "half_open");
    // The probe answers after the consumer's read is in.
    bidders.high_answers_after(300).await;

    let (answer, view) = bidders
        .ping_held("dan@example.com", async || {
            bidders.both_called_again().await
        })
        .await;

    assert_eq!(
        answer["payout"],
        json!(28.0),
        "70 % of the probe's 40.00: {answer}"
    );
    assert_eq!(
        outcome_of(&view, bidders.high.1)["outcome"],
        "won",
        "{view}"
    );
    assert_eq!(rtb_state().await, "closed");
}
