//! The post's grouped reservations and completions (issue 21, the hot contract), on a real
//! database: a group decides and writes exactly what the same requests made one at a time
//! would, and a group of completions writes the rows its sales share once.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use gavel::auction::{CapPeriod, CompiledCaps, period_start};
use gavel::post::BuyerVerdict;
use gavel::store::group::GroupStatement;
use gavel::store::sales::{
    self, BuyerAnswer, CompleteSales, Completion, NewSale, PostSource, Refusal, Reservation, WonBid,
};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::fixtures::{ContractSpec, Exchange};

const TZ: chrono_tz::Tz = chrono_tz::America::New_York;

/// One tenant's copy of the scenario: its exchange, a lead to sell, and its buyers and
/// contracts by role.
struct Books {
    exchange: Exchange,
    lead_id: Uuid,
    buyers: HashMap<&'static str, Uuid>,
    contracts: HashMap<&'static str, Uuid>,
}

/// The contracts' caps, by contract role; buyer Y has a monthly cap of its own.
fn contract_caps(contract: &str) -> Value {
    match contract {
        "CX" => {
            json!([{ "period": "day", "max_leads": 10 }, { "period": "month", "max_spend_cents": 3000 }])
        }
        "CY" => json!([{ "period": "day", "max_leads": 10 }]),
        _ => json!([{ "period": "day", "max_leads": 5 }]),
    }
}

fn buyer_caps(buyer: &str) -> Value {
    match buyer {
        "Y" => json!([{ "period": "month", "max_leads": 5 }]),
        _ => json!([]),
    }
}

/// Buyer X (30.00, contract CX), buyer Y (10.00 and a cap of its own, contract CY), buyer Z
/// (nothing, contract CZ); CX's daily counter already holds 3 leads, no other counter exists.
async fn books(pool: &PgPool, now: DateTime<Utc>) -> Books {
    let exchange = Exchange::create(pool, "exclusive").await;
    let (mut buyers, mut contracts) = (HashMap::new(), HashMap::new());
    for (buyer, contract, balance) in [("X", "CX", 3000), ("Y", "CY", 1000), ("Z", "CZ", 0)] {
        let spec = ContractSpec {
            caps: Some(contract_caps(contract)),
            ..ContractSpec::fixed(Some(1000), None)
        };
        let (buyer_id, contract_id) = exchange.buyer_with(balance, spec).await;
        sqlx::query("UPDATE buyers SET caps = $3 WHERE tenant_id = $1 AND id = $2")
            .bind(exchange.tenant_id)
            .bind(buyer_id)
            .bind(buyer_caps(buyer))
            .execute(pool)
            .await
            .unwrap();
        buyers.insert(buyer, buyer_id);
        contracts.insert(contract, contract_id);
    }
    sqlx::query(
        "INSERT INTO cap_counters (tenant_id, contract_id, period, period_start, leads, spend_cents)
         VALUES ($1, $2, 'day', $3, 3, 300)",
    )
    .bind(exchange.tenant_id)
    .bind(contracts["CX"])
    .bind(period_start(CapPeriod::Day, now, TZ))
    .execute(pool)
    .await
    .unwrap();
    let lead_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO leads (tenant_id, id, ping_id, campaign_id, partner_id, offer_id, lead)
         VALUES ($1, $2, $3, $4, $5, $6, '{}')",
    )
    .bind(exchange.tenant_id)
    .bind(lead_id)
    .bind(Uuid::now_v7())
    .bind(exchange.campaign_id)
    .bind(exchange.partner_id)
    .bind(exchange.offer_id)
    .execute(pool)
    .await
    .unwrap();
    Books {
        exchange,
        lead_id,
        buyers,
        contracts,
    }
}

/// One reservation request of the scenario.
struct Request {
    buyer: &'static str,
    contract: &'static str,
    price: i64,
    consumer: u8,
    test: bool,
    dedup_days: u32,
    /// A cascade attempt (1) or the winner's own sale (0).
    attempt: i16,
}

