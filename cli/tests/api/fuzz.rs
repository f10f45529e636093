//! Property-based fuzzing of every JSON body Gavel reads (ping, post, direct post, admin
//! creates and patches, funds) through the real router and a real database: arbitrary JSON,
//! deep nesting, huge numbers, invalid UTF-8, NUL, duplicate keys and wrong content types.
//! No answer may be a 500 (a panic is caught as one), every error must be problem+json, and
//! no error (nor any partner answer) may repeat a submitted value: every generated string
//! carries a marker that no answer may contain.
//!
//! The cases are a fixed number per route from a fixed seed, so CI time is bounded and a
//! failure is reproducible; a failing case is printed whole.

use std::time::Instant;

use axum::body::Body;
use axum::http::{Method, Request};
use gavel::app::{AppState, router};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Map, Number, Value, json};
use sqlx::PgPool;
use tower::ServiceExt;
use uuid::Uuid;

use crate::fixtures::{ContractSpec, Exchange, consent, full_lead, ping_lead};
use crate::harness::test_settings;

/// In every generated string; never in an error or a partner's answer.
const MARKER: &str = "qZ7mk";

/// Cases per route (bounded CI time: about 2 s per route here); `GAVEL_FUZZ_CASES` and
/// `GAVEL_FUZZ_SEED` run more, or others, locally.
const CASES: usize = 250;

fn cases() -> usize {
    std::env::var("GAVEL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES)
}

fn seed_offset() -> u8 {
    std::env::var("GAVEL_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Field names the routes know, so that mutations reach past the unknown-field check.
const KEYS: &[&str] = &[
    "lead",
    "ping_id",
    "bid_ids",
    "consent",
    "dedup",
    "min_payout",
    "test",
    "state",
    "zip",
    "age",
    "email",
    "phone",
    "first_name",
    "name",
    "mode",
    "fields",
    "status",
    "amount",
    "note",
    "pricing",
    "type",
    "shared_cents",
    "exclusive_cents",
    "filters",
    "caps",
    "schedule",
    "delivery",
    "url",
    "headers",
    "timeout_ms",
    "payout_type",
    "payout_percent",
    "partner_id",
    "offer_id",
    "buyer_id",
    "max_buyers",
    "priority",
    "dedup_days",
    "email_sha256",
];

fn marked_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[ -~]{0,12}",
        any::<String>().prop_map(|s| s.chars().take(24).collect()),
    ]
    .prop_map(|s| format!("{MARKER}{s}"))
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(KEYS).prop_map(str::to_owned),
        1 => "[a-z_]{1,10}",
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        (-100_000i64..100_000).prop_map(|c| json!(c as f64 / 100.0)),
        marked_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            prop::collection::vec((key(), inner), 0..5)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// JSON text that `serde_json::Value` cannot hold or that Gavel must refuse, spliced in raw.
fn raw_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (1usize..400).prop_map(|n| format!("1{}", "0".repeat(n)).into_bytes()),
        Just(b"1e999".to_vec()),
        Just(b"-1e400".to_vec()),
        Just(b"1e-400".to_vec()),
        Just(b"-0".to_vec()),
        Just(b"18446744073709551616".to_vec()),
        Just(b"-9223372036854775809".to_vec()),
        Just(b"12.999999999999999999".to_vec()),
        (1usize..300).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes()),
        (1usize..300)
            .prop_map(|n| { format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n)).into_bytes() }),
        Just(format!("\"{MARKER}\\u0000\"").into_bytes()),
        Just(format!("\"{MARKER}\0raw\"").into_bytes()),
        Just(format!("\"{MARKER}\\ud800\"").into_bytes()),
        prop::collection::vec(128u8..=255, 1..4).prop_map(|bad| {
            let mut text = format!("\"{MARKER}").into_bytes();
            text.extend(bad);
            text.push(b'"');
            text
        }),
        Just(format!("{{\"a\": \"{MARKER}\", \"a\": \"{MARKER}\"}}").into_bytes()),
        Just(b"NaN".to_vec()),
        Just(b"tru".to_vec()),
    ]
}

