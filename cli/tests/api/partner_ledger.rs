//! The partner's balance and ledger (docs/returns.md): every completed sale credits its payout
//! with its `sale` entry; payments and adjustments move it with theirs (idempotent, validated,
//! never past the balance for a payment, even racing); the balance is always the sum of the
//! ledger.

use std::sync::Arc;

use futures::future::join_all;
use gavel::clock::Clock;
use gavel::money::{ExtraDecimals, Money};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fixtures::{ContractSpec, Exchange, consent, full_lead, ping_lead};
use crate::harness::{TestApp, spawn_app_with_clock, test_settings};
use crate::idempotency::send;

pub fn cents(value: &Value) -> i64 {
    Money::from_json(value, ExtraDecimals::Reject)
        .unwrap_or_else(|e| panic!("{value}: {e}"))
        .cents()
}

/// A tenant (America/New_York) with a buyer paying 40.00 a lead to an accepting endpoint and a
/// partner paid 70 % of it (28.00), served by an app on `clock`.
pub struct Books {
    pub app: TestApp,
    pub exchange: Exchange,
    pub buyer_id: Uuid,
    _buyers: MockServer,
}

impl Books {
    pub async fn open(pool: &PgPool, clock: Arc<dyn Clock>) -> Books {
        let exchange = Exchange::create(pool, "exclusive").await;
        let buyers = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/leads"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "status": "accepted" })))
            .mount(&buyers)
            .await;
        let spec = ContractSpec {
            delivery: Some(
                json!({ "url": format!("{}/leads", buyers.uri()), "timeout_ms": 5000,
                                   "accept": { "path": "/status", "equals": "accepted" } }),
            ),
            ..ContractSpec::fixed(Some(4000), None)
        };
        let (buyer_id, _) = exchange.buyer_with(1_000_000, spec).await;
        let app =
            spawn_app_with_clock(pool.clone(), test_settings(), axum::Router::new(), clock).await;
        Books {
            app,
            exchange,
            buyer_id,
            _buyers: buyers,
        }
    }

    /// Sells one lead: a sale of 40.00, a payout of 28.00.
    pub async fn sell(&self) {
        let key = &self.exchange.posting_key;
        let (status, ping) = self.app.ping(key, json!({ "lead": ping_lead() })).await;
        assert_eq!((status, &ping["status"]), (200, &json!("bids")), "{ping}");
        let (status, answer) = self
            .app
            .post(
                key,
                json!({ "ping_id": ping["ping_id"], "lead": full_lead(), "consent": consent() }),
            )
            .await;
        assert_eq!(
            (status, &answer["status"]),
            (200, &json!("sold")),
            "{answer}"
        );
    }

    pub fn partner(&self, what: &str) -> String {
        format!("/v1/admin/partners/{}/{what}", self.exchange.partner_id)
    }

    /// POSTs `body` to `path` with the admin key and, if any, an `Idempotency-Key`; the status,
    /// whether the answer was replayed, and the body.
    pub async fn send(&self, path: &str, key: Option<&str>, body: Value) -> (u16, bool, Value) {
        let (status, replayed, text) =
            send(&self.app, path, &self.exchange.admin_key, key, &body).await;
        (
            status,
            replayed,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, answer) = self
            .app
            .admin(Method::GET, path, &self.exchange.admin_key, None)
            .await;
        assert_eq!(status, 200, "GET {path}: {answer}");
        answer
    }

    /// The partner's balance as the API shows it.
    pub async fn partner_balance(&self) -> i64 {
        let partner = self
            .get(&format!("/v1/admin/partners/{}", self.exchange.partner_id))
            .await;
        cents(&partner["balance"])
    }

    /// Every entry of the partner's ledger through the API, newest first, page by page.
    pub async fn partner_ledger(&self) -> Vec<Value> {
        let first = format!("{}?limit=2", self.partner("ledger"));
        let (mut entries, mut next) = (Vec::new(), first.clone());
        loop {
            let page = self.get(&next).await;
            entries.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(cursor) => next = format!("{first}&cursor={cursor}"),
                None => return entries,
            }
        }
    }
}

fn system_clock() -> Arc<dyn Clock> {
    Arc::new(gavel::clock::SystemClock)
}

fn kinds(entries: &[Value]) -> Vec<&str> {
    entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect()
}

