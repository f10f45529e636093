//! The console's contracts, buyers and partners (docs/console.md), in a real headless Chromium
//! and, for a form submitted twice and other tenants' ids, over plain HTTP: what the operator
//! does in the console is what the next ping and the admin API see.

use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::browser::{Browser, browser};
use crate::console::{FormBody, csrf_of, sign_in_http};
use crate::fixtures::{ContractSpec, Exchange, consent, full_lead, outcome_of, ping_lead};
use crate::harness::{TestApp, spawn_app};

/// A client that does not follow redirects.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn rename(pool: &PgPool, table: &'static str, id: Uuid, name: &str) {
    // `table` is one of this file's literals.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {table} SET name = $2 WHERE id = $1"
    )))
    .bind(id)
    .bind(name)
    .execute(pool)
    .await
    .unwrap();
}

/// A buyer that accepts every lead delivered to `/leads`, and the contract's delivery to it.
async fn accepting_buyer() -> (MockServer, Value) {
    let buyers = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/leads"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "status": "accepted" })))
        .mount(&buyers)
        .await;
    let delivery = json!({ "url": format!("{}/leads", buyers.uri()), "timeout_ms": 1000,
                           "accept": { "path": "/status", "equals": "accepted" } });
    (buyers, delivery)
}

/// Pings the fixtures' lead; the answer.
async fn ping(app: &TestApp, exchange: &Exchange) -> Value {
    let (status, answer) = app
        .ping(&exchange.posting_key, json!({ "lead": ping_lead() }))
        .await;
    assert_eq!(status, 200, "{answer}");
    answer
}

async fn admin_get(app: &TestApp, key: &str, path: &str) -> Value {
    let (status, answer) = app.admin(Method::GET, path, key, None).await;
    assert_eq!(status, 200, "GET {path}: {answer}");
    answer
}

/// Clicks `label` and waits until the next page says `expected` (a click's page may still be
/// the previous one for a moment); the new page's text.
async fn click_until(browser: &Browser, label: &str, expected: &str) -> String {
    browser.click(label).await;
    until(browser, expected).await
}

