//! The console's Auctions (docs/console.md): the pings list and its search, a ping's page in
//! words, the lead's page (the only one with personal data), other tenants kept out; and the
//! admin API's list of pings behind them (`GET /v1/admin/pings`).

use std::time::Duration;

use fantoccini::Locator;
use gavel::money::{ExtraDecimals, Money};
use reqwest::Method;
use reqwest::header::COOKIE;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::browser::{Browser, browser};
use crate::console::sign_in_http;
use crate::fixtures::{ContractSpec, Exchange, consent, full_lead, ping_lead};
use crate::harness::{TestApp, spawn_app};

/// What the buyer answers a delivery: the console shows it word for word.
const BUYER_ANSWER: &str = "Thanks, lead booked as ACME-77";

/// A tenant with three contracts: `Acme TX` (wins at $40.00 exclusive; its buyer, a real
/// HTTP server, accepts the lead), `Beacon CA NY` (filtered: state in CA, NY) and
/// `Crest Paused` (paused).
struct Auction {
    exchange: Exchange,
    _buyers: MockServer,
}

async fn auction_exchange(pool: &PgPool) -> Auction {
    let exchange = Exchange::create(pool, "exclusive").await;
    let buyers = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/leads"))
        .respond_with(
            ResponseTemplate::new(200)
                // The buyer quotes the lead back: the ping's page must mask it.
                .set_body_json(json!({ "status": "accepted", "message": BUYER_ANSWER,
                                       "email": "ada@example.com", "phone": "2145550123" })),
        )
        .mount(&buyers)
        .await;
    let delivery = json!({ "url": format!("{}/leads", buyers.uri()), "timeout_ms": 1000,
                           "accept": { "path": "/status", "equals": "accepted" } });
    let winner = exchange
        .buyer_with(
            100_000,
            ContractSpec {
                delivery: Some(delivery),
                ..ContractSpec::fixed(Some(4000), None)
            },
        )
        .await;
    let filtered = exchange
        .buyer_with(
            100_000,
            ContractSpec {
                filters: Some(json!([{ "field": "state", "op": "in", "value": ["CA", "NY"] }])),
                ..ContractSpec::fixed(Some(5000), None)
            },
        )
        .await;
    let paused = exchange
        .buyer_with(
            100_000,
            ContractSpec {
                status: Some("paused"),
                ..ContractSpec::fixed(Some(6000), None)
            },
        )
        .await;
    for ((buyer, contract), buyer_name, contract_name) in [
        (winner, "Acme Insurance", "Acme TX"),
        (filtered, "Beacon Leads", "Beacon CA NY"),
        (paused, "Crest Media", "Crest Paused"),
    ] {
        rename(pool, "buyers", buyer, buyer_name).await;
        rename(pool, "contracts", contract, contract_name).await;
    }
    Auction {
        exchange,
        _buyers: buyers,
    }
}

async fn rename(pool: &PgPool, table: &str, id: Uuid, name: &str) {
    let statement = match table {
        "buyers" => "UPDATE buyers SET name = $2 WHERE id = $1",
        "contracts" => "UPDATE contracts SET name = $2 WHERE id = $1",
        _ => "UPDATE partners SET name = $2 WHERE id = $1",
    };
    sqlx::query(statement)
        .bind(id)
        .bind(name)
        .execute(pool)
        .await
        .unwrap();
}

/// Pings and posts the fixtures' lead; returns the ping's and the lead's ids.
async fn sold_lead(app: &TestApp, exchange: &Exchange) -> (String, String) {
    let (status, ping) = app
        .ping(&exchange.posting_key, json!({ "lead": ping_lead() }))
        .await;
    assert_eq!(
        (status, ping["status"].as_str()),
        (200, Some("bids")),
        "{ping}"
    );
    let (status, posted) = app
        .post(
            &exchange.posting_key,
            json!({ "ping_id": ping["ping_id"], "lead": full_lead(), "consent": consent() }),
        )
        .await;
    assert_eq!(
        (status, posted["status"].as_str()),
        (200, Some("sold")),
        "{posted}"
    );
    (
        ping["ping_id"].as_str().unwrap().to_owned(),
        posted["lead_id"].as_str().unwrap().to_owned(),
    )
}

