//! The console's Today and Reports pages (docs/console.md) in a real headless Chromium, and the
//! admin API's overview they show (`GET /v1/admin/reports/overview`): a real sale (a ping and a
//! post through the partner API, a buyer on 127.0.0.1), exact money, another tenant unseen.

use chrono::{Duration, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use gavel::money::{ExtraDecimals, Money};
use reqwest::header::{ACCEPT, CONTENT_DISPOSITION, CONTENT_TYPE, COOKIE};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::browser::browser;
use crate::console::sign_in_http;
use crate::fixtures::{ContractSpec, Exchange, consent, full_lead, ping_lead};
use crate::harness::{TestApp, spawn_app};

fn cents(value: &Value) -> i64 {
    Money::from_json(value, ExtraDecimals::Reject)
        .unwrap_or_else(|e| panic!("{value}: {e}"))
        .cents()
}

/// A buyer with an exclusive contract at `price_cents`, delivering to a buyer on 127.0.0.1
/// that accepts every lead; and a paused contract (declined `contract_paused`).
async fn buyers(exchange: &Exchange, server: &MockServer, price_cents: i64) -> Uuid {
    Mock::given(method("POST"))
        .and(path("/leads"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "status": "accepted" })))
        .mount(server)
        .await;
    let delivery = json!({ "url": format!("{}/leads", server.uri()), "timeout_ms": 2000,
                           "accept": { "path": "/status", "equals": "accepted" } });
    let (_, contract) = exchange
        .buyer_with(
            100_000,
            ContractSpec {
                delivery: Some(delivery),
                ..ContractSpec::fixed(Some(price_cents), None)
            },
        )
        .await;
    exchange
        .buyer_with(
            100_000,
            ContractSpec {
                status: Some("paused"),
                ..ContractSpec::fixed(Some(price_cents + 100), None)
            },
        )
        .await;
    contract
}

