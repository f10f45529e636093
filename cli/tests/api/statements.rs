//! Statements (docs/returns.md): a period's entries add up to the difference of its balances,
//! adjacent periods chain, dates are days in the tenant's timezone, and the CSV carries exactly
//! the JSON's figures with no formula a spreadsheet would run.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use gavel::clock::FixedClock;
use gavel::money::Money;
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::partner_ledger::{Books, cents};

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// The statement's figures add up: running balances from the opening to the closing, totals per
/// kind summing the entries, closing = opening + Σ totals.
fn assert_adds_up(statement: &Value) {
    let opening = cents(&statement["opening_balance"]);
    let mut balance = opening;
    let mut totals = std::collections::BTreeMap::<String, i64>::new();
    for entry in statement["entries"].as_array().unwrap() {
        balance += cents(&entry["amount"]);
        assert_eq!(cents(&entry["balance"]), balance, "{entry}");
        *totals
            .entry(entry["kind"].as_str().unwrap().to_owned())
            .or_default() += cents(&entry["amount"]);
    }
    assert_eq!(
        cents(&statement["closing_balance"]),
        balance,
        "{statement:#}"
    );
    let shown: i64 = statement["totals"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(kind, total)| {
            assert_eq!(
                totals.get(kind).copied().unwrap_or(0),
                cents(total),
                "{kind}"
            );
            cents(total)
        })
        .sum();
    assert_eq!(opening + shown, balance);
}