/// Waits until the browser is at `path` (a search answered through htmx navigates by itself).
async fn wait_for_path(browser: &Browser, want: &str) {
    for _ in 0..100 {
        if browser.path().await == want {
            browser.settle().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "never at {want}: at {} showing {}",
        browser.path().await,
        browser.text().await
    );
}

/// Waits until the page's text holds `needle`.
async fn wait_for_text(browser: &Browser, needle: &str) -> String {
    for _ in 0..100 {
        let text = browser.text().await;
        if text.contains(needle) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never showed {needle:?}: {}", browser.text().await);
}

/// The page's personal data must not be there: the lead's name, email and phone.
fn assert_no_pii(text: &str, page: &str) {
    let lower = text.to_lowercase();
    for pii in ["ada@example.com", "555-0123", "ada"] {
        assert!(
            !lower.contains(pii),
            "{page} shows personal data ({pii}): {text}"
        );
    }
}

/// Searches the Auctions page's id box for `id`.
async fn search_id(browser: &Browser, base: &str, id: &str) {
    browser.goto(&format!("{base}/console/auctions")).await;
    browser.fill("id", id).await;
    browser.click("Search").await;
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn an_operator_finds_a_ping_and_reads_every_contracts_reason_in_words(pool: PgPool) {
    let auction = auction_exchange(&pool).await;
    let exchange = &auction.exchange;
    // Another tenant, with a ping of its own.
    let other = Exchange::create(&pool, "exclusive").await;
    rename(&pool, "partners", other.partner_id, "Elsewhere Media").await;
    other
        .buyer_with(100_000, ContractSpec::fixed(Some(4000), None))
        .await;
    let app = spawn_app(pool.clone()).await;
    let (ping_id, lead_id) = sold_lead(&app, exchange).await;
    let (status, other_ping) = app
        .ping(&other.posting_key, json!({ "lead": ping_lead() }))
        .await;
    assert_eq!(status, 200, "{other_ping}");
    let other_ping = other_ping["ping_id"].as_str().unwrap().to_owned();

    let Some(browser) = browser("auctions").await else {
        return;
    };
    eprintln!(
        "the auctions list, the ping's page and the lead's page: {}",
        browser.shots().display()
    );
    let base = app.url("");
    browser.sign_in(&base, &exchange.admin_key).await;

    // The list: the ping, named, with its status and sale; nobody else's pings; no PII.
    browser.click("Auctions").await;
    assert_eq!(browser.path().await, "/console/auctions");
    let list = browser.text_of("#results").await;
    assert!(list.contains("Quote Funnel → auto-insurance"), "{list}");
    assert!(list.contains("bids"), "{list}");
    assert!(list.contains("sold 1"), "{list}");
    assert!(list.contains("$40.00"), "{list}");
    assert!(!list.contains("Elsewhere Media"), "{list}");
    let source = browser.client.source().await.unwrap();
    assert!(source.contains(&format!("/console/auctions/{ping_id}")));
    assert!(
        !source.contains(&other_ping),
        "another tenant's ping is listed"
    );
    assert_no_pii(&browser.text().await, "the list");
    browser.screenshot("auctions").await;

    // The ping's page: every contract's reason in words.
    browser
        .client
        .find(Locator::Css(&format!(
            "a[href='/console/auctions/{ping_id}']"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(&browser, &format!("/console/auctions/{ping_id}")).await;
    let page = browser.text().await;
    for words in [
        "Auction: Quote Funnel → auto-insurance",
        // The winner, its buyer, and its sale's verdict with the buyer's own answer.
        "Acme TX",
        "Acme Insurance",
        "won the auction",
        "the buyer accepted the lead",
        BUYER_ANSWER,
        // The filtered one: the filter in words, with the field and the values.
        "Beacon CA NY",
        "Beacon Leads",
        "a filter of the contract did not hold for the ping",
        "state is TX, but the contract requires state to be one of CA, NY",
        // The paused one.
        "Crest Paused",
        "Crest Media",
        "the contract is paused",
        // The timeline.
        "Ping received from Quote Funnel: 3 contracts considered",
        "Posted: the lead was stored",
        "Sale to Acme TX (Acme Insurance) at $40.00",
        "Settled sold for Acme TX: the buyer answered HTTP 200",
        "View the lead (PII)",
    ] {
        assert!(
            page.contains(words),
            "the ping's page lacks {words:?}: {page}"
        );
    }
    assert_no_pii(&page, "the ping's page");
    browser.screenshot_full("auction").await;

    // The lead's page: the personal data, marked as such.
    browser.click("View the lead (PII)").await;
    assert_eq!(browser.path().await, format!("/console/leads/{lead_id}"));
    let lead = browser.text().await;
    assert!(lead.contains("Personal data."), "{lead}");
    assert!(lead.to_lowercase().contains("ada@example.com"), "{lead}");
    assert!(lead.contains("Acme TX"), "{lead}");
    assert!(lead.contains("Quote Funnel → auto-insurance"), "{lead}");
    browser.screenshot("lead").await;

    // Search by the ping's id, then by the lead's: both land on the ping's page.
    search_id(&browser, &base, &ping_id).await;
    wait_for_path(&browser, &format!("/console/auctions/{ping_id}")).await;
    search_id(&browser, &base, &lead_id).await;
    wait_for_path(&browser, &format!("/console/auctions/{ping_id}")).await;
    wait_for_text(&browser, "the contract is paused").await;

    // Another tenant's ping: not found, by its page or by the search.
    browser
        .goto(&app.url(&format!("/console/auctions/{other_ping}")))
        .await;
    assert!(browser.text().await.contains("Not found"));
    search_id(&browser, &base, &other_ping).await;
    let text = wait_for_text(&browser, "No ping or lead of yours has the id").await;
    assert!(text.contains(&other_ping));
    browser.close().await;

    // Over plain HTTP: a 404 page in HTML, for another tenant's ping and its lead alike.
    let (cookie, _) = sign_in_http(&base, &exchange.admin_key, &[]).await;
    for path in [
        format!("/console/auctions/{other_ping}"),
        format!("/console/leads/{other_ping}"),
        "/console/auctions/not-an-id".to_owned(),
    ] {
        let answer = reqwest::Client::new()
            .get(app.url(&path))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404, "{path}");
        let content_type = answer.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(content_type.starts_with("text/html"), "{content_type}");
        assert!(answer.text().await.unwrap().contains("Not found"));
    }
}

/// An admin GET that must answer 200.
async fn get(app: &TestApp, key: &str, path: &str) -> Value {
    let (status, answer) = app.admin(Method::GET, path, key, None).await;
    assert_eq!(status, 200, "GET {path}: {answer}");
    answer
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["ping_id"].as_str().unwrap().to_owned())
        .collect()
}

fn time_param(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn the_pings_list_filters_by_partner_status_time_and_pages(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    // Bids for Texas only.
    exchange
        .buyer_with(
            100_000,
            ContractSpec {
                filters: Some(json!([{ "field": "state", "op": "in", "value": ["TX"] }])),
                ..ContractSpec::fixed(Some(4000), None)
            },
        )
        .await;
    // A second partner, with its own campaign into the same offer.
    let (partner_b, campaign_b) = (Uuid::now_v7(), Uuid::now_v7());
    let key_b = gavel::keys::generate(gavel::keys::POSTING_KEY_PREFIX);
    sqlx::query("INSERT INTO partners (tenant_id, id, name) VALUES ($1, $2, 'Second Source')")
        .bind(exchange.tenant_id)
        .bind(partner_b)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO campaigns (tenant_id, id, partner_id, offer_id, posting_key_hash, payout_type, payout_percent)
         VALUES ($1, $2, $3, $4, $5, 'revshare', 70)",
    )
    .bind(exchange.tenant_id)
    .bind(campaign_b)
    .bind(partner_b)
    .bind(exchange.offer_id)
    .bind(&gavel::keys::hash(&key_b)[..])
    .execute(&pool)
    .await
    .unwrap();
    let app = spawn_app(pool.clone()).await;
    let key = &exchange.admin_key;

    let ping = |posting_key: String, state: &'static str| {
        let app = &app;
        async move {
            let mut lead = ping_lead();
            lead["state"] = json!(state);
            let (status, answer) = app.ping(&posting_key, json!({ "lead": lead })).await;
            assert_eq!(status, 200, "{answer}");
            answer["ping_id"].as_str().unwrap().to_owned()
        }
    };
    // Early: two pings with bids from the first partner, one without from the second.
    let a1 = ping(exchange.posting_key.clone(), "TX").await;
    let a2 = ping(exchange.posting_key.clone(), "TX").await;
    let b1 = ping(key_b.clone(), "CA").await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let middle = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(30)).await;
    // Later: one of each partner, and a ping refused (its lead lacks a required field).
    let b2 = ping(key_b.clone(), "TX").await;
    let a3 = ping(exchange.posting_key.clone(), "NY").await;
    let (status, refused) = app
        .ping(&exchange.posting_key, json!({ "lead": { "state": "TX" } }))
        .await;
    assert!((400..500).contains(&status), "{status} {refused}");

    // Newest first, all of them (the refused one too).
    let all = get(&app, key, "/v1/admin/pings").await;
    let listed = ids(&all);
    assert_eq!(listed.len(), 6, "{all:#}");
    assert_eq!(
        &listed[1..],
        [
            a3.as_str(),
            b2.as_str(),
            b1.as_str(),
            a2.as_str(),
            a1.as_str()
        ]
    );
    assert_eq!(all["next_cursor"], Value::Null);
    // An item: named, counted, and no lead field at all.
    let item = &all["items"][4];
    assert_eq!(item["status"], "bids");
    assert_eq!(item["partner_name"], "Quote Funnel");
    assert_eq!(item["campaign_name"], "Quote Funnel → auto-insurance");
    assert_eq!(item["offer_name"], "auto-insurance");
    assert_eq!(
        (
            item["contracts"].as_i64(),
            item["bids"].as_i64(),
            item["winners"].as_i64()
        ),
        (Some(1), Some(1), Some(1))
    );
    let best = Money::from_json(&item["best_price"], ExtraDecimals::Reject).unwrap();
    assert_eq!(best.cents(), 4000, "{item}");
    assert_eq!(
        (item["posted"].as_bool(), &item["lead_id"]),
        (Some(false), &Value::Null)
    );
    assert!(item["latency_ms"].as_f64().is_some());
    assert!(
        item.get("lead").is_none() && !item.to_string().contains("75001"),
        "{item}"
    );

    // By partner, by campaign, by status.
    let by_partner = get(
        &app,
        key,
        &format!("/v1/admin/pings?partner_id={partner_b}"),
    )
    .await;
    assert_eq!(ids(&by_partner), [b2.as_str(), b1.as_str()]);
    assert!(
        by_partner["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["partner_name"] == "Second Source")
    );
    let by_campaign = get(
        &app,
        key,
        &format!("/v1/admin/pings?campaign_id={}", exchange.campaign_id),
    )
    .await;
    assert_eq!(
        ids(&by_campaign)[1..],
        [a3.as_str(), a2.as_str(), a1.as_str()]
    );
    let no_bids = get(&app, key, "/v1/admin/pings?status=no_bids").await;
    assert_eq!(ids(&no_bids), [a3.as_str(), b1.as_str()]);
    let with_bids = get(&app, key, "/v1/admin/pings?status=bids").await;
    assert_eq!(ids(&with_bids), [b2.as_str(), a2.as_str(), a1.as_str()]);
    let refused_list = get(&app, key, "/v1/admin/pings?status=refused").await;
    assert_eq!(ids(&refused_list), [listed[0].as_str()]);
    assert_ne!(
        refused_list["items"][0]["status"], "refused",
        "its own code"
    );

    // By time: [from, to).
    let later = get(
        &app,
        key,
        &format!("/v1/admin/pings?from={}&status=bids", time_param(middle)),
    )
    .await;
    assert_eq!(ids(&later), [b2.as_str()]);
    let earlier = get(
        &app,
        key,
        &format!("/v1/admin/pings?to={}", time_param(middle)),
    )
    .await;
    assert_eq!(ids(&earlier), [b1.as_str(), a2.as_str(), a1.as_str()]);

    // Pages of two: every ping once, newest first, then no cursor.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let path = match &cursor {
            Some(c) => format!("/v1/admin/pings?limit=2&cursor={c}"),
            None => "/v1/admin/pings?limit=2".to_owned(),
        };
        let page = get(&app, key, &path).await;
        paged.extend(ids(&page));
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(paged, listed);

    // Posted: the post shows on the list.
    let (status, posted) = app
        .post(
            &exchange.posting_key,
            json!({ "ping_id": a2, "lead": full_lead(), "consent": consent() }),
        )
        .await;
    assert_eq!(status, 200, "{posted}");
    let posted_list = get(&app, key, "/v1/admin/pings?posted=true").await;
    assert_eq!(ids(&posted_list), [a2.as_str()]);
    assert_eq!(posted_list["items"][0]["lead_id"], posted["lead_id"]);
    assert_eq!(
        get(&app, key, "/v1/admin/pings?posted=false").await["items"]
            .as_array()
            .unwrap()
            .len(),
        5
    );

    // Bad input: a problem with its pointer; another tenant sees none of these pings.
    for (query, pointer) in [
        ("status=bids'--", "/query/status"),
        ("from=yesterday", "/query/from"),
        ("partner_id=42", "/query/partner_id"),
        ("posted=maybe", "/query/posted"),
        ("limit=0", "/query/limit"),
    ] {
        let (status, problem) = app
            .admin(Method::GET, &format!("/v1/admin/pings?{query}"), key, None)
            .await;
        assert_eq!(status, 422, "{query}: {problem}");
        assert_eq!(
            problem["errors"][0]["pointer"], pointer,
            "{query}: {problem}"
        );
    }
    let other = Exchange::create(&pool, "exclusive").await;
    let theirs = get(&app, &other.admin_key, "/v1/admin/pings").await;
    assert_eq!(theirs["items"], json!([]));
    let theirs = get(
        &app,
        &other.admin_key,
        &format!("/v1/admin/pings?partner_id={partner_b}"),
    )
    .await;
    assert_eq!(theirs["items"], json!([]));
}
