//! The operator console's sign-in, session and CSRF protection (docs/console.md), in a real
//! headless Chromium and, for the cookie's and the form's details, over plain HTTP.

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use sqlx::PgPool;

use crate::browser::browser;
use crate::fixtures::Exchange;
use crate::harness::{spawn_app, spawn_app_with, test_settings};

/// A client that does not follow redirects (to see where the console sends it).
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A form's body, url-encoded.
pub fn form<K: AsRef<str>, V: AsRef<str>>(fields: &[(K, V)]) -> String {
    fields
        .iter()
        .map(|(k, v)| {
            let encode = gavel::console::view::url_encode;
            format!("{}={}", encode(k.as_ref()), encode(v.as_ref()))
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Adds a form's body to a request.
pub trait FormBody {
    fn form_body<K: AsRef<str>, V: AsRef<str>>(self, fields: &[(K, V)]) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form_body<K: AsRef<str>, V: AsRef<str>>(self, fields: &[(K, V)]) -> Self {
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(form(fields))
    }
}

/// The `name=value` of a `Set-Cookie` named `name`, and the whole header.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<(String, String)> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| (v.split(';').next().unwrap().to_owned(), v.to_owned()))
}

/// Signs in over plain HTTP: the session cookie (`gavel_console=…`) and the whole header.
pub async fn sign_in_http(base: &str, key: &str, headers: &[(&str, &str)]) -> (String, String) {
    let client = http();
    let page = client
        .get(format!("{base}/console/sign-in"))
        .send()
        .await
        .unwrap();
    let (sign_in_cookie, _) = set_cookie(&page, "gavel_console_sign_in").unwrap();
    let token = sign_in_cookie.split_once('=').unwrap().1.to_owned();
    let mut request = client
        .post(format!("{base}/console/sign-in"))
        .header(COOKIE, sign_in_cookie)
        .form_body(&[("key", key), ("csrf", &token), ("next", "/console/today")]);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let answer = request.send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    set_cookie(&answer, "gavel_console").expect("a session cookie")
}

/// The CSRF token of a signed-in page's forms.
pub async fn csrf_of(base: &str, cookie: &str) -> String {
    let page = http()
        .get(format!("{base}/console/today"))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with a csrf field")
        + 19;
    page[at..at + page[at..].find('"').unwrap()].to_owned()
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn an_operator_signs_in_with_the_admin_key_and_out_again(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let exchange = Exchange::create(&pool, "hybrid").await;
    let Some(browser) = browser("sign_in").await else {
        return;
    };
    let base = app.url("");

    // A console page without a session leads to the sign-in page, and back after it.
    browser.goto(&app.url("/console/today?range=7")).await;
    assert_eq!(browser.path().await, "/console/sign-in");
    browser.screenshot("sign-in").await;

    browser.fill("key", "ak_not-a-key").await;
    browser.click("Sign in").await;
    assert!(
        browser.text().await.contains("not an admin key"),
        "{}",
        browser.text().await
    );

    browser.fill("key", &exchange.admin_key).await;
    browser.click("Sign in").await;
    assert_eq!(browser.path().await, "/console/today");
    assert!(
        browser
            .client
            .current_url()
            .await
            .unwrap()
            .as_str()
            .ends_with("?range=7")
    );
    assert!(browser.text_of("header").await.contains("Test Exchange"));

    browser.click("Sign out").await;
    assert_eq!(browser.path().await, "/console/sign-in");
    browser.goto(&app.url("/console/today")).await;
    assert_eq!(
        browser.path().await,
        "/console/sign-in",
        "signed out for good"
    );

    // A form whose CSRF token was removed is refused, and does nothing.
    browser.sign_in(&base, &exchange.admin_key).await;
    assert_eq!(browser.path().await, "/console/today");
    browser
        .client
        .execute(
            "document.querySelectorAll('input[name=csrf]').forEach(e => e.remove())",
            vec![],
        )
        .await
        .unwrap();
    browser.click("Sign out").await;
    assert!(
        browser.text().await.contains("CSRF"),
        "{}",
        browser.text().await
    );
    browser.screenshot("csrf-refused").await;
    browser.goto(&app.url("/console/today")).await;
    assert_eq!(browser.path().await, "/console/today", "still signed in");
    browser.close().await;
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn the_session_cookie_is_http_only_strict_and_secure_over_https(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let exchange = Exchange::create(&pool, "hybrid").await;
    let base = app.url("");

    let (_, header) = sign_in_http(&base, &exchange.admin_key, &[]).await;
    assert!(
        header.contains("HttpOnly") && header.contains("SameSite=Strict"),
        "{header}"
    );
    assert!(
        header.contains("Path=/console") && !header.contains("Secure"),
        "{header}"
    );
    let (_, header) = sign_in_http(
        &base,
        &exchange.admin_key,
        &[("x-forwarded-proto", "https")],
    )
    .await;
    assert!(header.contains("; Secure"), "{header}");
    // The token is stored hashed: one session has the cookie's token's SHA-256, none its text.
    let (cookie, _) = sign_in_http(&base, &exchange.admin_key, &[]).await;
    let token = cookie.split_once('=').unwrap().1;
    let (hashed, plain): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE token_hash = sha256(convert_to($1, 'UTF8'))),
                count(*) FILTER (WHERE position(convert_to($1, 'UTF8') IN token_hash) > 0
                                    OR csrf_token = $1)
         FROM console_sessions",
    )
    .bind(token)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((hashed, plain), (1, 0));
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn forms_need_the_sessions_token_and_this_origin(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let exchange = Exchange::create(&pool, "hybrid").await;
    let base = app.url("");
    let (cookie, _) = sign_in_http(&base, &exchange.admin_key, &[]).await;
    let csrf = csrf_of(&base, &cookie).await;
    let sign_out = |form: Vec<(&'static str, String)>, origin: Option<&str>| {
        let mut request = http()
            .post(format!("{base}/console/sign-out"))
            .header(COOKIE, &cookie)
            .form_body(&form);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    let refused = sign_out(vec![], None).await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(
        refused.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let refused = sign_out(vec![("csrf", "x".repeat(32))], None)
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let refused = sign_out(vec![("csrf", csrf.clone())], Some("http://evil.example"))
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    // Still signed in after the refusals; the right token signs out.
    let page = http()
        .get(format!("{base}/console/today"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let origin = base.trim_end_matches('/').to_owned();
    let done = sign_out(vec![("csrf", csrf)], Some(&origin)).await.unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let page = http()
        .get(format!("{base}/console/today"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert!(
        page.headers()[LOCATION]
            .to_str()
            .unwrap()
            .starts_with("/console/sign-in")
    );

    // The sign-in form itself needs its own cookie's token.
    let answer = http()
        .post(format!("{base}/console/sign-in"))
        .form_body(&[
            ("key", exchange.admin_key.as_str()),
            ("csrf", &"y".repeat(32)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_session_ends_when_it_expires_or_its_key_is_revoked(pool: PgPool) {
    let mut settings = test_settings();
    settings.console_session_hours = 1;
    let app = spawn_app_with(pool.clone(), settings, axum::Router::new()).await;
    let exchange = Exchange::create(&pool, "hybrid").await;
    let base = app.url("");
    let status = |cookie: String| {
        let url = format!("{base}/console/today");
        async move {
            http()
                .get(url)
                .header(COOKIE, cookie)
                .send()
                .await
                .unwrap()
                .status()
        }
    };

    let (cookie, header) = sign_in_http(&base, &exchange.admin_key, &[]).await;
    assert!(header.contains("Max-Age=3600"), "{header}");
    assert_eq!(status(cookie.clone()).await, StatusCode::OK);
    sqlx::query("UPDATE console_sessions SET expires_at = now() - interval '1 second'")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(status(cookie).await, StatusCode::SEE_OTHER, "expired");

    let (cookie, _) = sign_in_http(&base, &exchange.admin_key, &[]).await;
    assert_eq!(status(cookie.clone()).await, StatusCode::OK);
    sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE tenant_id = $1")
        .bind(exchange.tenant_id)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(status(cookie).await, StatusCode::SEE_OTHER, "revoked key");
}

/// The demo as a new operator meets it: sign in with the key the demo printed, see the demo's
/// sale on Today, open its auction and read every contract's reason. The auction page's
/// screenshot is the README's (`GAVEL_UPDATE_SCREENSHOTS=1` writes it to
/// docs/console-auction.png).
#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn the_demos_sale_is_on_today_and_its_auction_reads_in_words(pool: PgPool) {
    let app = spawn_app_with(
        pool.clone(),
        test_settings(),
        gavel_cli::demo::buyer_endpoints(),
    )
    .await;
    let seeded = gavel_cli::demo::seed(&pool, app.address).await.unwrap();
    let printed = gavel_cli::demo::instructions(&seeded);
    assert!(
        printed.contains(&format!("{}/console", app.url(""))),
        "{printed}"
    );
    assert!(printed.contains(&seeded.admin_key));
    // The config listener picks the seed up within a second.
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;

    // The demo's printed ping and post.
    let lead = serde_json::json!({"state": "TX", "zip": "75001", "age": 42, "homeowner": true, "credit": "good"});
    let ping: serde_json::Value = app
        .client
        .post(app.url("/v1/ping"))
        .bearer_auth(&seeded.posting_key)
        .json(&serde_json::json!({ "lead": lead }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ping_id = ping["ping_id"].as_str().expect("a ping id").to_owned();
    let mut full = lead.clone();
    for (field, value) in [
        ("first_name", "Ada"),
        ("last_name", "Lovelace"),
        ("email", "ada@example.com"),
        ("phone", "2145550188"),
    ] {
        full[field] = value.into();
    }
    let post: serde_json::Value = app
        .client
        .post(app.url("/v1/post"))
        .bearer_auth(&seeded.posting_key)
        .json(&serde_json::json!({ "ping_id": ping_id, "lead": full,
            "consent": { "trustedform_cert_url": "https://cert.trustedform.com/demo",
                "text": "By clicking Submit I agree to be contacted.",
                "consented_at": "2026-11-25T17:04:12Z", "ip": "203.0.113.7" } }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(post["status"], "sold", "{post}");
    let explain: serde_json::Value = app
        .client
        .get(app.url(&format!("/v1/admin/pings/{ping_id}")))
        .bearer_auth(&seeded.admin_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let contracts = explain["contracts"].as_array().unwrap();
    assert!(contracts.len() >= 8, "{explain}");
    let revenue: i64 = contracts
        .iter()
        .filter(|c| c["sale"]["status"] == "sold")
        .map(|c| {
            gavel::money::Money::parse(
                &c["sale"]["price"].to_string(),
                gavel::money::ExtraDecimals::Reject,
            )
            .unwrap()
            .cents()
        })
        .sum();

    let Some(browser) = browser("demo").await else {
        return;
    };
    let base = app.url("");
    browser.goto(&app.url("/console")).await;
    assert_eq!(browser.path().await, "/console/sign-in");
    browser.fill("key", &seeded.admin_key).await;
    browser.click("Sign in").await;
    assert_eq!(browser.path().await, "/console/today");
    let today = browser.text().await;
    assert!(today.contains("Demo Lead Exchange"), "{today}");
    let shown = gavel::console::view::money(
        gavel::console::Amount(gavel::money::Money::from_cents(revenue)),
        "USD",
    );
    assert!(
        today.contains(&shown),
        "Today shows the sale's revenue {shown}: {today}"
    );
    browser.screenshot("today").await;

    browser.click("Auctions").await;
    let ping_link = format!("a[href='/console/auctions/{ping_id}']");
    browser
        .client
        .find(fantoccini::Locator::Css(&ping_link))
        .await
        .expect("the demo's ping is listed")
        .click()
        .await
        .unwrap();
    for _ in 0..100 {
        if browser.path().await == format!("/console/auctions/{ping_id}") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    browser.settle().await;
    // Every contract: its name, its buyer's, and a reason in words.
    let rows = browser
        .client
        .find_all(fantoccini::Locator::Css(
            "table.contracts tbody tr:not(.answer)",
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), contracts.len());
    for contract in contracts {
        let name = contract["contract_name"].as_str().unwrap();
        let mut found = false;
        for row in &rows {
            let text = row.text().await.unwrap();
            if text.starts_with(name) {
                found = true;
                let why = row
                    .find(fantoccini::Locator::Css("td.why"))
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                assert!(why.len() > 8, "{name}: no reason in words: {text}");
                assert!(
                    text.contains(contract["buyer_name"].as_str().unwrap()),
                    "{text}"
                );
            }
        }
        assert!(found, "{name} is not on the auction page");
    }
    let page = browser.text().await;
    assert!(page.contains("won the auction"), "{page}");
    assert!(
        !page.contains("ada@example.com"),
        "no PII on the auction page"
    );
    let shot = browser.screenshot_full("auction").await;
    if std::env::var_os("GAVEL_UPDATE_SCREENSHOTS").is_some() {
        let docs =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/console-auction.png");
        std::fs::copy(&shot, docs).unwrap();
    }
    let _ = base;
    browser.close().await;
}