/// What is done to a route's valid body.
#[derive(Debug, Clone)]
enum Mutation {
    /// The node at this index (in document order) becomes this value.
    Replace(usize, Value),
    /// The node at this index becomes this raw text.
    ReplaceRaw(usize, Vec<u8>),
    /// An object at this index gets this entry.
    Insert(usize, String, Value),
    /// An object at this index gets one of its keys again, with a marked value.
    Duplicate(usize, String),
    /// The whole body is this value.
    Whole(Value),
    /// The body cut at this fraction (‰) of its length.
    Truncate(usize),
    /// The body's bytes, with these bytes put at this fraction (‰) of its length.
    Splice(usize, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), arb_json()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        3 => (any::<usize>(), raw_value()).prop_map(|(i, v)| Mutation::ReplaceRaw(i, v)),
        2 => (any::<usize>(), key(), arb_json()).prop_map(|(i, k, v)| Mutation::Insert(i, k, v)),
        2 => (any::<usize>(), marked_string()).prop_map(|(i, s)| Mutation::Duplicate(i, s)),
        1 => arb_json().prop_map(Mutation::Whole),
        1 => (0usize..1000).prop_map(Mutation::Truncate),
        1 => (0usize..1000, prop::collection::vec(any::<u8>(), 1..6))
            .prop_map(|(at, bytes)| Mutation::Splice(at, bytes)),
    ]
}

fn content_type() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        12 => Just(Some("application/json")),
        1 => Just(Some("application/json; charset=utf-8")),
        1 => Just(Some("application/problem+json")),
        1 => Just(Some("text/plain")),
        1 => Just(Some("application/x-www-form-urlencoded")),
        1 => Just(Some("multipart/form-data; boundary=x")),
        1 => Just(None),
    ]
}

/// Every node of `value` in document order, as mutable references, by index.
fn node_at(value: &mut Value, index: usize) -> &mut Value {
    fn count(value: &Value) -> usize {
        1 + match value {
            Value::Array(items) => items.iter().map(count).sum(),
            Value::Object(map) => map.values().map(count).sum(),
            _ => 0,
        }
    }
    let mut index = index % count(value);
    let mut node = value;
    loop {
        if index == 0 {
            return node;
        }
        index -= 1;
        let children: Vec<&mut Value> = match node {
            Value::Array(items) => items.iter_mut().collect(),
            Value::Object(map) => map.values_mut().collect(),
            _ => unreachable!("a leaf has no children"),
        };
        let mut next = None;
        for child in children {
            let size = count(child);
            if index < size {
                next = Some(child);
                break;
            }
            index -= size;
        }
        node = next.expect("the index is within the tree");
    }
}

const RAW_SLOT: &str = "\u{1}raw-slot\u{1}";

/// The body's bytes after `mutation`.
fn apply(base: &Value, mutation: &Mutation) -> Vec<u8> {
    let mut body = base.clone();
    let splice_raw = |body: &Value, raw: &[u8]| {
        let text = serde_json::to_vec(body).unwrap();
        let slot = serde_json::to_vec(&Value::from(RAW_SLOT)).unwrap();
        let at = text
            .windows(slot.len())
            .position(|w| w == slot.as_slice())
            .unwrap();
        [&text[..at], raw, &text[at + slot.len()..]].concat()
    };
    match mutation {
        Mutation::Replace(index, value) => *node_at(&mut body, *index) = value.clone(),
        Mutation::ReplaceRaw(index, raw) => {
            *node_at(&mut body, *index) = Value::from(RAW_SLOT);
            return splice_raw(&body, raw);
        }
        Mutation::Insert(index, key, value) => {
            if let Value::Object(map) = node_at(&mut body, *index) {
                map.insert(key.clone(), value.clone());
            } else {
                *node_at(&mut body, *index) = json!({ key.clone(): value.clone() });
            }
        }
        Mutation::Duplicate(index, text) => {
            // A first copy of an existing key, written before the object's own entries.
            let node = node_at(&mut body, *index);
            let Some(first) = node.as_object().and_then(|m| m.keys().next().cloned()) else {
                return serde_json::to_vec(&body).unwrap();
            };
            let rest = std::mem::take(node);
            *node = Value::from(RAW_SLOT);
            let mut raw = format!("{{{}: {},", json!(first), json!(text)).into_bytes();
            raw.extend_from_slice(&serde_json::to_vec(&rest).unwrap()[1..]);
            if raw.ends_with(b",}") {
                raw.splice(raw.len() - 2.., *b"}");
            }
            return splice_raw(&body, &raw);
        }
        Mutation::Whole(value) => body = value.clone(),
        Mutation::Truncate(per_mille) => {
            let text = serde_json::to_vec(&body).unwrap();
            let at = text.len() * per_mille / 1000;
            return text[..at].to_vec();
        }
        Mutation::Splice(per_mille, bytes) => {
            let mut text = serde_json::to_vec(&body).unwrap();
            let at = text.len() * per_mille / 1000;
            text.splice(at..at, bytes.iter().copied());
            return text;
        }
    }
    serde_json::to_vec(&body).unwrap()
}

