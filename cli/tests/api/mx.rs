//! The email `require_mx` rule (docs/validation.md) against a real DNS server on 127.0.0.1:
//! a small hand-written UDP responder that knows a few domains, counts the questions it is
//! asked, and stays silent for one of them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::net::UdpSocket;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fixtures::{ContractSpec, Exchange, consent, offer_fields, ping_lead};
use crate::harness::{TestApp, spawn_app_with, test_settings};

const MX: u16 = 15;
const A: u16 = 1;
const AAAA: u16 = 28;

/// What the test DNS server answers for a name (every type unless said).
#[derive(Clone, Copy)]
enum Zone {
    /// MX 10 mx.<name>.
    Mail,
    /// MX 0 . (RFC 7505).
    NullMx,
    /// No MX (NOERROR, empty), an A record.
    AddressOnly,
    /// NOERROR and nothing for any type.
    Nothing,
    /// SERVFAIL.
    ServFail,
    /// No answer at all.
    Silent,
}

/// A DNS server on 127.0.0.1 (UDP) answering from `zones`, NXDOMAIN for any other name.
struct TestDns {
    address: SocketAddr,
    /// Every question asked: (name without its final dot, lower-cased; type).
    questions: Arc<Mutex<Vec<(String, u16)>>>,
}

impl TestDns {
    async fn start(zones: &[(&str, Zone)]) -> TestDns {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = socket.local_addr().unwrap();
        let zones: HashMap<String, Zone> = zones
            .iter()
            .map(|(name, zone)| (name.to_string(), *zone))
            .collect();
        let questions = Arc::new(Mutex::new(Vec::new()));
        let asked = Arc::clone(&questions);
        tokio::spawn(async move {
            let mut buffer = [0u8; 1500];
            loop {
                let Ok((len, peer)) = socket.recv_from(&mut buffer).await else {
                    return;
                };
                let Some((name, qtype, question)) = parse_question(&buffer[..len]) else {
                    continue;
                };
                asked.lock().unwrap().push((name.clone(), qtype));
                if let Some(reply) = answer(&buffer[..len], &name, qtype, question, &zones) {
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
        });
        TestDns { address, questions }
    }

    /// How many questions of `qtype` named `name`.
    fn asked(&self, name: &str, qtype: u16) -> usize {
        self.questions
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, t)| n == name && *t == qtype)
            .count()
    }

    fn asked_any(&self, name: &str) -> usize {
        self.questions
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n == name)
            .count()
    }
}

/// The question's name (lower-cased, no final dot), type and the question's bytes.
fn parse_question(query: &[u8]) -> Option<(String, u16, &[u8])> {
    if query.len() < 12 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    Some((labels.join("."), qtype, query.get(12..at + 4)?))
}

/// A name in DNS wire form.
fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// The reply to a question, or `None` to stay silent.
fn answer(
    query: &[u8],
    name: &str,
    qtype: u16,
    question: &[u8],
    zones: &HashMap<String, Zone>,
) -> Option<Vec<u8>> {
    let mut records: Vec<(u16, Vec<u8>)> = Vec::new();
    let rcode = match zones.get(name) {
        None => 3, // NXDOMAIN
        Some(Zone::Silent) => return None,
        Some(Zone::ServFail) => 2,
        Some(Zone::Nothing) => 0,
        Some(Zone::Mail) => {
            if qtype == MX {
                let mut data = 10u16.to_be_bytes().to_vec();
                data.extend(encode_name(&format!("mx.{name}")));
                records.push((MX, data));
            }
            0
        }
        Some(Zone::NullMx) => {
            if qtype == MX {
                records.push((MX, vec![0, 0, 0]));
            }
            0
        }
        Some(Zone::AddressOnly) => {
            if qtype == A {
                records.push((A, vec![192, 0, 2, 25]));
            }
            0
        }
    };
    // Header: the query's id, QR + its RD + RA, the code; one question, the answers.
    let mut reply = vec![query[0], query[1], 0x80 | (query[2] & 0x01), 0x80 | rcode];
    reply.extend(1u16.to_be_bytes());
    reply.extend((records.len() as u16).to_be_bytes());
    reply.extend([0, 0, 0, 0]);
    reply.extend_from_slice(question);
    for (rtype, data) in records {
        reply.extend([0xC0, 0x0C]); // the question's name
        reply.extend(rtype.to_be_bytes());
        reply.extend(1u16.to_be_bytes()); // IN
        reply.extend(300u32.to_be_bytes());
        reply.extend((data.len() as u16).to_be_bytes());
        reply.extend(data);
    }
    Some(reply)
}