const fn request(buyer: &'static str, contract: &'static str, price: i64, consumer: u8) -> Request {
    Request {
        buyer,
        contract,
        price,
        consumer,
        test: false,
        dedup_days: 30,
        attempt: 0,
    }
}

/// The batch, in arrival order, with what each one gets.
fn scenario() -> Vec<(Request, &'static str)> {
    vec![
        (request("X", "CX", 1000, 1), "reserved"),
        // The same consumer again, to the same buyer.
        (request("X", "CX", 1000, 1), "duplicate"),
        // Too expensive for Y's balance, then a cheaper one that fits (a counter row created).
        (request("Y", "CY", 1500, 2), "insufficient_funds"),
        (request("Y", "CY", 800, 2), "reserved"),
        // A test sale takes no cap, no money and no dedup.
        (
            Request {
                test: true,
                ..request("X", "CX", 5000, 1)
            },
            "reserved",
        ),
        // No dedup window of its own: sold, and its consumer is pending from now on.
        (
            Request {
                dedup_days: 0,
                ..request("X", "CX", 1500, 3)
            },
            "reserved",
        ),
        // CX's monthly spend: 1000 + 1500 + 600 > 3000.
        (request("X", "CX", 600, 4), "capped"),
        // A cascade attempt that fits: 2900 of 3000, X left with 1.00.
        (
            Request {
                attempt: 1,
                ..request("X", "CX", 400, 5)
            },
            "reserved",
        ),
        // Z has no money: its contract's counter, created for the group, must not stay.
        (request("Z", "CZ", 100, 6), "insufficient_funds"),
        // Consumer 3 is pending with X (request 6).
        (request("X", "CX", 100, 3), "duplicate"),
    ]
}

/// A request's sale, in one tenant's books: its source, bid and hashes.
struct Sale {
    source: PostSource,
    sale_id: Uuid,
    bid: WonBid,
    hashes: Vec<[u8; 32]>,
}

fn sale(books: &Books, request: &Request) -> Sale {
    let e = &books.exchange;
    Sale {
        source: PostSource {
            tenant_id: e.tenant_id,
            campaign_id: e.campaign_id,
            partner_id: e.partner_id,
            offer_id: e.offer_id,
        },
        sale_id: Uuid::now_v7(),
        bid: WonBid {
            bid_id: Uuid::now_v7(),
            contract_id: books.contracts[request.contract],
            buyer_id: books.buyers[request.buyer],
            sale_type: "exclusive".to_owned(),
            price_cents: request.price,
            payout_cents: request.price * 7 / 10,
            rtb_ref: None,
            attempt: request.attempt,
            replaces_bid_id: (request.attempt > 0).then(Uuid::now_v7),
        },
        hashes: vec![[request.consumer; 32], [request.consumer + 100; 32]],
    }
}

fn new_sale<'a>(
    books: &Books,
    sale: &'a Sale,
    request: &Request,
    now: DateTime<Utc>,
) -> NewSale<'a> {
    NewSale {
        source: &sale.source,
        sale_id: sale.sale_id,
        lead_id: books.lead_id,
        ping_id: Uuid::nil(),
        bid: &sale.bid,
        test: request.test,
        now,
        pending_for: chrono::Duration::minutes(2),
        dedup_days: request.dedup_days,
        consumer_hashes: &sale.hashes,
    }
}

/// The limits as gavel_reserve takes them, from a caps column, in period order.
fn limits(
    caps: &Value,
    test: bool,
    now: DateTime<Utc>,
) -> (Vec<String>, Vec<DateTime<Utc>>, Vec<i64>, Vec<i64>) {
    let mut rows: Vec<(CapPeriod, i64, i64)> = Vec::new();
    for cap in caps.as_array().unwrap().iter().filter(|_| !test) {
        let period: CapPeriod = cap["period"].as_str().unwrap().parse().unwrap();
        let leads = cap["max_leads"].as_i64().unwrap_or(i64::MAX);
        let spend = cap["max_spend_cents"].as_i64().unwrap_or(i64::MAX);
        rows.push((period, leads, spend));
    }
    rows.sort_by_key(|(period, _, _)| CapPeriod::ALL.iter().position(|p| p == period));
    (
        rows.iter().map(|r| r.0.as_str().to_owned()).collect(),
        rows.iter().map(|r| period_start(r.0, now, TZ)).collect(),
        rows.iter().map(|r| r.1).collect(),
        rows.iter().map(|r| r.2).collect(),
    )
}