/// One route under fuzzing: its method, path, key, a valid body, and whether its success
/// answers may show what was sent (an admin resource shows its fields).
struct Route {
    method: Method,
    path: String,
    key: String,
    base: Value,
    success_shows_input: bool,
}

async fn call(
    app: &axum::Router,
    route: &Route,
    body: Vec<u8>,
    ct: Option<&str>,
) -> (u16, String, String) {
    let mut request = Request::builder()
        .method(route.method.clone())
        .uri(&route.path)
        .header("authorization", format!("Bearer {}", route.key));
    if let Some(ct) = ct {
        request = request.header("content-type", ct);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = format!("{:?}", response.headers());
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_owned())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 22)
        .await
        .unwrap();
    (
        status,
        content_type,
        format!("{headers}\n{}", String::from_utf8_lossy(&bytes)),
    )
}

async fn fuzz(app: &axum::Router, route: &Route, seed: u8) {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(
            RngAlgorithm::ChaCha,
            &[seed.wrapping_add(seed_offset()); 32],
        ),
    );
    let strategy = (mutation(), content_type());
    let started = Instant::now();
    let cases = cases();
    for _ in 0..cases {
        let (mutation, ct) = strategy.new_tree(&mut runner).unwrap().current();
        let body = apply(&route.base, &mutation);
        let (status, content_type, answer) = call(app, route, body.clone(), ct).await;
        let case = || {
            format!(
                "{} {} ({ct:?}) {}\n{mutation:?}\n=> {status} {answer}",
                route.method,
                route.path,
                String::from_utf8_lossy(&body)
            )
        };
        assert!(status < 500, "a server error:\n{}", case());
        if status >= 400 {
            assert_eq!(content_type, "application/problem+json", "{}", case());
        }
        if status >= 400 || !route.success_shows_input {
            assert!(
                !answer.contains(MARKER),
                "a submitted value echoed:\n{}",
                case()
            );
        }
    }
    eprintln!(
        "{} {}: {cases} cases in {:?}",
        route.method,
        route.path,
        started.elapsed()
    );
}

async fn fuzzed_app(pool: &PgPool) -> (axum::Router, Exchange, Uuid, Uuid) {
    let exchange = Exchange::create(pool, "multisell").await;
    let (buyer, contract) = exchange
        .buyer_with(10_000_000, ContractSpec::fixed(None, Some(1500)))
        .await;
    let state = AppState::build(pool.clone(), test_settings())
        .await
        .unwrap();
    (
        router(state, axum::Router::new()),
        exchange,
        buyer,
        contract,
    )
}