fn sum(entries: &[Value]) -> i64 {
    entries.iter().map(|e| cents(&e["amount"])).sum()
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn the_partner_balance_is_the_sum_of_its_ledger_after_sales_payments_and_adjustments(
    pool: PgPool,
) {
    let books = Books::open(&pool, system_clock()).await;
    assert_eq!(books.partner_balance().await, 0);
    for _ in 0..3 {
        books.sell().await;
    }
    // The sales' `sale` entries move the balance by the ledger's trigger: as `complete` writes
    // them now, so did the previous release, which knew no partner balance (rolling upgrade).
    assert_eq!(
        books.partner_balance().await,
        3 * 2800,
        "each sale's payout"
    );

    let (status, _, receipt) = books
        .send(
            &books.partner("payments"),
            None,
            json!({ "amount": 50.00, "note": "wire 2291" }),
        )
        .await;
    assert_eq!(status, 201, "{receipt}");
    assert_eq!(
        (
            &receipt["entry"]["kind"],
            cents(&receipt["entry"]["amount"])
        ),
        (&json!("payment"), -5000)
    );
    assert_eq!(cents(&receipt["balance"]), 8400 - 5000);
    let (status, _, receipt) = books
        .send(
            &books.partner("adjustments"),
            None,
            json!({ "amount": -15.25, "note": "payout on a lead counted twice" }),
        )
        .await;
    assert_eq!(status, 201, "{receipt}");
    assert_eq!(cents(&receipt["balance"]), 8400 - 5000 - 1525);

    let entries = books.partner_ledger().await;
    assert_eq!(
        kinds(&entries),
        ["adjustment", "payment", "sale", "sale", "sale"],
        "newest first"
    );
    assert!(entries[2]["sale_id"].is_string(), "a sale names its sale");
    assert_eq!(
        entries[0]["return_id"],
        Value::Null,
        "entries carry return_id"
    );
    assert_eq!(entries[1]["note"], "wire 2291");
    assert_eq!(sum(&entries), books.partner_balance().await);
    assert_eq!(sum(&entries), 8400 - 5000 - 1525);

    // The buyer's entries carry return_id too.
    let buyer = books
        .get(&format!("/v1/admin/buyers/{}/ledger", books.buyer_id))
        .await;
    let first = buyer["items"][0].as_object().unwrap();
    assert!(first.contains_key("return_id"), "{buyer}");

    // Whoever writes a partner's entry moves its balance: here, SQL by hand.
    sqlx::query(
        "INSERT INTO ledger_entries (tenant_id, id, account, partner_id, kind, amount_cents, note)
         VALUES ($1, $2, 'partner', $3, 'adjustment', 75, 'by hand')",
    )
    .bind(books.exchange.tenant_id)
    .bind(Uuid::now_v7())
    .bind(books.exchange.partner_id)
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(books.partner_balance().await, 8400 - 5000 - 1525 + 75);
    assert_eq!(
        sum(&books.partner_ledger().await),
        books.partner_balance().await
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_payment_retried_with_its_key_pays_once_and_none_exceeds_the_balance(pool: PgPool) {
    let books = Books::open(&pool, system_clock()).await;
    books.sell().await;
    let payments = books.partner("payments");
    let body = json!({ "amount": 20.00, "note": "wire 7" });
    let (status, replayed, first) = books.send(&payments, Some("pay-7"), body.clone()).await;
    assert_eq!((status, replayed), (201, false), "{first}");
    let (status, replayed, again) = books.send(&payments, Some("pay-7"), body).await;
    assert_eq!((status, replayed), (201, true), "{again}");
    assert_eq!(again, first, "the first answer again");
    assert_eq!(books.partner_balance().await, 2800 - 2000, "paid once");

    // The same key with another body, or for an adjustment, is refused and moves nothing.
    let (status, _, problem) = books
        .send(&payments, Some("pay-7"), json!({ "amount": 1.00 }))
        .await;
    assert_eq!(
        (status, &problem["code"]),
        (409, &json!("idempotency_key_reused"))
    );
    let (status, _, problem) = books
        .send(
            &books.partner("adjustments"),
            Some("pay-7"),
            json!({ "amount": 20.00, "note": "wire 7" }),
        )
        .await;
    assert_eq!(
        (status, &problem["code"]),
        (409, &json!("idempotency_key_reused"))
    );
    // An adjustment retried with its key also moves once.
    let adjustment = json!({ "amount": 2.50, "note": "bonus" });
    for replay in [false, true] {
        let (status, replayed, _) = books
            .send(
                &books.partner("adjustments"),
                Some("adj-1"),
                adjustment.clone(),
            )
            .await;
        assert_eq!((status, replayed), (201, replay));
    }
    assert_eq!(books.partner_balance().await, 800 + 250);

    // More than the balance is refused with its code; the balance itself may be paid.
    let (status, _, problem) = books
        .send(&payments, None, json!({ "amount": 10.51 }))
        .await;
    assert_eq!(
        (status, &problem["code"]),
        (409, &json!("payment_exceeds_balance")),
        "{problem}"
    );
    assert_eq!(books.partner_balance().await, 1050, "nothing moved");
    let (status, _, receipt) = books
        .send(&payments, None, json!({ "amount": 10.50 }))
        .await;
    assert_eq!((status, cents(&receipt["balance"])), (201, 0), "{receipt}");
    assert_eq!(sum(&books.partner_ledger().await), 0);
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn racing_payments_cannot_overdraw_the_partner(pool: PgPool) {
    let books = Books::open(&pool, system_clock()).await;
    for _ in 0..3 {
        books.sell().await;
    }
    // 84.00 owed; ten payments of 20.00 at once: four fit.
    let payments = books.partner("payments");
    let answers =
        join_all((0..10).map(|_| books.send(&payments, None, json!({ "amount": 20.00 })))).await;
    let paid = answers.iter().filter(|(s, _, _)| *s == 201).count();
    let refused = answers
        .iter()
        .filter(|(s, _, p)| *s == 409 && p["code"] == "payment_exceeds_balance")
        .count();
    assert_eq!((paid, refused), (4, 6), "{answers:?}");
    assert_eq!(books.partner_balance().await, 8400 - 8000);
    assert_eq!(sum(&books.partner_ledger().await), 400);
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_bad_body_is_422_with_its_pointers_and_another_tenants_partner_404(pool: PgPool) {
    // Another tenant, known to the server from its start (a key created later is looked up in
    // the database at a bounded rate until the snapshot has it: on a loaded CI, too slowly for
    // this test's many requests).
    let other = gavel::store::tenants::create(&pool, "Other", "UTC")
        .await
        .unwrap();
    let books = Books::open(&pool, system_clock()).await;
    books.sell().await;
    let cases = [
        ("payments", json!({ "amount": -5.00 }), "/amount"),
        ("payments", json!({ "amount": 0 }), "/amount"),
        ("payments", json!({ "amount": 1.001 }), "/amount"),
        ("payments", json!({ "note": "no amount" }), "/amount"),
        ("payments", json!({ "amount": 1.00, "memo": "x" }), "/memo"),
        ("adjustments", json!({ "amount": 5.00 }), "/note"),
        (
            "adjustments",
            json!({ "amount": 5.00, "note": "" }),
            "/note",
        ),
        (
            "adjustments",
            json!({ "amount": 0, "note": "zero" }),
            "/amount",
        ),
        (
            "adjustments",
            json!({ "amount": "5", "note": "text" }),
            "/amount",
        ),
    ];
    for (route, body, pointer) in cases {
        let (status, _, problem) = books.send(&books.partner(route), None, body.clone()).await;
        let pointers: Vec<&str> = problem["errors"]
            .as_array()
            .map(|e| e.iter().filter_map(|e| e["pointer"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(status, 422, "{route} {body}: {problem}");
        assert!(pointers.contains(&pointer), "{route} {body}: {problem}");
    }
    assert_eq!(books.partner_ledger().await.len(), 1, "nothing written");
    assert_eq!(books.partner_balance().await, 2800);

    // Another tenant's admin key does not reach this partner, whatever the body.
    for (method, what, body) in [
        (Method::POST, "payments", Some(json!({ "amount": 1.00 }))),
        (
            Method::POST,
            "adjustments",
            Some(json!({ "amount": 1.00, "note": "x" })),
        ),
        (Method::POST, "payments", Some(json!({ "amount": -1 }))),
        (Method::GET, "ledger", None),
        (Method::GET, "statement", None),
    ] {
        let (status, problem) = books
            .app
            .admin(method, &books.partner(what), &other.admin_key, body)
            .await;
        assert_eq!(
            (status, &problem["code"]),
            (404, &json!("not_found")),
            "{what}"
        );
    }
    // Nor with a body that is no JSON object, or not JSON: 404 all the same, before the body
    // is read (the tenant's own account answers the body's refusal). Buyers' funds likewise.
    let buyer_funds = format!("/v1/admin/buyers/{}/funds", books.buyer_id);
    for path in [
        books.partner("payments"),
        books.partner("adjustments"),
        buyer_funds,
    ] {
        for (content_type, body) in [("application/json", "{\"amount\":"), ("text/plain", "1")] {
            for (key, expected) in [(&other.admin_key, 404), (&books.exchange.admin_key, 0)] {
                let response = books
                    .app
                    .client
                    .post(books.app.url(&path))
                    .bearer_auth(key)
                    .header("content-type", content_type)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                if expected == 404 {
                    assert_eq!(status, 404, "{path} {content_type} {body}");
                } else {
                    assert!(
                        [400, 415].contains(&status),
                        "{path} {content_type}: {status}"
                    );
                }
            }
        }
    }
    assert_eq!(books.partner_balance().await, 2800);
}