fn zones() -> Vec<(&'static str, Zone)> {
    vec![
        ("sells.example", Zone::Mail),
        ("burst.example", Zone::Mail),
        ("nullmx.example", Zone::NullMx),
        ("addressed.example", Zone::AddressOnly),
        ("bare.example", Zone::Nothing),
        ("broken.example", Zone::ServFail),
        ("silent.example", Zone::Silent),
    ]
}

/// The demo's fields with `require_mx` on the email.
fn fields_requiring_mx() -> Value {
    let mut fields = offer_fields();
    for field in fields.as_array_mut().unwrap() {
        if field["name"] == "email" {
            field["validation"] = json!({ "strict_syntax": true, "require_mx": true });
        }
    }
    fields
}

/// An exchange whose offer requires MX, one buyer that accepts every delivery, and Gavel
/// asking `dns` (when given) with a 400 ms timeout.
async fn exchange_and_app(pool: &PgPool, dns: Option<&TestDns>) -> (Exchange, MockServer, TestApp) {
    let exchange = Exchange::create(pool, "multisell").await;
    sqlx::query("UPDATE offers SET fields = $1 WHERE id = $2")
        .bind(fields_requiring_mx())
        .bind(exchange.offer_id)
        .execute(pool)
        .await
        .unwrap();
    let buyers = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/leads"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "status": "accepted" })))
        .mount(&buyers)
        .await;
    let spec = ContractSpec {
        delivery: Some(
            json!({ "url": format!("{}/leads", buyers.uri()), "timeout_ms": 2000,
                    "accept": { "path": "/status", "equals": "accepted" } }),
        ),
        ..ContractSpec::fixed(None, Some(1250))
    };
    exchange.buyer_with(1_000_000, spec).await;
    let mut settings = test_settings();
    if let Some(dns) = dns {
        settings.mx_lookup = true;
        settings.mx_nameservers = vec![dns.address.to_string()];
        settings.mx_timeout_ms = 400;
    }
    let app = spawn_app_with(pool.clone(), settings, axum::Router::new()).await;
    (exchange, buyers, app)
}

/// Pings, then posts the lead with `email` (a phone of its own, `n`): the post's status and
/// body as text.
async fn ping_and_post(app: &TestApp, key: &str, email: &str, n: u32) -> (u16, String) {
    let (status, ping) = app.ping(key, json!({ "lead": ping_lead() })).await;
    assert_eq!(
        (status, ping["status"].as_str()),
        (200, Some("bids")),
        "{ping}"
    );
    let mut lead = ping_lead();
    lead["first_name"] = json!("Ada");
    lead["email"] = json!(email);
    lead["phone"] = json!(format!("(214) 555-{:04}", 2000 + n));
    let body = json!({ "ping_id": ping["ping_id"], "lead": lead, "consent": consent() });
    let (status, _, text) = app.post_raw("/v1/post", key, &body).await;
    (status, text)
}

fn status_of(text: &str) -> Value {
    serde_json::from_str::<Value>(text).unwrap()["status"].clone()
}

async fn deliveries(buyers: &MockServer) -> usize {
    buyers.received_requests().await.unwrap().len()
}

