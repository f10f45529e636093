//! Partners' form posts (`application/x-www-form-urlencoded`) to `/v1/ping`, `/v1/post` and
//! `/v1/leads`, their `sub_ids`, and what the operator sees of buyers' own answers in
//! `GET /v1/admin/pings/{id}`; buyers are real HTTP servers on 127.0.0.1.

use serde_json::{Value, json};
use sqlx::PgPool;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fixtures::{ContractSpec, Exchange, outcome_of};
use crate::harness::{TestApp, spawn_app};

/// `text` percent-encoded as a browser's form does (a space as `+`).
fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// POSTs a form body to `route` with `key` as bearer; the status and the JSON answer.
async fn send_form(app: &TestApp, route: &str, key: &str, body: String) -> (u16, Value) {
    let response = app
        .client
        .post(app.url(route))
        .bearer_auth(key)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A delivery endpoint accepting every lead at `route`.
async fn accepting_buyer(server: &MockServer, route: &str) -> Value {
    Mock::given(method("POST"))
        .and(path(route))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "status": "accepted", "message": "thanks" })),
        )
        .mount(server)
        .await;
    json!({ "url": format!("{}{route}", server.uri()), "timeout_ms": 2000,
            "accept": { "path": "/status", "equals": "accepted" } })
}

/// A value with every character a form must escape, and more.
const HOSTILE: &str = "Ada & Bob = \"<x>\" + 100% é ✓ 🚀\nline";