/// Waits until the page says `expected`; its text.
async fn until(browser: &Browser, expected: &str) -> String {
    let since = Instant::now();
    loop {
        let text = match browser.client.find(fantoccini::Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.contains(expected) {
            return text;
        }
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "{expected:?} not on the page: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_contract_paused_in_the_console_is_declined_by_the_next_ping_and_its_caps_show_the_sale(
    pool: PgPool,
) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let (_buyers, delivery) = accepting_buyer().await;
    let (buyer, contract) = exchange
        .buyer_with(
            100_000,
            ContractSpec {
                delivery: Some(delivery),
                caps: Some(json!([{ "period": "day", "max_leads": 5 },
                                  { "period": "month", "max_spend_cents": 10_000 }])),
                filters: Some(json!([{ "field": "state", "op": "in", "value": ["TX", "OK"] }])),
                ..ContractSpec::fixed(Some(4000), None)
            },
        )
        .await;
    rename(&pool, "buyers", buyer, "Acme Insurance").await;
    rename(&pool, "contracts", contract, "Acme TX").await;
    let app = spawn_app(pool.clone()).await;

    // A sale: the contract's caps count one lead and its price.
    let pinged = ping(&app, &exchange).await;
    assert_eq!(pinged["status"], "bids", "{pinged}");
    let (status, posted) = app
        .post(
            &exchange.posting_key,
            json!({ "ping_id": pinged["ping_id"], "lead": full_lead(), "consent": consent() }),
        )
        .await;
    assert_eq!((status, posted["status"].as_str()), (200, Some("sold")));

    let Some(browser) = browser("console_contracts").await else {
        return;
    };
    browser.sign_in(&app.url(""), &exchange.admin_key).await;
    browser.goto(&app.url("/console/contracts")).await;
    let list = browser.text_of("table.contracts").await;
    assert!(
        list.contains("Acme TX") && list.contains("Acme Insurance"),
        "{list}"
    );
    assert!(
        list.contains("auto-insurance") && list.contains("exclusive $40.00"),
        "{list}"
    );
    assert!(list.contains("1 / 5 leads today"), "{list}");
    assert!(list.contains("$40.00 / $100.00 spent this month"), "{list}");
    browser.screenshot("contracts").await;

    click_until(&browser, "Acme TX", "Contract Acme TX").await;
    assert_eq!(
        browser.path().await,
        format!("/console/contracts/{contract}")
    );
    let page = browser.text().await;
    assert!(page.contains("active"), "{page}");
    assert!(page.contains("1 / 5 leads today"), "{page}");
    assert!(page.contains("state to be one of TX, OK"), "{page}");
    assert!(page.contains("Always open"), "{page}");
    assert!(
        page.contains("Returns are not allowed") || page.contains("Window"),
        "{page}"
    );
    browser.screenshot("contract").await;

    // Paused in the console: the very next ping declines it, `contract_paused`.
    click_until(&browser, "Pause", "Contract paused").await;
    assert_eq!(
        browser.path().await,
        format!("/console/contracts/{contract}")
    );
    let page = browser.text().await;
    assert!(
        page.contains("Contract paused") && page.contains("paused"),
        "{page}"
    );
    let pinged = ping(&app, &exchange).await;
    assert_eq!(pinged["status"], "no_bids", "{pinged}");
    let (_, view) = app
        .ping_view(&exchange.admin_key, pinged["ping_id"].as_str().unwrap())
        .await;
    assert_eq!(outcome_of(&view, contract)["reason"], "contract_paused");
    let answer = admin_get(
        &app,
        &exchange.admin_key,
        &format!("/v1/admin/contracts/{contract}"),
    )
    .await;
    assert_eq!(answer["status"], "paused");
    browser.screenshot("contract-paused").await;

    // Resumed: the next ping can win again.
    click_until(&browser, "Resume", "Contract resumed").await;
    assert!(browser.text().await.contains("Contract resumed"));
    let pinged = ping(&app, &exchange).await;
    assert_eq!(pinged["status"], "bids", "{pinged}");

    // The buyer's link leads to its page.
    click_until(&browser, "Acme Insurance", "Ledger").await;
    assert_eq!(browser.path().await, format!("/console/buyers/{buyer}"));
    for shot in ["contracts", "contract", "contract-paused"] {
        assert!(browser.shots().join(format!("{shot}.png")).is_file());
    }
    browser.close().await;
}

/// A buyer's balance as the admin API writes it (the number's exact text).
async fn api_balance(app: &TestApp, key: &str, buyer: Uuid) -> String {
    let text = app
        .client
        .get(app.url(&format!("/v1/admin/buyers/{buyer}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = text.find("\"balance\":").expect("a balance") + 10;
    let end = at + text[at..].find([',', '}']).unwrap();
    text[at..end].trim().to_owned()
}

/// The hidden fields of the funds confirmation in `page`.
fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = page
        .find(&marker)
        .unwrap_or_else(|| panic!("{name} in {page}"))
        + marker.len();
    page[at..at + page[at..].find('"').unwrap()].to_owned()
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn funds_added_in_the_console_are_confirmed_first_and_move_money_once(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let (buyer, contract) = exchange
        .buyer_with(100_000, ContractSpec::fixed(Some(4000), None))
        .await;
    rename(&pool, "buyers", buyer, "Acme Insurance").await;
    rename(&pool, "contracts", contract, "Acme TX").await;
    let app = spawn_app(pool.clone()).await;
    if let Some(browser) = browser("console_funds").await {
        browser.sign_in(&app.url(""), &exchange.admin_key).await;
        browser.goto(&app.url("/console/buyers")).await;
        let list = browser.text_of("table.buyers").await;
        assert!(
            list.contains("Acme Insurance") && list.contains("$1,000.00"),
            "{list}"
        );
        let page = click_until(&browser, "Acme Insurance", "Ledger").await;
        assert!(
            page.contains("$1,000.00") && page.contains("Acme TX"),
            "{page}"
        );
        browser.screenshot("buyer").await;

        // A wrong amount: the form again, saying why.
        browser.fill("amount", "abc").await;
        click_until(&browser, "Add funds", "must be a number").await;
        browser.fill("amount", "12.345").await;
        click_until(&browser, "Add funds", "at most 2 decimals").await;
        browser.screenshot("funds-refused").await;

        browser.fill("amount", "500").await;
        browser.fill("note", "wire 1123").await;
        let page = click_until(&browser, "Add funds", "Add $500.00 to").await;
        assert!(
            page.contains("Add $500.00 to Acme Insurance?")
                && page.contains("New balance will be $1,500.00"),
            "{page}"
        );
        assert_eq!(
            api_balance(&app, &exchange.admin_key, buyer).await,
            "1000.00",
            "nothing moved before the confirmation"
        );
        browser.screenshot("funds-confirm").await;
        let page = click_until(&browser, "Confirm", "Added $500.00").await;
        assert_eq!(browser.path().await, format!("/console/buyers/{buyer}"));
        assert!(page.contains("Added $500.00"), "{page}");
        let ledger = browser.text_of("table.ledger").await;
        let first = ledger.lines().nth(1).unwrap_or_default();
        assert!(
            first.contains("funds") && first.contains("$500.00") && first.contains("wire 1123"),
            "the newest entry first: {ledger}"
        );
        assert!(browser.text_of("div.cards").await.contains("$1,500.00"));
        assert_eq!(
            api_balance(&app, &exchange.admin_key, buyer).await,
            "1500.00"
        );
        browser.screenshot("buyer-funded").await;
        browser.close().await;
    }

    // Over HTTP: the confirmation submitted twice (a double click, or back and resubmit)
    // moves the money once.
    let base = app.url("");
    let before = api_balance(&app, &exchange.admin_key, buyer).await;
    let (cookie, _) = sign_in_http(&base, &exchange.admin_key, &[]).await;
    let csrf = csrf_of(&base, &cookie).await;
    let confirm = http()
        .post(format!("{base}/console/buyers/{buyer}/funds"))
        .header(COOKIE, &cookie)
        .form_body(&[
            ("csrf", csrf.as_str()),
            ("amount", "$25.50"),
            ("note", "twice"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(confirm.status(), StatusCode::OK);
    let page = confirm.text().await.unwrap();
    let fields = [
        ("csrf", csrf.clone()),
        ("amount", hidden(&page, "amount")),
        ("note", hidden(&page, "note")),
        ("key", hidden(&page, "key")),
    ];
    assert_eq!(fields[1].1, "25.50");
    for _ in 0..2 {
        let done = http()
            .post(format!("{base}/console/buyers/{buyer}/funds/add"))
            .header(COOKIE, &cookie)
            .form_body(&fields)
            .send()
            .await
            .unwrap();
        assert_eq!(done.status(), StatusCode::SEE_OTHER);
        assert_eq!(done.headers()[LOCATION], format!("/console/buyers/{buyer}"));
        assert!(
            done.headers()
                .get_all(SET_COOKIE)
                .iter()
                .any(|c| c.to_str().unwrap().contains("Added")),
        );
    }
    let expected = if before == "1500.00" {
        "1525.50"
    } else {
        "1025.50"
    };
    assert_eq!(
        api_balance(&app, &exchange.admin_key, buyer).await,
        expected,
        "moved once"
    );
    let (sum, stored) = exchange.buyer_books(buyer).await;
    assert_eq!(sum, stored);
    let ledger = admin_get(
        &app,
        &exchange.admin_key,
        &format!("/v1/admin/buyers/{buyer}/ledger"),
    )
    .await;
    let twice = ledger["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["note"] == "twice")
        .count();
    assert_eq!(twice, 1);

    // A refusal of the admin API at the last step is shown on the form, in words.
    let refused = http()
        .post(format!("{base}/console/buyers/{buyer}/funds/add"))
        .header(COOKIE, &cookie)
        .form_body(&[
            ("csrf", csrf.as_str()),
            ("amount", "25.50"),
            ("note", "another body"),
            ("key", fields[3].1.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = refused.text().await.unwrap();
    assert!(page.contains("class=\"refusal\""), "{page}");
    assert_eq!(
        api_balance(&app, &exchange.admin_key, buyer).await,
        expected
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_posting_key_rotated_in_the_console_is_shown_once_and_the_old_one_stops(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    exchange
        .buyer_with(100_000, ContractSpec::fixed(Some(4000), None))
        .await;
    let app = spawn_app(pool.clone()).await;
    assert_eq!(ping(&app, &exchange).await["status"], "bids");
    let Some(browser) = browser("console_partners").await else {
        return;
    };
    browser.sign_in(&app.url(""), &exchange.admin_key).await;
    browser.goto(&app.url("/console/partners")).await;
    let list = browser.text_of("table.partners").await;
    assert!(
        list.contains("Quote Funnel") && list.contains("$0.00"),
        "{list}"
    );
    click_until(&browser, "Quote Funnel", "what the exchange owes").await;
    assert_eq!(
        browser.path().await,
        format!("/console/partners/{}", exchange.partner_id)
    );
    let page = browser.text().await;
    assert!(
        page.contains("auto-insurance") && page.contains("70 % of the price"),
        "{page}"
    );
    browser.screenshot("partner").await;

    let page = click_until(&browser, "Rotate posting key", "Rotate the posting key of").await;
    assert!(
        page.contains("Rotate the posting key of Quote Funnel → auto-insurance?"),
        "{page}"
    );
    browser.screenshot("rotate-confirm").await;
    click_until(&browser, "Rotate key", "shown only this once").await;
    let key = browser.text_of("#posting-key").await;
    assert!(
        key.starts_with("pk_") && key != exchange.posting_key,
        "{key}"
    );
    assert!(browser.text().await.contains("shown only this once"));
    browser.screenshot("rotated").await;

    // The new key pings; the old one is refused.
    let (status, answer) = app.ping(&key, json!({ "lead": ping_lead() })).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("bids")),
        "{answer}"
    );
    let since = Instant::now();
    loop {
        let (status, _) = app
            .ping(&exchange.posting_key, json!({ "lead": ping_lead() }))
            .await;
        if status == 401 {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(3),
            "the old key still works"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Shown once: the partner's page does not show it again.
    let page = click_until(&browser, "Back to the partner", "what the exchange owes").await;
    assert!(!page.contains(&key));

    // The campaign paused and resumed from the partner's page.
    let in_campaigns = |label: &'static str| {
        let client = browser.client.clone();
        async move {
            let xpath = format!(
                "//table[contains(@class,'campaigns')]//button[normalize-space(.)='{label}']"
            );
            client
                .find(fantoccini::Locator::XPath(&xpath))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
        }
    };
    in_campaigns("Pause").await;
    let page = until(&browser, "Campaign paused").await;
    assert!(page.contains("Campaign paused"), "{page}");
    let campaign = admin_get(
        &app,
        &exchange.admin_key,
        &format!("/v1/admin/campaigns/{}", exchange.campaign_id),
    )
    .await;
    assert_eq!(campaign["status"], "paused");
    in_campaigns("Resume").await;
    until(&browser, "Campaign resumed").await;
    browser.close().await;
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn another_tenants_contracts_buyers_and_partners_are_not_found(pool: PgPool) {
    let ours = Exchange::create(&pool, "exclusive").await;
    let (our_buyer, our_contract) = ours
        .buyer_with(100_000, ContractSpec::fixed(Some(4000), None))
        .await;
    rename(&pool, "buyers", our_buyer, "Acme Insurance").await;
    rename(&pool, "contracts", our_contract, "Acme TX").await;
    let theirs = Exchange::create(&pool, "exclusive").await;
    let (their_buyer, their_contract) = theirs
        .buyer_with(100_000, ContractSpec::fixed(Some(4000), None))
        .await;
    rename(&pool, "buyers", their_buyer, "Rival Buyer").await;
    rename(&pool, "contracts", their_contract, "Rival Contract").await;
    rename(&pool, "partners", theirs.partner_id, "Rival Partner").await;
    let app = spawn_app(pool.clone()).await;
    let base = app.url("");
    let (cookie, _) = sign_in_http(&base, &ours.admin_key, &[]).await;
    let csrf = csrf_of(&base, &cookie).await;
    let get = |path: String| {
        let (base, cookie) = (base.clone(), cookie.clone());
        async move {
            let answer = http()
                .get(format!("{base}{path}"))
                .header(COOKIE, cookie)
                .send()
                .await
                .unwrap();
            (answer.status(), answer.text().await.unwrap())
        }
    };

    for path in [
        format!("/console/contracts/{their_contract}"),
        format!("/console/buyers/{their_buyer}"),
        format!("/console/buyers/{their_buyer}/funds"),
        format!("/console/partners/{}", theirs.partner_id),
        format!("/console/campaigns/{}/rotate-key", theirs.campaign_id),
        "/console/contracts/not-an-id".to_owned(),
    ] {
        let (status, page) = get(path.clone()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(page.contains("Not found"), "{path}: {page}");
        assert!(!page.contains("Rival"), "{path}: {page}");
    }
    for path in ["/console/contracts", "/console/buyers", "/console/partners"] {
        let (status, page) = get(path.to_owned()).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(!page.contains("Rival"), "{path}: {page}");
        assert!(!page.contains(&their_contract.to_string()), "{path}");
    }
    let (_, page) = get("/console/contracts".to_owned()).await;
    assert!(page.contains("Acme TX"), "{page}");

    // Their resources' actions are not found either, and change nothing.
    for action in [
        format!("/console/contracts/{their_contract}/pause"),
        format!("/console/partners/{}/pause", theirs.partner_id),
        format!("/console/campaigns/{}/pause", theirs.campaign_id),
        format!("/console/campaigns/{}/rotate-key", theirs.campaign_id),
    ] {
        let answer = http()
            .post(format!("{base}{action}"))
            .header(COOKIE, &cookie)
            .form_body(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{action}");
    }
    let answer = http()
        .post(format!("{base}/console/buyers/{their_buyer}/funds/add"))
        .header(COOKIE, &cookie)
        .form_body(&[("csrf", csrf.as_str()), ("amount", "10.00"), ("key", "k-1")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    let (status, contract) = app
        .admin(
            Method::GET,
            &format!("/v1/admin/contracts/{their_contract}"),
            &theirs.admin_key,
            None,
        )
        .await;
    assert_eq!((status, contract["status"].as_str()), (200, Some("active")));
    assert_eq!(theirs.buyer_books(their_buyer).await, (100_000, 100_000));
    let (status, ping) = app
        .ping(&theirs.posting_key, json!({ "lead": ping_lead() }))
        .await;
    assert_eq!(
        (status, ping["status"].as_str()),
        (200, Some("bids")),
        "their key still works"
    );
}