/// A ping with bids, then its post, sold: the ping's id.
async fn sell(app: &TestApp, exchange: &Exchange) -> String {
    let (status, ping) = app
        .ping(&exchange.posting_key, json!({ "lead": ping_lead() }))
        .await;
    assert_eq!(
        (status, ping["status"].as_str()),
        (200, Some("bids")),
        "{ping}"
    );
    let (status, answer) = app
        .post(
            &exchange.posting_key,
            json!({ "ping_id": ping["ping_id"], "lead": full_lead(), "consent": consent() }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "sold", "{answer}");
    ping["ping_id"].as_str().unwrap().to_owned()
}

/// The price and payout of the tenant's sales, in cents.
async fn sold_cents(exchange: &Exchange) -> (i64, i64) {
    sqlx::query_as(
        "SELECT sum(price_cents)::bigint, sum(payout_cents)::bigint FROM lead_sales
         WHERE tenant_id = $1 AND status = 'sold'",
    )
    .bind(exchange.tenant_id)
    .fetch_one(&exchange.pool)
    .await
    .unwrap()
}

async fn admin_get(app: &TestApp, exchange: &Exchange, path: &str) -> (u16, Value) {
    let response = app
        .client
        .get(app.url(path))
        .bearer_auth(&exchange.admin_key)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A row of posting_log written directly: a ping of the exchange's campaign at `at`.
async fn logged_ping(exchange: &Exchange, at: chrono::DateTime<Utc>, result: &str, test: bool) {
    sqlx::query(
        "INSERT INTO posting_log (tenant_id, id, kind, campaign_id, partner_id, offer_id, created_at,
                                  latency_us, http_status, result, test)
         VALUES ($1, $2, 'ping', $3, $4, $5, $6, 4000, 200, $7, $8)",
    )
    .bind(exchange.tenant_id)
    .bind(Uuid::now_v7())
    .bind(exchange.campaign_id)
    .bind(exchange.partner_id)
    .bind(exchange.offer_id)
    .bind(at)
    .bind(result)
    .bind(test)
    .execute(&exchange.pool)
    .await
    .unwrap();
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn the_overview_counts_todays_and_the_weeks_traffic_and_money_exactly(pool: PgPool) {
    let server = MockServer::start().await;
    let exchange = Exchange::create(&pool, "exclusive").await;
    buyers(&exchange, &server, 4321).await;
    let other = Exchange::create(&pool, "exclusive").await;
    buyers(&other, &server, 9999).await;
    let early = Exchange::create(&pool, "exclusive").await;
    // The app starts once the tenants exist (a posting key written after may be unknown for
    // the moment the configuration takes to reload).
    let app = spawn_app(pool.clone()).await;

    // This tenant: two sales, a ping not posted, a test ping (left out).
    sell(&app, &exchange).await;
    sell(&app, &exchange).await;
    let (status, ping) = app
        .ping(&exchange.posting_key, json!({ "lead": ping_lead() }))
        .await;
    assert_eq!((status, ping["status"].as_str()), (200, Some("bids")));
    let (status, _) = app
        .ping(
            &exchange.posting_key,
            json!({ "lead": ping_lead(), "test": true }),
        )
        .await;
    assert_eq!(status, 200);
    // Another tenant's sale is not this tenant's.
    sell(&app, &other).await;
    // Three days ago (in New York), a ping without bids; a test ping then too.
    let tz: Tz = "America/New_York".parse().unwrap();
    let now = Utc::now();
    let three_days_ago = now - Duration::days(3);
    logged_ping(&exchange, three_days_ago, "no_bids", false).await;
    logged_ping(&exchange, three_days_ago, "bids", true).await;

    let (status, o) = admin_get(&app, &exchange, "/v1/admin/reports/overview").await;
    assert_eq!(status, 200, "{o}");
    assert_eq!(o["timezone"], "America/New_York");
    let (revenue, payout) = sold_cents(&exchange).await;
    assert_eq!(revenue, 2 * 4321);
    let today = &o["today"];
    assert_eq!(
        (
            today["pings"].as_i64(),
            today["pings_with_bids"].as_i64(),
            today["posts"].as_i64(),
            today["sales"].as_i64()
        ),
        (Some(3), Some(3), Some(2), Some(2)),
        "{today}"
    );
    assert_eq!(today["bid_rate"], 1.0);
    assert_eq!(cents(&today["revenue"]), revenue);
    assert_eq!(cents(&today["payout"]), payout);
    assert_eq!(cents(&today["margin"]), revenue - payout);
    let week = &o["last_7_days"];
    assert_eq!(week["pings"], 4, "{week}");
    assert_eq!(week["pings_with_bids"], 3);
    assert_eq!(week["bid_rate"], 0.75);
    assert_eq!(cents(&week["revenue"]), 8642);

    // Days: 7, oldest first, each starting at a New York midnight; three days ago has its ping.
    let days = o["days"].as_array().unwrap();
    assert_eq!(days.len(), 7);
    for day in days {
        let start: chrono::DateTime<Utc> = day["start"].as_str().unwrap().parse().unwrap();
        let local = start.with_timezone(&tz);
        assert_eq!((local.hour(), local.minute()), (0, 0), "{day}");
    }
    assert_eq!(days[6]["pings"], 3);
    assert_eq!(days[6]["sales"], 2);
    assert_eq!(days[3]["pings"], 1, "{days:?}");
    assert_eq!(
        days.iter()
            .map(|d| d["pings"].as_i64().unwrap())
            .sum::<i64>(),
        4
    );

    // Hours: today's in New York, midnight to midnight; the sales in the current hour.
    let hours = o["hours"].as_array().unwrap();
    assert!((23..=25).contains(&hours.len()), "{}", hours.len());
    let this_hour = now.with_timezone(&tz).hour();
    let bucket = hours
        .iter()
        .find(|h| {
            let start: chrono::DateTime<Utc> = h["start"].as_str().unwrap().parse().unwrap();
            start <= now && now < start + Duration::hours(1)
        })
        .unwrap();
    assert!(
        bucket["local"]
            .as_str()
            .unwrap()
            .contains(&format!("T{this_hour:02}:00:00")),
        "{bucket}"
    );
    assert_eq!(
        (bucket["pings"].as_i64(), bucket["sales"].as_i64()),
        (Some(3), Some(2))
    );
    assert_eq!(cents(&bucket["revenue"]), revenue);
    assert_eq!(cents(&bucket["payout"]), payout);
    assert_eq!(
        hours
            .iter()
            .map(|h| h["pings"].as_i64().unwrap())
            .sum::<i64>(),
        3
    );
    // A ping logged at 00:30 New York time today falls in the first hour.
    let midnight = tz
        .from_local_datetime(
            &now.with_timezone(&tz)
                .date_naive()
                .and_hms_opt(0, 30, 0)
                .unwrap(),
        )
        .earliest()
        .unwrap()
        .with_timezone(&Utc);
    // (A tenant of its own, made before the app started: an hour already closed when first
    // shown is kept as it was.)
    if midnight < now - Duration::seconds(1) {
        logged_ping(&early, midnight, "no_bids", false).await;
        let (_, o) = admin_get(&app, &early, "/v1/admin/reports/overview").await;
        assert_eq!(o["hours"][0]["pings"], 1, "{}", o["hours"][0]);
        assert_eq!(o["today"]["pings"], 1);
    }

    // The latency of the last hour's pings (not the test ping).
    let latency = &o["latency_last_hour"];
    assert!(latency["pings"].as_i64().unwrap() >= 3, "{latency}");
    assert!(latency["p50_ms"].as_f64().unwrap() > 0.0);
    assert!(latency["p99_ms"].as_f64().unwrap() >= latency["p50_ms"].as_f64().unwrap());

    // Declines today: the paused contract on each of the 3 pings (not the test ping's).
    assert_eq!(
        o["top_declines"],
        json!([{ "reason": "contract_paused", "count": 3 }]),
    );

    // The other tenant sees its own sale only.
    let (_, theirs) = admin_get(&app, &other, "/v1/admin/reports/overview").await;
    assert_eq!(theirs["today"]["sales"], 1);
    assert_eq!(cents(&theirs["today"]["revenue"]), 9999);
    assert_eq!(theirs["last_7_days"]["pings"], 1);
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn today_and_reports_show_the_sale_and_the_csv_has_the_same_figures(pool: PgPool) {
    let server = MockServer::start().await;
    let exchange = Exchange::create(&pool, "exclusive").await;
    buyers(&exchange, &server, 4321).await;
    let other = Exchange::create(&pool, "exclusive").await;
    buyers(&other, &server, 9876).await;
    let app = spawn_app(pool.clone()).await;
    sell(&app, &exchange).await;
    sell(&app, &other).await;
    let (revenue, payout) = sold_cents(&exchange).await;
    assert_eq!(revenue, 4321);
    let usd =
        |c: i64| gavel::console::view::money(gavel::console::Amount(Money::from_cents(c)), "USD");
    let base = app.url("");

    // The summary's JSON and CSV, through the console, equal the admin API's.
    let (status, summary) = admin_get(
        &app,
        &exchange,
        "/v1/admin/reports/summary?group_by=partner",
    )
    .await;
    assert_eq!(status, 200, "{summary}");
    let rows = summary["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{summary}");
    let row = &rows[0];
    assert_eq!(row["group_name"], "Quote Funnel");
    let (cookie, _) = sign_in_http(&base, &exchange.admin_key, &[]).await;
    let csv = reqwest::Client::new()
        .get(format!("{base}/console/reports.csv?group_by=partner"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert_eq!(
        csv.headers()[CONTENT_TYPE].to_str().unwrap(),
        "text/csv; charset=utf-8"
    );
    let disposition = csv.headers()[CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        disposition.starts_with("attachment; filename=\"summary-partner-"),
        "{disposition}"
    );
    let body = csv.text().await.unwrap();
    let body = body
        .strip_prefix('\u{feff}')
        .expect("a UTF-8 byte order mark");
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 1, "{body}");
    let field = |name: &str| {
        let i = header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("{name}: {header:?}"));
        records[0][i].to_owned()
    };
    assert_eq!(field("group_id"), row["group_id"].as_str().unwrap());
    assert_eq!(field("group_name"), "Quote Funnel");
    for name in ["pings", "pings_with_bids", "posts", "sales", "returns"] {
        assert_eq!(field(name), row[name].to_string(), "{name}");
    }
    for name in [
        "revenue",
        "payout",
        "margin",
        "net_revenue",
        "net_payout",
        "net_margin",
    ] {
        assert_eq!(
            Money::parse(&field(name), ExtraDecimals::Reject)
                .unwrap()
                .cents(),
            cents(&row[name]),
            "{name}"
        );
    }
    assert_eq!(field("revenue"), "43.21");
    assert_eq!(field("declined_contract_paused"), "1");
    // The admin API answers CSV itself to `Accept: text/csv`.
    let direct = app
        .client
        .get(app.url("/v1/admin/reports/summary?group_by=partner"))
        .bearer_auth(&exchange.admin_key)
        .header(ACCEPT, "text/csv")
        .send()
        .await
        .unwrap();
    let direct = direct.text().await.unwrap();
    let expected = format!(
        "Quote Funnel,1,1,1,1,1,43.21,{},{}",
        Money::from_cents(payout),
        Money::from_cents(revenue - payout)
    );
    assert!(direct.contains(&expected), "{direct}");

    // A range the API refuses is said on the page, not a crash.
    let refused = reqwest::Client::new()
        .get(format!(
            "{base}/console/reports?from=2026-02-10&to=2026-01-01"
        ))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("to must be after from")
    );

    let Some(browser) = browser("today_and_reports_show_the_sale").await else {
        return;
    };
    browser.sign_in(&base, &exchange.admin_key).await;
    assert_eq!(browser.path().await, "/console/today");
    assert_eq!(browser.text_of("[data-figure=pings]").await, "1");
    assert_eq!(browser.text_of("[data-figure=sales]").await, "1");
    assert_eq!(browser.text_of("[data-figure=revenue]").await, "$43.21");
    assert_eq!(browser.text_of("[data-figure=payout]").await, usd(payout));
    assert_eq!(
        browser.text_of("[data-figure=margin]").await,
        usd(revenue - payout)
    );
    assert_eq!(browser.text_of("[data-week=sales]").await, "1");
    assert!(browser.text_of("#hours-title").await.contains("per hour"));
    let bars = browser
        .client
        .find_all(fantoccini::Locator::Css(
            "section[aria-labelledby=hours-title] rect.series-a",
        ))
        .await
        .unwrap();
    assert!((23..=25).contains(&bars.len()), "{} bars", bars.len());
    assert!(
        browser
            .text_of("#top-declines")
            .await
            .contains("contract_paused"),
        "{}",
        browser.text_of("#top-declines").await
    );
    let page = browser.text().await;
    assert!(!page.contains("98.76"), "another tenant's sale: {page}");
    browser.screenshot("today").await;

    browser
        .goto(&app.url("/console/reports?group_by=partner"))
        .await;
    let table = browser.text_of("#summary").await;
    assert!(table.contains("Quote Funnel"), "{table}");
    for amount in [revenue, payout, revenue - payout] {
        assert!(table.contains(&usd(amount)), "{} in {table}", usd(amount));
    }
    assert!(!table.contains("98.76"), "another tenant's sale: {table}");
    browser.screenshot("reports").await;
    eprintln!(
        "screenshots of Today and Reports: {}",
        browser.shots().display()
    );
    browser
        .goto(&app.url("/console/reports?group_by=contract"))
        .await;
    assert!(
        browser
            .text_of("#summary")
            .await
            .contains("contract_paused")
    );
    browser.close().await;
}

/// A contract's row of the summary report per contract, from `from` to `to` (RFC 3339).
async fn contract_row(app: &TestApp, exchange: &Exchange, contract: Uuid, range: &str) -> Value {
    let (status, report) = admin_get(
        app,
        exchange,
        &format!("/v1/admin/reports/summary?group_by=contract&{range}"),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["group_id"] == contract.to_string())
        .cloned()
        .unwrap_or(Value::Null)
}

/// The summary report keeps the declines of its closed minutes, hours and days in memory
/// (docs/console.md#reports): read again as more pings come, and later in wider buckets, it
/// still counts every ping once, per contract and per offer.
#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn the_report_counts_every_ping_once_as_its_buckets_close(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let server = MockServer::start().await;
    buyers(&exchange, &server, 3000).await;
    let paused: Uuid =
        sqlx::query_scalar("SELECT id FROM contracts WHERE tenant_id = $1 AND status = 'paused'")
            .bind(exchange.tenant_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    let clock = std::sync::Arc::new(gavel::clock::FixedClock::new(
        Utc.with_ymd_and_hms(2026, 11, 25, 15, 0, 10).unwrap(),
    ));
    let app = crate::harness::spawn_app_with_clock(
        pool.clone(),
        crate::harness::test_settings(),
        axum::Router::new(),
        clock.clone(),
    )
    .await;
    let ping = || async {
        let (status, answer) = app
            .ping(&exchange.posting_key, json!({ "lead": ping_lead() }))
            .await;
        assert_eq!((status, answer["status"].as_str()), (200, Some("bids")));
    };
    // The tenant's 25 November (New York) and the whole of the next day.
    let range = "from=2026-11-25&to=2026-11-26";
    let declined = |row: &Value| {
        (
            row["pings"].as_i64(),
            row["declines"]["contract_paused"].as_i64(),
        )
    };

    ping().await;
    ping().await;
    clock.set(Utc.with_ymd_and_hms(2026, 11, 25, 15, 2, 0).unwrap());
    let row = contract_row(&app, &exchange, paused, range).await;
    assert_eq!(declined(&row), (Some(2), Some(2)), "{row}");
    // 15:00 is kept now; a ping in the open minute is counted beside it.
    ping().await;
    let row = contract_row(&app, &exchange, paused, range).await;
    assert_eq!(declined(&row), (Some(3), Some(3)), "{row}");
    let row = contract_row(&app, &exchange, paused, range).await;
    assert_eq!(declined(&row), (Some(3), Some(3)), "read again: {row}");

    // An hour later the 15:00 hour is one bucket (read once), then the 25th one day.
    clock.set(Utc.with_ymd_and_hms(2026, 11, 25, 16, 30, 0).unwrap());
    ping().await;
    let row = contract_row(&app, &exchange, paused, range).await;
    assert_eq!(declined(&row), (Some(4), Some(4)), "{row}");
    clock.set(Utc.with_ymd_and_hms(2026, 11, 26, 15, 0, 0).unwrap());
    ping().await;
    for _ in 0..2 {
        let row = contract_row(&app, &exchange, paused, range).await;
        assert_eq!(declined(&row), (Some(5), Some(5)), "{row}");
    }
    // A range ending in a past minute counts only what came before it.
    let row = contract_row(
        &app,
        &exchange,
        paused,
        "from=2026-11-25T15:00:00Z&to=2026-11-25T15:02:00Z",
    )
    .await;
    assert_eq!(declined(&row), (Some(2), Some(2)), "{row}");
    // Per offer, the same declines from buckets of their own.
    let (_, report) = admin_get(
        &app,
        &exchange,
        &format!("/v1/admin/reports/summary?{range}"),
    )
    .await;
    assert_eq!(
        (
            report["rows"][0]["pings"].as_i64(),
            report["rows"][0]["declines"]["contract_paused"].as_i64()
        ),
        (Some(5), Some(5)),
        "{report}"
    );
}