/// The request through one call of gavel_reserve (migration 0013), then the cascade attempt's
/// mark as the post wrote it before grouping.
async fn reserve_alone(
    pool: &PgPool,
    books: &Books,
    sale: &Sale,
    request: &Request,
    now: DateTime<Utc>,
) -> String {
    let (periods, starts, max_leads, max_spend) =
        limits(&contract_caps(request.contract), request.test, now);
    let (b_periods, b_starts, b_max_leads, b_max_spend) =
        limits(&buyer_caps(request.buyer), request.test, now);
    let reserved: Vec<Value> =
        periods
            .iter()
            .zip(&starts)
            .map(|(p, s)| json!({ "period": p, "period_start": s }))
            .chain(b_periods.iter().zip(&b_starts).map(
                |(p, s)| json!({ "scope": "buyer", "buyer_period": p, "buyer_period_start": s }),
            ))
            .collect();
    let hashes: Vec<Vec<u8>> = sale.hashes.iter().map(|h| h.to_vec()).collect();
    let outcome: String = sqlx::query_scalar(
        "SELECT gavel_reserve($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                              $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28)",
    )
    .bind(sale.source.tenant_id)
    .bind(sale.sale_id)
    .bind(books.lead_id)
    .bind(Uuid::nil())
    .bind(sale.bid.bid_id)
    .bind(sale.bid.contract_id)
    .bind(sale.bid.buyer_id)
    .bind(sale.source.campaign_id)
    .bind(sale.source.partner_id)
    .bind(sale.source.offer_id)
    .bind(&sale.bid.sale_type)
    .bind(sale.bid.price_cents)
    .bind(sale.bid.payout_cents)
    .bind(request.test)
    .bind(120_000.0_f64)
    .bind(now)
    .bind(&hashes)
    .bind(request.dedup_days as i32)
    .bind(&periods)
    .bind(&starts)
    .bind(&max_leads)
    .bind(&max_spend)
    .bind(Value::Array(reserved))
    .bind(Uuid::now_v7())
    .bind(&b_periods)
    .bind(&b_starts)
    .bind(&b_max_leads)
    .bind(&b_max_spend)
    .fetch_one(pool)
    .await
    .unwrap();
    if outcome == "reserved" && sale.bid.attempt > 0 {
        sqlx::query("UPDATE lead_sales SET attempt = $3, replaces_bid_id = $4 WHERE tenant_id = $1 AND id = $2")
            .bind(sale.source.tenant_id)
            .bind(sale.sale_id)
            .bind(sale.bid.attempt)
            .bind(sale.bid.replaces_bid_id)
            .execute(pool)
            .await
            .unwrap();
    }
    outcome
}

/// A sale as `state` reads it: id, contract, status, test, price, reserved caps, hashes,
/// attempt, whether it replaces a bid.
type SaleRow = (
    Uuid,
    Uuid,
    String,
    bool,
    i64,
    Value,
    Vec<Vec<u8>>,
    i16,
    bool,
);