/// The problem's first error: (status, code, pointer).
fn first_error(status: u16, problem: &Value) -> (u16, &str, &str) {
    (
        status,
        problem["code"].as_str().unwrap_or_default(),
        problem["errors"][0]["pointer"].as_str().unwrap_or_default(),
    )
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_form_ping_post_and_direct_post_sell_leads_delivered_intact(pool: PgPool) {
    let exchange = Exchange::create(&pool, "hybrid").await;
    let buyers = MockServer::start().await;
    let delivery = accepting_buyer(&buyers, "/leads").await;
    let (_, contract) = exchange
        .buyer_with(
            100_000,
            ContractSpec {
                delivery: Some(delivery),
                ..ContractSpec::fixed(Some(4000), Some(1250))
            },
        )
        .await;
    let app = spawn_app(pool.clone()).await;
    let key = &exchange.posting_key;

    // A seller's flat form: every value typed by the offer's schema.
    let ping_form = form(&[
        ("state", "TX"),
        ("zip", "75001"),
        ("age", "42"),
        ("homeowner", "yes"),
        ("credit", "good"),
        ("sub_ids[source]", "google"),
        ("sub_ids[click]", "c-1"),
        ("test", "false"),
    ]);
    let (status, ping) = send_form(&app, "/v1/ping", key, ping_form).await;
    assert_eq!(
        (status, ping["status"].as_str()),
        (200, Some("bids")),
        "{ping}"
    );
    let ping_id = ping["ping_id"].as_str().unwrap().to_owned();

    // Its post: nested keys, flat consent keys, the ping's bid, a hostile name.
    let post_form = form(&[
        ("posting_key", key),
        ("ping_id", &ping_id),
        ("bid_ids", ping["bids"][0]["bid_id"].as_str().unwrap()),
        ("lead[state]", "TX"),
        ("lead[zip]", "75001"),
        ("lead[age]", "42"),
        ("lead[homeowner]", "1"),
        ("lead[credit]", "good"),
        ("lead[first_name]", HOSTILE),
        ("lead[email]", "ada@example.com"),
        ("lead[phone]", "(214) 555-0123"),
        ("last_name", ""),
        (
            "trustedform_cert_url",
            "https://cert.trustedform.com/2a6b?a=1&b=2",
        ),
        ("consented_at", "2026-11-25T17:04:12+01:00"),
        ("consent[landing]", "b"),
        ("sellers", "Acme, Inc."),
        ("sellers", "Beta"),
    ]);
    let response = app
        .client
        .post(app.url("/v1/post"))
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=UTF-8",
        )
        .body(post_form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("sold")),
        "{answer}"
    );

    let received = buyers.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    let delivered: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(
        delivered["lead"],
        json!({ "state": "TX", "zip": "75001", "age": 42, "homeowner": true, "credit": "good",
                "first_name": HOSTILE, "email": "ada@example.com", "phone": "(214) 555-0123" })
    );
    assert_eq!(
        delivered["consent"],
        json!({ "trustedform_cert_url": "https://cert.trustedform.com/2a6b?a=1&b=2",
                "consented_at": "2026-11-25T17:04:12+01:00", "landing": "b",
                "sellers": ["Acme, Inc.", "Beta"] })
    );

    // The operator sees the ping's sub-ids and the sale's delivery in the buyer's words.
    let (_, view) = app.ping_view(&exchange.admin_key, &ping_id).await;
    assert_eq!(
        view["sub_ids"],
        json!({ "source": "google", "click": "c-1" })
    );
    let sale = &outcome_of(&view, contract)["sale"];
    assert_eq!(sale["status"], "sold", "{view}");
    assert_eq!(sale["buyer_http_status"], 200);
    let said: Value = serde_json::from_str(sale["buyer_response"].as_str().unwrap()).unwrap();
    assert_eq!(said, json!({ "status": "accepted", "message": "thanks" }));
    assert!(
        sale["delivery_ms"].as_i64().is_some_and(|ms| ms >= 0),
        "{sale}"
    );

    // A direct post as a form: another consumer, sold at once.
    let direct_form = form(&[
        ("state", "TX"),
        ("zip", "75001"),
        ("first_name", "Grace"),
        ("email", "grace@example.com"),
        ("phone", "2145550199"),
        ("min_payout", "1.50"),
        ("ip", "2001:db8::7"),
        ("sub_ids[source]", "bing"),
    ]);
    let (status, direct) = send_form(&app, "/v1/leads", key, direct_form).await;
    assert_eq!(
        (status, direct["status"].as_str()),
        (200, Some("sold")),
        "{direct}"
    );
    let received = buyers.received_requests().await.unwrap();
    assert_eq!(received.len(), 2);
    let delivered: Value = serde_json::from_slice(&received[1].body).unwrap();
    assert_eq!(delivered["lead"]["first_name"], "Grace");
    assert_eq!(delivered["consent"], json!({ "ip": "2001:db8::7" }));
    let (_, view) = app
        .ping_view(&exchange.admin_key, direct["ping_id"].as_str().unwrap())
        .await;
    assert_eq!(view["sub_ids"], json!({ "source": "bing" }));
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn form_values_that_do_not_fit_are_refused_at_their_pointer(pool: PgPool) {
    let exchange = Exchange::create(&pool, "hybrid").await;
    exchange
        .buyer_with(100_000, ContractSpec::fixed(Some(4000), None))
        .await;
    let app = spawn_app(pool.clone()).await;
    let key = &exchange.posting_key;
    let base = [("state", "TX"), ("zip", "75001")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut pairs = base.to_vec();
        pairs.extend_from_slice(extra);
        form(&pairs)
    };

    let (status, problem) = send_form(&app, "/v1/ping", key, with(&[("age", "4x")])).await;
    assert_eq!(
        first_error(status, &problem),
        (422, "invalid_field", "/lead/age")
    );
    let (status, problem) = send_form(&app, "/v1/ping", key, with(&[("age", "42.5")])).await;
    assert_eq!(
        first_error(status, &problem),
        (422, "invalid_field", "/lead/age")
    );
    let (status, problem) = send_form(&app, "/v1/ping", key, with(&[("homeowner", "maybe")])).await;
    assert_eq!(
        first_error(status, &problem),
        (422, "invalid_field", "/lead/homeowner")
    );
    let (status, problem) = send_form(&app, "/v1/ping", key, with(&[("test", "sure")])).await;
    assert_eq!(
        first_error(status, &problem),
        (422, "invalid_field", "/test")
    );
    let (status, problem) =
        send_form(&app, "/v1/ping", key, with(&[("min_payout", "1.234")])).await;
    assert_eq!(
        first_error(status, &problem),
        (422, "invalid_field", "/min_payout")
    );
    let (status, problem) = send_form(&app, "/v1/ping", key, with(&[("color", "red")])).await;
    assert_eq!(
        first_error(status, &problem),
        (422, "unknown_field", "/lead/color")
    );
    // A required field left empty is missing.
    let (status, problem) =
        send_form(&app, "/v1/ping", key, form(&[("state", "TX"), ("zip", "")])).await;
    assert_eq!(
        first_error(status, &problem),
        (422, "invalid_field", "/lead/zip")
    );

    // PII in a form ping, flat or nested, is refused, without its value in the answer.
    for email_key in ["email", "lead[email]"] {
        let body = form(&[
            ("state", "TX"),
            ("zip", "75001"),
            (email_key, "ada@example.com"),
        ]);
        let (status, problem) = send_form(&app, "/v1/ping", key, body).await;
        assert_eq!(
            first_error(status, &problem),
            (422, "pii_in_ping", "/lead/email")
        );
        assert!(!problem.to_string().contains("ada@"), "{problem}");
    }

    // A post's consent is checked as a JSON one is.
    let body = form(&[
        ("state", "TX"),
        ("zip", "75001"),
        ("first_name", "Ada"),
        ("email", "ada@example.com"),
        ("phone", "2145550123"),
        ("ip", "not-an-ip"),
    ]);
    let (status, problem) = send_form(&app, "/v1/leads", key, body).await;
    assert_eq!(
        first_error(status, &problem),
        (422, "invalid_field", "/consent/ip")
    );

    // Other types stay unsupported; a form that is not UTF-8 is malformed.
    let response = app
        .client
        .post(app.url("/v1/ping"))
        .bearer_auth(key)
        .header("content-type", "text/plain")
        .body(with(&[]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let (status, problem) = send_form(&app, "/v1/ping", key, "state=%FF".to_owned()).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("bad_request"))
    );
    // The body limit applies to forms too.
    let huge = format!("state=TX&zip={}", "9".repeat(200_000));
    let (status, _) = send_form(&app, "/v1/ping", key, huge).await;
    assert_eq!(status, 413);
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn sub_ids_are_checked_kept_with_the_ping_and_shown_to_the_operator(pool: PgPool) {
    let exchange = Exchange::create(&pool, "hybrid").await;
    exchange
        .buyer_with(100_000, ContractSpec::fixed(Some(4000), None))
        .await;
    let app = spawn_app(pool.clone()).await;
    let key = &exchange.posting_key;
    let lead = json!({ "state": "TX", "zip": "75001" });

    let sub_ids = json!({ "aff": "a-17", "s2": "campaign ünïcode & more" });
    let (status, ping) = app
        .ping(key, json!({ "lead": lead, "sub_ids": sub_ids }))
        .await;
    assert_eq!(status, 200, "{ping}");
    let (_, view) = app
        .ping_view(&exchange.admin_key, ping["ping_id"].as_str().unwrap())
        .await;
    assert_eq!(view["sub_ids"], sub_ids);

    // Without sub_ids: none shown.
    let (_, ping) = app.ping(key, json!({ "lead": lead })).await;
    let (_, view) = app
        .ping_view(&exchange.admin_key, ping["ping_id"].as_str().unwrap())
        .await;
    assert_eq!(view["sub_ids"], Value::Null);

    // Bounds: at most 10 keys of at most 64 characters, string values of at most 256.
    let eleven: serde_json::Map<String, Value> =
        (0..11).map(|i| (format!("k{i}"), json!("v"))).collect();
    let long_key = "x".repeat(65);
    let mut long_key_ids = serde_json::Map::new();
    long_key_ids.insert(long_key.clone(), json!("v"));
    let refused = [
        (json!(eleven), "/sub_ids".to_owned()),
        (Value::Object(long_key_ids), format!("/sub_ids/{long_key}")),
        (
            json!({ "long": "v".repeat(257) }),
            "/sub_ids/long".to_owned(),
        ),
        (json!({ "num": 7 }), "/sub_ids/num".to_owned()),
        (json!(["a"]), "/sub_ids".to_owned()),
    ];
    for (sub_ids, pointer) in refused {
        let (status, problem) = app
            .ping(key, json!({ "lead": lead, "sub_ids": sub_ids }))
            .await;
        assert_eq!(
            first_error(status, &problem),
            (422, "invalid_field", pointer.as_str()),
            "{sub_ids}"
        );
    }
    // A post may send its own; the direct post too.
    let (status, problem) = app
        .post(
            key,
            json!({ "ping_id": ping["ping_id"], "lead": lead, "sub_ids": { "bad": 1 } }),
        )
        .await;
    assert_eq!(
        first_error(status, &problem),
        (422, "invalid_field", "/sub_ids/bad")
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn an_rtb_buyer_answering_garbage_is_shown_in_its_own_words(pool: PgPool) {
    let exchange = Exchange::create(&pool, "multisell").await;
    let buyers = MockServer::start().await;
    let rtb = |route: &str, response: ResponseTemplate| {
        let server = &buyers;
        let route = route.to_owned();
        async move {
            Mock::given(method("POST"))
                .and(path(route.clone()))
                .respond_with(response)
                .mount(server)
                .await;
            ContractSpec::rtb(format!("{}{route}", server.uri()), 1000)
        }
    };
    let garbage = "<html>Bad gateway\u{0}é</html>".to_owned() + &"x".repeat(5000);
    let (_, invalid) = exchange
        .buyer_with(
            100_000,
            rtb(
                "/garbage",
                ResponseTemplate::new(200).set_body_raw(garbage.clone().into_bytes(), "text/html"),
            )
            .await,
        )
        .await;
    let (_, no_bid) = exchange
        .buyer_with(
            100_000,
            rtb(
                "/no-bid",
                ResponseTemplate::new(200).set_body_json(json!({ "shared_bid": 0, "why": "full" })),
            )
            .await,
        )
        .await;
    let (_, error) = exchange
        .buyer_with(
            100_000,
            rtb(
                "/down",
                ResponseTemplate::new(503).set_body_string("maintenance until 6"),
            )
            .await,
        )
        .await;
    let (_, bidder) = exchange
        .buyer_with(
            100_000,
            rtb(
                "/bid",
                ResponseTemplate::new(200).set_body_json(json!({ "shared_bid": 12.5 })),
            )
            .await,
        )
        .await;
    let app = spawn_app(pool.clone()).await;

    let body = form(&[("state", "TX"), ("zip", "75001"), ("age", "42")]);
    let (status, ping) = send_form(&app, "/v1/ping", &exchange.posting_key, body).await;
    assert_eq!(
        (status, ping["status"].as_str()),
        (200, Some("bids")),
        "{ping}"
    );
    let (_, view) = app
        .ping_view(&exchange.admin_key, ping["ping_id"].as_str().unwrap())
        .await;

    let invalid = outcome_of(&view, invalid);
    assert_eq!(invalid["reason"], "rtb_invalid", "{view}");
    assert_eq!(invalid["rtb_http_status"], 200);
    let kept = invalid["rtb_response"].as_str().unwrap();
    // Cleaned (no NUL) and bounded at 4 KB.
    assert!(kept.starts_with("<html>Bad gatewayé</html>xxx"), "{kept}");
    assert_eq!(kept.len(), 4096);
    assert!(invalid["rtb_ms"].as_i64().is_some());

    let no_bid = outcome_of(&view, no_bid);
    assert_eq!(no_bid["reason"], "rtb_no_bid", "{view}");
    assert_eq!(no_bid["rtb_http_status"], 200);
    let said: Value = serde_json::from_str(no_bid["rtb_response"].as_str().unwrap()).unwrap();
    assert_eq!(said, json!({ "shared_bid": 0, "why": "full" }));

    let error = outcome_of(&view, error);
    assert_eq!(
        (
            error["reason"].as_str(),
            &error["rtb_http_status"],
            error["rtb_response"].as_str()
        ),
        (Some("rtb_error"), &json!(503), Some("maintenance until 6")),
        "{view}"
    );

    // A bid keeps no answer.
    let bidder = outcome_of(&view, bidder);
    assert_eq!(bidder["outcome"], "won", "{view}");
    assert_eq!(
        (&bidder["rtb_http_status"], &bidder["rtb_response"]),
        (&Value::Null, &Value::Null)
    );
}