/// A JSON GET through the router.
async fn get(app: &axum::Router, key: &str, path: &str) -> Value {
    let request = Request::get(path)
        .header("authorization", format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    serde_json::from_slice(
        &axum::body::to_bytes(response.into_body(), 1 << 22)
            .await
            .unwrap(),
    )
    .unwrap()
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn fuzzed_partner_bodies_never_fail_badly_nor_echo(pool: PgPool) {
    let (app, exchange, _, _) = fuzzed_app(&pool).await;
    // A real ping with bids, so that posts are checked against it.
    let ping = Route {
        method: Method::POST,
        path: "/v1/ping".into(),
        key: exchange.posting_key.clone(),
        base: json!({ "lead": ping_lead(), "dedup": {}, "min_payout": 1.00, "test": false }),
        success_shows_input: false,
    };
    let (status, _, answer) = call(
        &app,
        &ping,
        serde_json::to_vec(&ping.base).unwrap(),
        Some("application/json"),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let ping_id = answer
        .split("\"ping_id\":\"")
        .nth(1)
        .and_then(|rest| rest.get(..36))
        .expect("the ping's id")
        .to_owned();
    let mut lead = full_lead();
    lead["email"] = json!("ada@example.com");
    let routes = [
        ping,
        Route {
            method: Method::POST,
            path: "/v1/post".into(),
            key: exchange.posting_key.clone(),
            base: json!({ "ping_id": ping_id, "lead": lead.clone(), "consent": consent() }),
            success_shows_input: false,
        },
        Route {
            method: Method::POST,
            path: "/v1/leads".into(),
            key: exchange.posting_key.clone(),
            base: json!({ "lead": lead, "consent": consent(), "test": true }),
            success_shows_input: false,
        },
    ];
    for (seed, route) in routes.iter().enumerate() {
        fuzz(&app, route, seed as u8 + 1).await;
    }
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn fuzzed_admin_bodies_never_fail_badly_nor_echo_in_errors(pool: PgPool) {
    let (app, exchange, buyer, contract) = fuzzed_app(&pool).await;
    let key = exchange.admin_key.clone();
    let list = uuid::Uuid::now_v7();
    sqlx::query("INSERT INTO suppression_lists (tenant_id, id, name) VALUES ($1, $2, 'DNC')")
        .bind(exchange.tenant_id)
        .bind(list)
        .execute(&pool)
        .await
        .unwrap();
    let mut routes = Vec::new();
    for (kind, id) in [
        ("partners", exchange.partner_id),
        ("buyers", buyer),
        ("offers", exchange.offer_id),
        ("campaigns", exchange.campaign_id),
        ("contracts", contract),
        ("suppression-lists", list),
    ] {
        let mut resource = get(&app, &key, &format!("/v1/admin/{kind}/{id}")).await;
        if let Value::Object(map) = &mut resource {
            for read_only in [
                "id",
                "created_at",
                "updated_at",
                "balance",
                "posting_key",
                "entry_count",
            ] {
                map.remove(read_only);
            }
            if let Some(name) = map.get_mut("name") {
                *name = json!(format!("{kind} fuzz"));
            }
        }
        routes.push(Route {
            method: Method::POST,
            path: format!("/v1/admin/{kind}"),
            key: key.clone(),
            base: resource.clone(),
            success_shows_input: true,
        });
        routes.push(Route {
            method: Method::PATCH,
            path: format!("/v1/admin/{kind}/{id}"),
            key: key.clone(),
            base: resource,
            success_shows_input: true,
        });
    }
    routes.push(Route {
        method: Method::POST,
        path: format!("/v1/admin/buyers/{buyer}/funds"),
        key: key.clone(),
        base: json!({ "amount": 12.5, "note": "wire 1123" }),
        success_shows_input: true,
    });
    // A list's entries: the values are hashed, never answered.
    routes.push(Route {
        method: Method::POST,
        path: format!("/v1/admin/suppression-lists/{list}/entries"),
        key: key.clone(),
        base: json!({ "emails": ["ada@example.com"], "phones": ["2145550123"],
                      "hashes": [hex::encode([7u8; 32])] }),
        success_shows_input: false,
    });
    for (seed, route) in routes.iter().enumerate() {
        fuzz(&app, route, seed as u8 + 10).await;
    }
}