fn kinds_and_amounts(statement: &Value) -> Vec<(String, i64)> {
    statement["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap().to_owned(), cents(&e["amount"])))
        .collect()
}

/// A partner's history in America/New_York: a sale in October, a sale one second before
/// November's last local midnight (already December in UTC), a payment at December's first
/// local instant, and two adjustments (one whose note is a formula).
async fn history(books: &Books, clock: &FixedClock) {
    clock.set(at("2026-10-31T12:00:00-04:00"));
    books.sell().await;
    clock.set(at("2026-11-30T23:59:59-05:00"));
    books.sell().await;
    clock.set(at("2026-12-01T00:00:00-05:00"));
    let (status, _, _) = books
        .send(
            &books.partner("payments"),
            None,
            json!({ "amount": 20.00, "note": "wire 1" }),
        )
        .await;
    assert_eq!(status, 201);
    clock.set(at("2026-12-01T09:30:00-05:00"));
    let (status, _, _) = books
        .send(
            &books.partner("adjustments"),
            None,
            json!({ "amount": 1.50, "note": "=HYPERLINK(\"http://x\",\"y\")" }),
        )
        .await;
    assert_eq!(status, 201);
    clock.set(at("2026-12-02T10:00:00-05:00"));
    let (status, _, _) = books
        .send(
            &books.partner("adjustments"),
            None,
            json!({ "amount": -3.00, "note": "fee" }),
        )
        .await;
    assert_eq!(status, 201);
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn adjacent_statements_chain_and_each_adds_up_in_the_tenant_timezone(pool: PgPool) {
    let clock = Arc::new(FixedClock::new(at("2026-10-31T12:00:00-04:00")));
    let books = Books::open(&pool, clock.clone()).await;
    history(&books, &clock).await;
    let statement = books.partner("statement");

    let october = books
        .get(&format!("{statement}?from=2026-10-01&to=2026-10-31"))
        .await;
    let november = books
        .get(&format!("{statement}?from=2026-11-01&to=2026-11-30"))
        .await;
    let december = books
        .get(&format!("{statement}?from=2026-12-01&to=2026-12-31"))
        .await;
    for month in [&october, &november, &december] {
        assert_adds_up(month);
    }
    assert_eq!(
        (&november["from"], &november["to"], &november["timezone"]),
        (
            &json!("2026-11-01T00:00:00-04:00"),
            &json!("2026-12-01T00:00:00-05:00"),
            &json!("America/New_York")
        )
    );
    assert_eq!(cents(&october["opening_balance"]), 0);
    assert_eq!(kinds_and_amounts(&october), [("sale".to_owned(), 2800)]);
    // The sale at 23:59:59 local on November 30 is November's; the payment at 00:00 local on
    // December 1 is December's.
    assert_eq!(kinds_and_amounts(&november), [("sale".to_owned(), 2800)]);
    assert_eq!(november["entries"][0]["at"], "2026-11-30T23:59:59-05:00");
    assert_eq!(
        kinds_and_amounts(&december),
        [
            ("payment".to_owned(), -2000),
            ("adjustment".to_owned(), 150),
            ("adjustment".to_owned(), -300)
        ]
    );
    assert_eq!(december["entries"][0]["at"], "2026-12-01T00:00:00-05:00");
    // Closing of one month is the opening of the next, and the last closing is the balance.
    assert_eq!(october["closing_balance"], november["opening_balance"]);
    assert_eq!(november["closing_balance"], december["opening_balance"]);
    assert_eq!(
        cents(&december["closing_balance"]),
        books.partner_balance().await
    );
    assert_eq!(cents(&december["closing_balance"]), 5600 - 2000 + 150 - 300);
    // Every kind of a partner's account, zero included.
    assert_eq!(
        november["totals"],
        json!({ "adjustment": 0.00, "payment": 0.00, "return": 0.00, "sale": 28.00 })
    );
    assert_eq!(
        (&december["account"], &december["name"]),
        (&json!("partner"), &json!("Quote Funnel"))
    );

    // Instants: `from` inclusive, `to` exclusive.
    let instants = books
        .get(&format!(
            "{statement}?from=2026-12-01T05:00:00Z&to=2026-12-02T15:00:00Z"
        ))
        .await;
    assert_eq!(instants["entries"].as_array().unwrap().len(), 2);
    assert_eq!(instants["opening_balance"], december["opening_balance"]);
    // Default: from the start of the current month (local) to now.
    let current = books.get(&statement).await;
    assert_eq!(current["from"], "2026-12-01T00:00:00-05:00");
    assert_eq!(current["to"], "2026-12-02T10:00:00-05:00");
    assert_eq!(
        current["entries"].as_array().unwrap().len(),
        2,
        "the last is at now: excluded"
    );

    // The buyer's statement over the three months: its funds and sales, with every kind of its
    // account. The fixture funds the buyer at the real time: its entry is moved into October,
    // so the test does not depend on today's date.
    sqlx::query(
        "UPDATE ledger_entries SET created_at = '2026-10-15T12:00:00Z'
         WHERE buyer_id = $1 AND kind = 'funds'",
    )
    .bind(books.buyer_id)
    .execute(&pool)
    .await
    .unwrap();
    let buyer = books
        .get(&format!(
            "/v1/admin/buyers/{}/statement?from=2026-10-01&to=2026-12-31",
            books.buyer_id
        ))
        .await;
    assert_adds_up(&buyer);
    assert_eq!(
        buyer["totals"],
        json!({ "funds": 10000.00, "release": 0.00, "return": 0.00, "sale": -80.00 })
    );
    assert_eq!(cents(&buyer["opening_balance"]), 0);

    // `to` alone: from the start of `to`'s month (local), `to` inclusive.
    let to_alone = books.get(&format!("{statement}?to=2026-11-30")).await;
    assert_eq!(
        (&to_alone["from"], &to_alone["to"]),
        (&november["from"], &november["to"])
    );
    assert_eq!(to_alone["entries"], november["entries"]);
    // An instant: the month of its last instant (it is exclusive).
    let to_instant = books
        .get(&format!("{statement}?to=2026-12-01T05:00:00Z"))
        .await;
    assert_eq!(to_instant["from"], november["from"]);
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_range_of_dates_is_counted_in_the_tenant_calendar_days(pool: PgPool) {
    let clock = Arc::new(FixedClock::new(at("2026-12-02T10:00:00-05:00")));
    let books = Books::open(&pool, clock.clone()).await;
    let statement = books.partner("statement");
    // August 3 to November 3, inclusive: 93 days (report_max_days), and 1 h more in UTC (New
    // York left DST on November 1).
    let longest = books
        .get(&format!("{statement}?from=2026-08-03&to=2026-11-03"))
        .await;
    assert_eq!(
        (&longest["from"], &longest["to"]),
        (
            &json!("2026-08-03T00:00:00-04:00"),
            &json!("2026-11-04T00:00:00-05:00")
        )
    );
    // One more day is too many; as instants, the hour counts.
    for query in [
        "from=2026-08-02&to=2026-11-03",
        "from=2026-08-03T04:00:00Z&to=2026-11-04T05:00:00Z",
    ] {
        let (status, problem) = books
            .app
            .admin(
                Method::GET,
                &format!("{statement}?{query}"),
                &books.exchange.admin_key,
                None,
            )
            .await;
        assert_eq!(
            (status, &problem["errors"][0]["pointer"]),
            (422, &json!("/query/from")),
            "{query}: {problem}"
        );
    }
    // The last years a bound may name are answered.
    let last = books
        .get(&format!("{statement}?from=9999-12-01&to=9999-12-31"))
        .await;
    assert_eq!(last["entries"], json!([]));
    let first = books
        .get(&format!("{statement}?from=0001-01-01&to=0001-01-31"))
        .await;
    assert_eq!(first["entries"], json!([]));
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn the_csv_statement_carries_the_json_figures_and_no_formula(pool: PgPool) {
    let clock = Arc::new(FixedClock::new(at("2026-10-31T12:00:00-04:00")));
    let books = Books::open(&pool, clock.clone()).await;
    history(&books, &clock).await;
    let path = format!(
        "{}?from=2026-11-01&to=2026-12-31",
        books.partner("statement")
    );
    let json = books.get(&path).await;
    let response = books
        .app
        .client
        .get(books.app.url(&path))
        .bearer_auth(&books.exchange.admin_key)
        .header("Accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let text = response.text().await.unwrap();
    // A UTF-8 byte order mark first (Excel reads UTF-8 with it), which the CSV reader skips.
    assert!(text.starts_with('\u{feff}'), "{text}");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        reader.headers().unwrap(),
        vec![
            "at",
            "kind",
            "amount",
            "balance",
            "sale_id",
            "return_id",
            "note"
        ]
    );
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    let money = |v: &Value| Money::from_cents(cents(v)).to_string();
    let text_of = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut expected = vec![vec![
        text_of(&json["from"]),
        "opening_balance".to_owned(),
        String::new(),
        money(&json["opening_balance"]),
        String::new(),
        String::new(),
        String::new(),
    ]];
    for e in json["entries"].as_array().unwrap() {
        let note = text_of(&e["note"]);
        let note = if note.starts_with('=') {
            format!("'{note}")
        } else {
            note
        };
        expected.push(vec![
            text_of(&e["at"]),
            text_of(&e["kind"]),
            money(&e["amount"]),
            money(&e["balance"]),
            text_of(&e["sale_id"]),
            text_of(&e["return_id"]),
            note,
        ]);
    }
    expected.push(vec![
        text_of(&json["to"]),
        "closing_balance".to_owned(),
        String::new(),
        money(&json["closing_balance"]),
        String::new(),
        String::new(),
        String::new(),
    ]);
    for (kind, total) in json["totals"].as_object().unwrap() {
        expected.push(vec![
            String::new(),
            format!("total_{kind}"),
            money(total),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    assert_eq!(rows, expected);
    // Amounts are plain decimals with two places; the formula is defused.
    assert!(rows.iter().any(|r| r[2] == "-20.00"), "{text}");
    assert!(
        rows.iter()
            .any(|r| r[6] == "'=HYPERLINK(\"http://x\",\"y\")"),
        "{text}"
    );
    assert!(rows.iter().all(|r| !r[6].starts_with('=')));

    // CSV only when preferred to JSON: `q=0` refuses it; a higher weight of JSON wins.
    for accept in ["text/csv;q=0", "text/csv;q=0.5, application/json"] {
        let response = books
            .app
            .client
            .get(books.app.url(&path))
            .bearer_auth(&books.exchange.admin_key)
            .header("Accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{accept}"
        );
        assert_eq!(response.json::<Value>().await.unwrap(), json, "{accept}");
    }
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_bad_range_is_422_on_its_parameter(pool: PgPool) {
    let clock = Arc::new(FixedClock::new(at("2026-12-02T10:00:00-05:00")));
    let books = Books::open(&pool, clock.clone()).await;
    let statement = books.partner("statement");
    for (query, pointer) in [
        ("from=yesterday", "/query/from"),
        ("from=2026-11-31", "/query/from"),
        ("to=2026-11-03T25:00:00Z", "/query/to"),
        ("from=2026-11-10&to=2026-11-09", "/query/to"),
        ("from=2026-01-01&to=2026-12-01", "/query/from"),
        ("from=0000-12-01&to=0000-12-31", "/query/from"),
        ("from=9999-12-31T23:00:00-05:00", "/query/from"),
        ("to=10000-01-01", "/query/to"),
    ] {
        let (status, problem) = books
            .app
            .admin(
                Method::GET,
                &format!("{statement}?{query}"),
                &books.exchange.admin_key,
                None,
            )
            .await;
        assert_eq!(
            (status, &problem["code"], &problem["errors"][0]["pointer"]),
            (422, &json!("invalid_field"), &json!(pointer)),
            "{query}: {problem}"
        );
    }

    // More than 100,000 entries in the range: ask for a shorter one. Written in bulk with the
    // balance trigger off and the balance moved once (the trigger's 100,001 updates of one
    // row in one transaction take minutes; Gavel writes one entry per statement).
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_partner_balance")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO ledger_entries (tenant_id, id, account, partner_id, kind, amount_cents, note, created_at)
         SELECT $1, gen_random_uuid(), 'partner', $2, 'adjustment', 1, 'bulk',
                '2026-11-05T12:00:00Z'::timestamptz + i * interval '1 second'
         FROM generate_series(1, 100001) AS i",
    )
    .bind(books.exchange.tenant_id)
    .bind(books.exchange.partner_id)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("UPDATE partners SET balance_cents = balance_cents + 100001 WHERE id = $1")
        .bind(books.exchange.partner_id)
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_partner_balance")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let (status, problem) = books
        .app
        .admin(
            Method::GET,
            &format!("{statement}?from=2026-11-01&to=2026-11-30"),
            &books.exchange.admin_key,
            None,
        )
        .await;
    assert_eq!(
        (status, &problem["errors"][0]["pointer"]),
        (422, &json!("/query/from")),
        "{problem}"
    );
    // A shorter range is answered, and adds up.
    let day = books
        .get(&format!("{statement}?from=2026-11-06&to=2026-11-06"))
        .await;
    assert_adds_up(&day);
    // The local day (from 05:00Z) holds the entries up to the last, at 15:46:41Z.
    let expected: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ledger_entries WHERE partner_id = $1
         AND created_at >= '2026-11-06T05:00:00Z' AND created_at < '2026-11-07T05:00:00Z'",
    )
    .bind(books.exchange.partner_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(day["entries"].as_array().unwrap().len() as i64, expected);
    assert_eq!(expected, 10 * 3600 + 46 * 60 + 42);
}