async fn metric(app: &TestApp, series: &str) -> f64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_domain_without_mail_is_refused_at_the_post_and_one_with_mail_sells(pool: PgPool) {
    let dns = TestDns::start(&zones()).await;
    let (exchange, buyers, app) = exchange_and_app(&pool, Some(&dns)).await;
    let key = &exchange.posting_key;

    // A domain with an MX sells; the ping asked nothing (the email is PII: post only).
    let (status, text) = ping_and_post(&app, key, "ada@sells.example", 1).await;
    assert_eq!((status, status_of(&text)), (200, json!("sold")), "{text}");
    assert_eq!(deliveries(&buyers).await, 1);
    assert_eq!(dns.asked("sells.example", MX), 1);

    // A second post to the same domain (another address, another case) asks nothing more.
    let (status, text) = ping_and_post(&app, key, "grace@Sells.Example", 2).await;
    assert_eq!((status, status_of(&text)), (200, json!("sold")), "{text}");
    assert_eq!(dns.asked_any("sells.example"), 1, "the answer is kept");

    // A domain that does not exist, and one with the null MX: refused at the email's pointer,
    // with the new code, never echoing the address; no buyer is called.
    for (email, domain) in [
        ("ada.lovelace@nowhere.example", "nowhere.example"),
        ("ada.lovelace@nullmx.example", "nullmx.example"),
    ] {
        let (status, text) = ping_and_post(&app, key, email, 3).await;
        assert_eq!(status, 422, "{text}");
        let problem: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(problem["code"], "email_domain_unreachable", "{text}");
        assert_eq!(
            problem["errors"],
            json!([{ "pointer": "/lead/email", "code": "email_domain_unreachable" }])
        );
        assert!(
            !text.contains("lovelace") && !text.contains(domain),
            "{text}"
        );
        assert_eq!(dns.asked(domain, MX), 1, "{domain}");
    }
    // The null MX is not followed by an address look-up (RFC 7505).
    assert_eq!(dns.asked("nullmx.example", A), 0);
    assert_eq!(
        deliveries(&buyers).await,
        2,
        "no buyer called for a refused post"
    );

    // Refused again from the cache, without a question.
    let (status, _) = ping_and_post(&app, key, "someone@nowhere.example", 4).await;
    assert_eq!(status, 422);
    assert_eq!(dns.asked_any("nowhere.example"), 1);

    // No MX but an address: the implicit MX of RFC 5321 §5.1, so it sells. No MX and no
    // address: refused.
    let (status, text) = ping_and_post(&app, key, "ada@addressed.example", 5).await;
    assert_eq!((status, status_of(&text)), (200, json!("sold")), "{text}");
    assert_eq!(dns.asked("addressed.example", A), 1);
    let (status, text) = ping_and_post(&app, key, "ada@bare.example", 6).await;
    assert_eq!(status, 422, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["code"],
        "email_domain_unreachable"
    );
    assert_eq!(
        (
            dns.asked("bare.example", A),
            dns.asked("bare.example", AAAA)
        ),
        (1, 1),
        "both addresses asked before refusing"
    );

    // A burst of posts to a new domain, at once: one question.
    let mut posts = Vec::new();
    for n in 0..5 {
        let (status, ping) = app.ping(key, json!({ "lead": ping_lead() })).await;
        assert_eq!(status, 200, "{ping}");
        let mut lead = ping_lead();
        lead["first_name"] = json!("Ada");
        lead["email"] = json!(format!("buyer{n}@burst.example"));
        lead["phone"] = json!(format!("(214) 555-{:04}", 2100 + n));
        posts.push(json!({ "ping_id": ping["ping_id"], "lead": lead, "consent": consent() }));
    }
    let answers =
        futures::future::join_all(posts.iter().map(|body| app.post_raw("/v1/post", key, body)))
            .await;
    for (status, _, text) in answers {
        assert_eq!((status, status_of(&text)), (200, json!("sold")), "{text}");
    }
    assert_eq!(
        dns.asked_any("burst.example"),
        1,
        "one look-up for the burst"
    );

    // A direct post is checked before its auction.
    let mut lead = ping_lead();
    lead["first_name"] = json!("Ada");
    lead["email"] = json!("ada@nullmx.example");
    lead["phone"] = json!("(214) 555-2099");
    let (status, _, text) = app
        .post_raw(
            "/v1/leads",
            key,
            &json!({ "lead": lead, "consent": consent() }),
        )
        .await;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("email_domain_unreachable"), "{text}");
    assert_eq!(deliveries(&buyers).await, 8);
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_dns_that_fails_or_does_not_answer_passes_the_lead(pool: PgPool) {
    let dns = TestDns::start(&zones()).await;
    let (exchange, buyers, app) = exchange_and_app(&pool, Some(&dns)).await;
    let key = &exchange.posting_key;
    let series = "gavel_email_mx_checks_total{outcome=\"passed_open\"}";
    let passed_before = metric(&app, series).await;

    // The nameserver never answers: the post waits the 400 ms timeout, then sells.
    let started = Instant::now();
    let (status, text) = ping_and_post(&app, key, "ada@silent.example", 1).await;
    assert_eq!((status, status_of(&text)), (200, json!("sold")), "{text}");
    assert!(
        dns.asked("silent.example", MX) >= 1,
        "the question was asked"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );

    // The failure is kept a moment: the next post to the domain does not wait again.
    let asked = dns.asked_any("silent.example");
    let (status, text) = ping_and_post(&app, key, "grace@silent.example", 3).await;
    assert_eq!((status, status_of(&text)), (200, json!("sold")), "{text}");
    assert_eq!(dns.asked_any("silent.example"), asked);

    // SERVFAIL: the consumer is not at fault either.
    let (status, text) = ping_and_post(&app, key, "ada@broken.example", 2).await;
    assert_eq!((status, status_of(&text)), (200, json!("sold")), "{text}");
    assert_eq!(deliveries(&buyers).await, 3);
    assert!(
        metric(&app, series).await >= passed_before + 3.0,
        "both passes counted"
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn with_the_setting_off_the_rule_is_ignored(pool: PgPool) {
    let dns = TestDns::start(&zones()).await;
    // The setting off (the default): the offer's require_mx asks nothing, and the post sells.
    let (exchange, buyers, app) = exchange_and_app(&pool, None).await;
    let (status, text) = ping_and_post(&app, &exchange.posting_key, "ada@nowhere.example", 1).await;
    assert_eq!((status, status_of(&text)), (200, json!("sold")), "{text}");
    assert_eq!(deliveries(&buyers).await, 1);
    assert!(dns.questions.lock().unwrap().is_empty());
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn require_mx_on_a_field_that_is_not_an_email_is_refused_at_save(pool: PgPool) {
    let admin_key = gavel::store::tenants::create(&pool, "Rules", "America/New_York")
        .await
        .unwrap()
        .admin_key;
    let app = spawn_app_with(pool.clone(), test_settings(), axum::Router::new()).await;
    let mut fields = fields_requiring_mx();
    let phone = fields
        .as_array()
        .unwrap()
        .iter()
        .position(|field| field["name"] == "phone")
        .unwrap();
    fields[phone]["validation"] = json!({ "require_mx": true });
    let (status, problem) = app
        .admin(
            Method::POST,
            "/v1/admin/offers",
            &admin_key,
            Some(json!({ "name": "auto-insurance", "mode": "multisell", "fields": fields })),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["code"], "invalid_config");
    assert_eq!(
        problem["errors"][0]["pointer"],
        format!("/fields/{phone}/validation/require_mx")
    );

    // On the email field it is saved and shown back, whatever the server's setting.
    let (status, offer) = app
        .admin(
            Method::POST,
            "/v1/admin/offers",
            &admin_key,
            Some(json!({ "name": "auto-insurance", "mode": "multisell",
                         "fields": fields_requiring_mx() })),
        )
        .await;
    assert_eq!(status, 201, "{offer}");
    assert_eq!(offer["fields"], fields_requiring_mx());
}