/// What a tenant's books hold, with ids replaced by roles (and a sale by its request's
/// place): counters, balances with their ledgers' sums, and the sales written.
async fn state(pool: &PgPool, books: &Books, sales: &[Sale]) -> Value {
    let role = |id: Uuid| -> String {
        books
            .contracts
            .iter()
            .chain(&books.buyers)
            .find(|(_, v)| **v == id)
            .map(|(k, _)| (*k).to_owned())
            .unwrap_or_else(|| id.to_string())
    };
    let tenant = books.exchange.tenant_id;
    let counters: Vec<(Uuid, String, DateTime<Utc>, i32, i64)> = sqlx::query_as(
        "SELECT contract_id, period, period_start, leads, spend_cents FROM cap_counters WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await
    .unwrap();
    let buyer_counters: Vec<(Uuid, String, DateTime<Utc>, i32, i64)> = sqlx::query_as(
        "SELECT buyer_id, period, period_start, leads, spend_cents FROM buyer_cap_counters WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await
    .unwrap();
    let mut balances = BTreeMap::new();
    for (name, id) in &books.buyers {
        balances.insert(*name, books.exchange.buyer_books(*id).await);
    }
    let rows: Vec<SaleRow> = sqlx::query_as(
        "SELECT s.id, s.contract_id, s.status, s.test, s.price_cents, s.reserved_caps, s.consumer_hashes,
                s.attempt, s.replaces_bid_id IS NOT NULL
         FROM lead_sales s WHERE s.tenant_id = $1",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await
    .unwrap();
    let mut written = BTreeMap::new();
    for (id, contract, status, test, price, reserved, hashes, attempt, replaces) in rows {
        let place = sales.iter().position(|s| s.sale_id == id).unwrap() + 1;
        written.insert(
            place,
            json!([
                role(contract),
                status,
                test,
                price,
                reserved,
                hashes,
                attempt,
                replaces
            ]),
        );
    }
    let entries: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT sale_id, amount_cents FROM ledger_entries WHERE tenant_id = $1 AND sale_id IS NOT NULL",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await
    .unwrap();
    let mut charged: Vec<(usize, i64)> = entries
        .into_iter()
        .map(|(sale, amount)| {
            (
                sales.iter().position(|s| s.sale_id == sale).unwrap() + 1,
                amount,
            )
        })
        .collect();
    charged.sort();
    let mut counters: Vec<Value> = counters
        .into_iter()
        .map(|(c, p, s, l, m)| json!([role(c), p, s, l, m]))
        .collect();
    counters.sort_by_key(|v| v.to_string());
    let mut buyer_counters: Vec<Value> = buyer_counters
        .into_iter()
        .map(|(b, p, s, l, m)| json!([role(b), p, s, l, m]))
        .collect();
    buyer_counters.sort_by_key(|v| v.to_string());
    json!({
        "counters": counters,
        "buyer_counters": buyer_counters,
        "books": balances,
        "sales": written,
        "charged": charged,
    })
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_group_of_reservations_decides_and_writes_as_the_same_reservations_one_at_a_time(
    pool: PgPool,
) {
    let now = Utc::now();
    let scenario = scenario();
    let (grouped, alone) = (books(&pool, now).await, books(&pool, now).await);

    // One batch, one call of gavel_reserve_group.
    let grouped_sales: Vec<Sale> = scenario.iter().map(|(r, _)| sale(&grouped, r)).collect();
    let caps: Vec<(CompiledCaps, CompiledCaps)> = scenario
        .iter()
        .map(|(r, _)| {
            (
                CompiledCaps::compile(&contract_caps(r.contract)).unwrap(),
                CompiledCaps::compile(&buyer_caps(r.buyer)).unwrap(),
            )
        })
        .collect();
    let reservations: Vec<Reservation> = scenario
        .iter()
        .zip(&grouped_sales)
        .zip(&caps)
        .map(|(((request, _), sale), (caps, buyer_caps))| {
            Reservation::of(
                &new_sale(&grouped, sale, request, now),
                caps,
                buyer_caps,
                TZ,
            )
        })
        .collect();
    let mut connection = pool.acquire().await.unwrap();
    let outcomes = sales::reserve(&mut connection, &reservations)
        .await
        .unwrap();
    drop(connection);

    // The same requests, one gavel_reserve each, in the same order, on the other tenant.
    let alone_sales: Vec<Sale> = scenario.iter().map(|(r, _)| sale(&alone, r)).collect();
    let mut one_at_a_time = Vec::new();
    for ((request, _), sale) in scenario.iter().zip(&alone_sales) {
        one_at_a_time.push(reserve_alone(&pool, &alone, sale, request, now).await);
    }

    let expected: Vec<&str> = scenario.iter().map(|(_, outcome)| *outcome).collect();
    assert_eq!(one_at_a_time, expected, "gavel_reserve, one at a time");
    let as_text: Vec<&str> = outcomes
        .iter()
        .map(|outcome| match outcome {
            Ok(()) => "reserved",
            Err(Refusal::Duplicate) => "duplicate",
            Err(Refusal::Capped) => "capped",
            Err(Refusal::InsufficientFunds) => "insufficient_funds",
        })
        .collect();
    assert_eq!(as_text, expected, "the group's outcomes, in request order");

    let grouped_state = state(&pool, &grouped, &grouped_sales).await;
    let alone_state = state(&pool, &alone, &alone_sales).await;
    assert_eq!(grouped_state, alone_state, "the same writes");
    // And what they are: CX's daily counter 3 + 3 leads, its monthly spend 29.00; CY's and
    // Y's own created for request 4; none for CZ; each balance its ledger's sum.
    let day = period_start(CapPeriod::Day, now, TZ);
    let month = period_start(CapPeriod::Month, now, TZ);
    assert_eq!(
        grouped_state["counters"],
        json!([
            ["CX", "day", day, 6, 3200],
            ["CX", "month", month, 3, 2900],
            ["CY", "day", day, 1, 800]
        ])
    );
    assert_eq!(
        grouped_state["buyer_counters"],
        json!([["Y", "month", month, 1, 800]])
    );
    assert_eq!(
        grouped_state["books"],
        json!({ "X": [100, 100], "Y": [200, 200], "Z": [0, 0] })
    );
    assert_eq!(
        grouped_state["charged"],
        json!([[1, -1000], [4, -800], [6, -1500], [8, -400]])
    );
    let written: Vec<&String> = grouped_state["sales"].as_object().unwrap().keys().collect();
    assert_eq!(
        written,
        ["1", "4", "5", "6", "8"],
        "refused requests leave no sale"
    );
    assert_eq!(
        grouped_state["sales"]["8"][6], 1,
        "the cascade attempt is marked"
    );

    // A post whose connection dropped while its group committed makes its reservation again:
    // the sales already written are answered reserved, and nothing is charged or counted twice.
    let again: Vec<Reservation> = reservations
        .into_iter()
        .zip(&scenario)
        .filter(|(_, (_, outcome))| *outcome == "reserved")
        .map(|(reservation, _)| reservation)
        .collect();
    let mut connection = pool.acquire().await.unwrap();
    let outcomes = sales::reserve(&mut connection, &again).await.unwrap();
    drop(connection);
    assert_eq!(outcomes.len(), 5);
    assert!(
        outcomes.iter().all(Result::is_ok),
        "a retried reservation is reserved: {:?}",
        outcomes.iter().map(Result::is_ok).collect::<Vec<_>>()
    );
    assert_eq!(
        state(&pool, &grouped, &grouped_sales).await,
        grouped_state,
        "a retried reservation writes nothing again"
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_group_of_completions_pays_each_sale_once_and_writes_shared_rows_once(pool: PgPool) {
    let now = Utc::now();
    let books = books(&pool, now).await;
    let partner_balance = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT balance_cents FROM partners WHERE tenant_id = $1 AND id = $2",
        )
        .bind(books.exchange.tenant_id)
        .bind(books.exchange.partner_id)
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    // Three sales to X of one consumer (no dedup window: each is sold), and a test sale.
    let requests = [
        Request {
            dedup_days: 0,
            ..request("X", "CX", 500, 9)
        },
        Request {
            dedup_days: 0,
            ..request("X", "CX", 700, 9)
        },
        Request {
            dedup_days: 0,
            ..request("X", "CX", 300, 9)
        },
        Request {
            test: true,
            ..request("X", "CX", 900, 9)
        },
    ];
    let sold: Vec<Sale> = requests.iter().map(|r| sale(&books, r)).collect();
    let caps = CompiledCaps::compile(&contract_caps("CX")).unwrap();
    let no_caps = CompiledCaps::default();
    let reservations: Vec<Reservation> = requests
        .iter()
        .zip(&sold)
        .map(|(r, s)| Reservation::of(&new_sale(&books, s, r, now), &caps, &no_caps, TZ))
        .collect();
    let mut connection = pool.acquire().await.unwrap();
    let outcomes = sales::reserve(&mut connection, &reservations)
        .await
        .unwrap();
    assert_eq!(outcomes, [Ok(()), Ok(()), Ok(()), Ok(())]);

    let answer = BuyerAnswer {
        http_status: Some(200),
        answer: Some("{\"accepted\":true}"),
        delivery_ms: Some(12),
    };
    let kinds = ["email", "phone"];
    let verdict = sales::Verdict {
        verdict: BuyerVerdict::Accepted,
        reason: None,
        answer: &answer,
        consumer_kinds: &kinds,
    };
    // The sales completed a second apart, the last listed first.
    let at = |s: i64| now + chrono::Duration::seconds(s);
    let completions = |with_verdict: bool| -> Vec<Completion> {
        sold.iter()
            .zip([3, 1, 2, 4])
            .map(|(s, second)| {
                let verdict = with_verdict.then_some(&verdict);
                Completion::of(books.exchange.tenant_id, s.sale_id, verdict, at(second))
            })
            .collect()
    };
    let done = CompleteSales::run(&mut connection, &completions(true))
        .await
        .unwrap();
    assert_eq!(done, [true, true, true, true]);

    // The partner is paid each real sale's payout (70 %), once.
    assert_eq!(partner_balance().await, 350 + 490 + 210);
    let paid: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ledger_entries WHERE tenant_id = $1 AND account = 'partner' AND kind = 'sale'",
    )
    .bind(books.exchange.tenant_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(paid, 3, "no entry for the test sale");
    // One dedup key per hash: the latest sale's time, the last sale's id.
    let keys: Vec<(Vec<u8>, String, DateTime<Utc>, Uuid)> = sqlx::query_as(
        "SELECT key_hash, kind, sold_at, sale_id FROM dedup_keys WHERE tenant_id = $1 ORDER BY key_hash",
    )
    .bind(books.exchange.tenant_id)
    .fetch_all(&pool)
    .await
    .unwrap();
    let micros = |t: DateTime<Utc>| t.timestamp_micros();
    assert_eq!(
        keys.iter()
            .map(|(h, k, t, s)| (h[0], k.as_str(), micros(*t), *s))
            .collect::<Vec<_>>(),
        [
            (9, "email", micros(at(3)), sold[2].sale_id),
            (109, "phone", micros(at(3)), sold[2].sale_id),
        ]
    );
    let last_sold: DateTime<Utc> = sqlx::query_scalar(
        "SELECT last_sold_at FROM contract_stats WHERE tenant_id = $1 AND contract_id = $2",
    )
    .bind(books.exchange.tenant_id)
    .bind(books.contracts["CX"])
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(micros(last_sold), micros(at(3)), "the latest real sale");
    let statuses: Vec<(String, Option<i32>, Option<Vec<String>>)> = sqlx::query_as(
        "SELECT status, buyer_http_status, consumer_kinds FROM lead_sales WHERE tenant_id = $1 ORDER BY id",
    )
    .bind(books.exchange.tenant_id)
    .fetch_all(&pool)
    .await
    .unwrap();
    for status in &statuses {
        assert_eq!(
            status,
            &(
                "sold".to_owned(),
                Some(200),
                Some(vec!["email".to_owned(), "phone".to_owned()])
            )
        );
    }

    // Completing them again (a retry, the sweep) changes nothing.
    let again = CompleteSales::run(&mut connection, &completions(false))
        .await
        .unwrap();
    assert_eq!(again, [false, false, false, false]);
    assert_eq!(partner_balance().await, 1050);
    assert_eq!(
        books.exchange.buyer_books(books.buyers["X"]).await,
        (3000 - 1500, 3000 - 1500)
    );
}
