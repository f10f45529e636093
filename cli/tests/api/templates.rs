//! Request templates (docs/buyer-integrations.md, `request`): what real buyers on 127.0.0.1
//! receive in each format, at the ping (the RTB call) and at the post (the delivery); the
//! checks made when a contract is saved.

use std::collections::HashMap;

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::fixtures::{ContractSpec, Exchange, consent, full_lead, outcome_of, ping_lead};
use crate::harness::spawn_app;

/// Text a hostile seller might send: quotes, markup, entities, a newline, form separators,
/// unicode.
const HOSTILE: &str = "O\"Brien <b>&amp;</b> & co\nline 2 = x&y=1 % + é ☃";

/// The ping lead with a free-text, non-PII field holding hostile text.
fn hostile_ping_lead() -> Value {
    let mut lead = ping_lead();
    lead["comment"] = json!(HOSTILE);
    lead
}

fn hostile_full_lead() -> Value {
    let mut lead = full_lead();
    lead["comment"] = json!(HOSTILE);
    lead["last_name"] = json!(HOSTILE);
    lead
}

/// The demo offer with a free-text `comment`, in multisell mode so that every buyer buys.
async fn exchange(pool: &PgPool) -> Exchange {
    let exchange = Exchange::create(pool, "multisell").await;
    let mut fields = crate::fixtures::offer_fields();
    fields
        .as_array_mut()
        .unwrap()
        .push(json!({ "name": "comment", "type": "string" }));
    sqlx::query("UPDATE offers SET max_buyers = 10, fields = $2 WHERE id = $1")
        .bind(exchange.offer_id)
        .bind(fields)
        .execute(pool)
        .await
        .unwrap();
    exchange
}

/// A buyer's two endpoints: `/bid` answers a shared bid with its reference, `/lead` accepts.
async fn buyer_server(reference: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path("/bid"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "shared_bid": "11.50", "ref": reference })),
        )
        .mount(&server)
        .await;
    Mock::given(path("/lead"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "status": "ok" })))
        .mount(&server)
        .await;
    server
}

/// The contract: an RTB call and a delivery to `server`, each with its `request` (or none).
fn contract(server: &MockServer, rtb: Option<Value>, delivery: Option<Value>) -> ContractSpec {
    let mut pricing = json!({ "type": "rtb", "url": format!("{}/bid?src=gavel", server.uri()),
                              "timeout_ms": 1500, "headers": { "X-Key": "rtb-secret" } });
    if let Some(request) = rtb {
        pricing["request"] = request;
    }
    let mut delivery_config = json!({ "url": format!("{}/lead?src=gavel", server.uri()),
                                      "timeout_ms": 1500, "headers": { "X-Key": "lead-secret" } });
    if let Some(request) = delivery {
        delivery_config["request"] = request;
    }
    ContractSpec {
        pricing: Some(pricing),
        delivery: Some(delivery_config),
        ..Default::default()
    }
}

/// The one request `server` received at `route`.
async fn received(server: &MockServer, route: &str) -> Request {
    let all: Vec<Request> = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == route)
        .collect();
    assert_eq!(all.len(), 1, "{route}: {all:?}");
    all.into_iter().next().unwrap()
}

fn header<'r>(request: &'r Request, name: &str) -> &'r str {
    request
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

/// A form body's pairs, decoded as a form parser reads them.
fn form(bytes: &[u8]) -> HashMap<String, String> {
    let text = std::str::from_utf8(bytes).unwrap();
    reqwest::Url::parse(&format!("http://form.invalid/?{text}"))
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn query(request: &Request) -> HashMap<String, String> {
    request.url.query_pairs().into_owned().collect()
}

/// The text of `<name>…</name>` in `xml`, entities decoded (what an XML parser reads back).
fn xml_text(xml: &str, name: &str) -> String {
    let open = format!("<{name}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{name}> in {xml}"))
        + open.len();
    let end = start + xml[start..].find(&format!("</{name}>")).unwrap();
    let raw = &xml[start..end];
    assert!(!raw.contains('<'), "unescaped markup in <{name}>: {raw}");
    let mut text = String::new();
    let mut rest = raw;
    while let Some(at) = rest.find('&') {
        text.push_str(&rest[..at]);
        let semi = rest[at..].find(';').unwrap() + at;
        let entity = &rest[at + 1..semi];
        text.push(match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            numeric => char::from_u32(numeric.trim_start_matches('#').parse().unwrap()).unwrap(),
        });
        rest = &rest[semi + 1..];
    }
    text.push_str(rest);
    text
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn buyers_receive_each_format_in_both_calls_with_hostile_values_intact(pool: PgPool) {
    let exchange = exchange(&pool).await;
    let (json_buyer, form_buyer, xml_buyer, query_buyer, native_buyer, broken_buyer) = (
        buyer_server("ref-json").await,
        buyer_server("ref-form").await,
        buyer_server("ref-xml").await,
        buyer_server("ref-query").await,
        buyer_server("ref-native").await,
        buyer_server("ref-broken").await,
    );
    let json_spec = contract(
        &json_buyer,
        Some(json!({
            "headers": { "X-Ping": "ping-{{ ping_id }}" },
            "template": "{\"zip\": {{ lead.zip }}, \"age\": {{ lead.age }}, \"note\": {{ lead.comment }}, \
                         \"types\": {{ sale_types }}, \"tmax\": {{ tmax_ms }}, \"offer\": {{ offer.name }}, \
                         \"partner\": {{ partner.name }}, \"test\": {{ test }}}"
        })),
        Some(json!({
            "fields": {
                "FirstName": "lead.first_name",
                "LastName": "lead.last_name",
                "Phone": { "from": "lead.phone", "transform": ["digits", "phone:(###) ###-####"] },
                "EmailHash": { "from": "lead.email", "transform": ["trim", "lower", "sha256"] },
                "Credit": { "from": "lead.credit", "map": { "excellent": "A", "good": "B" }, "map_default": "C" },
                "applicant/zip": "lead.zip",
                "applicant/age": "lead.age",
                "Price": "price",
                "Ref": "rtb_ref",
                "LeadId": "lead_id",
                "Consent": "consent.text",
                "Source": { "value": "gavel" }
            }
        })),
    );
    let form_spec = contract(
        &form_buyer,
        Some(json!({ "format": "form",
                     "fields": { "Zip": "lead.zip", "Note": "lead.comment", "Offer": "offer.name" } })),
        Some(json!({ "method": "PUT", "format": "form",
                     "template": "first={{ lead.first_name }}&last={{ lead.last_name }}&price={{ price }}&ref={{ rtb_ref }}&type={{ sale_type }}" })),
    );
    let xml_spec = contract(
        &xml_buyer,
        Some(
            json!({ "format": "xml", "content_type": "text/xml; charset=utf-8",
                     "template": "<ping><zip>{{ lead.zip }}</zip><note>{{ lead.comment }}</note></ping>" }),
        ),
        Some(json!({ "format": "xml", "root": "Lead",
                     "fields": { "Name/First": "lead.first_name", "Name/Last": "lead.last_name",
                                 "Note": "lead.comment", "Price": "price" } })),
    );
    let query_spec = contract(
        &query_buyer,
        Some(json!({ "method": "GET", "format": "query",
                     "fields": { "zip": "lead.zip", "note": "lead.comment" } })),
        Some(json!({ "method": "GET", "format": "query",
                     "headers": { "X-Lead-Id": "{{ lead_id }}" },
                     "fields": { "last": "lead.last_name", "price": "price", "ref": "rtb_ref" } })),
    );
    let native_spec = contract(&native_buyer, None, None);
    // A request that cannot be rendered for this lead: no call, declined rtb_error.
    let broken_spec = contract(
        &broken_buyer,
        Some(json!({ "fields": { "Age": { "from": "lead.comment", "transform": ["number"] } } })),
        None,
    );
    let mut contracts = HashMap::new();
    for (name, spec) in [
        ("json", json_spec),
        ("form", form_spec),
        ("xml", xml_spec),
        ("query", query_spec),
        ("native", native_spec),
        ("broken", broken_spec),
    ] {
        contracts.insert(name, exchange.buyer_with(100_000, spec).await.1);
    }
    let app = spawn_app(pool.clone()).await;

    // The ping: every RTB call in its format.
    let (status, ping) = app
        .ping(
            &exchange.posting_key,
            json!({ "lead": hostile_ping_lead() }),
        )
        .await;
    assert_eq!(status, 200, "{ping}");
    assert_eq!(ping["bids"].as_array().unwrap().len(), 5, "{ping}");
    let ping_id = ping["ping_id"].as_str().unwrap().to_owned();

    let call = received(&json_buyer, "/bid").await;
    assert_eq!(call.method.as_str(), "POST");
    assert_eq!(header(&call, "content-type"), "application/json");
    assert_eq!(header(&call, "x-key"), "rtb-secret");
    assert_eq!(header(&call, "x-ping"), format!("ping-{ping_id}"));
    assert_eq!(call.url.query(), Some("src=gavel"));
    let body: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(
        body,
        json!({ "zip": "75001", "age": 42, "note": HOSTILE, "types": ["shared"], "tmax": 1500,
                "offer": "auto-insurance", "partner": "Quote Funnel", "test": false })
    );

    let call = received(&form_buyer, "/bid").await;
    assert_eq!(call.method.as_str(), "POST");
    assert_eq!(
        header(&call, "content-type"),
        "application/x-www-form-urlencoded"
    );
    let body = form(&call.body);
    assert_eq!(body["Note"], HOSTILE);
    assert_eq!(
        (body["Zip"].as_str(), body["Offer"].as_str()),
        ("75001", "auto-insurance")
    );

    let call = received(&xml_buyer, "/bid").await;
    assert_eq!(header(&call, "content-type"), "text/xml; charset=utf-8");
    let xml = String::from_utf8(call.body.clone()).unwrap();
    assert_eq!(xml_text(&xml, "note"), HOSTILE);
    assert_eq!(xml_text(&xml, "zip"), "75001");

    let call = received(&query_buyer, "/bid").await;
    assert_eq!(call.method.as_str(), "GET");
    assert!(call.body.is_empty() && call.headers.get("content-type").is_none());
    let params = query(&call);
    assert_eq!(params["src"], "gavel");
    assert_eq!(params["note"], HOSTILE);
    assert_eq!(params["zip"], "75001");

    // No request: Gavel's native bid request, unchanged.
    let call = received(&native_buyer, "/bid").await;
    assert_eq!(header(&call, "content-type"), "application/json");
    let body: Value = serde_json::from_slice(&call.body).unwrap();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["lead", "offer", "ping_id", "sale_types", "test", "tmax_ms"]
    );
    assert_eq!(body["lead"], hostile_ping_lead());

    // The broken one made no call and says why, without the lead's value.
    assert!(broken_buyer.received_requests().await.unwrap().is_empty());
    let (_, view) = app.ping_view(&exchange.admin_key, &ping_id).await;
    let broken = outcome_of(&view, contracts["broken"]);
    assert_eq!(broken["reason"], "rtb_error", "{broken}");
    let detail = broken["detail"].as_str().unwrap();
    assert!(detail.contains("could not be rendered"), "{detail}");
    assert!(!detail.contains("Brien"), "{detail}");

    // The post: every delivery in its format.
    let (status, answer) = app
        .post(
            &exchange.posting_key,
            json!({ "ping_id": ping_id, "lead": hostile_full_lead(), "consent": consent() }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 5, "{answer}");
    assert!(results.iter().all(|r| r["status"] == "sold"), "{answer}");
    let lead_id = answer["lead_id"].as_str().unwrap().to_owned();

    let call = received(&json_buyer, "/lead").await;
    assert_eq!(call.method.as_str(), "POST");
    assert_eq!(header(&call, "content-type"), "application/json");
    assert_eq!(header(&call, "x-key"), "lead-secret");
    let text = String::from_utf8(call.body.clone()).unwrap();
    assert!(text.contains(r#""Price":11.50"#), "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        body,
        json!({
            "FirstName": "Ada", "LastName": HOSTILE, "Phone": "(214) 555-0123",
            "EmailHash": gavel::integration::fields::sha256("ada@example.com"),
            "Credit": "B", "applicant": { "zip": "75001", "age": 42 }, "Price": 11.5,
            "Ref": "ref-json", "LeadId": lead_id, "Consent": consent()["text"], "Source": "gavel"
        })
    );

    let call = received(&form_buyer, "/lead").await;
    assert_eq!(call.method.as_str(), "PUT");
    assert_eq!(
        header(&call, "content-type"),
        "application/x-www-form-urlencoded"
    );
    let body = form(&call.body);
    assert_eq!(body.len(), 5, "{body:?}");
    assert_eq!(body["last"], HOSTILE);
    assert_eq!(
        (
            body["first"].as_str(),
            body["price"].as_str(),
            body["ref"].as_str(),
            body["type"].as_str()
        ),
        ("Ada", "11.50", "ref-form", "shared")
    );

    let call = received(&xml_buyer, "/lead").await;
    assert_eq!(header(&call, "content-type"), "application/xml");
    let xml = String::from_utf8(call.body.clone()).unwrap();
    assert!(
        xml.starts_with(r#"<?xml version="1.0" encoding="UTF-8"?><Lead>"#),
        "{xml}"
    );
    assert!(xml.contains("<Name><First>Ada</First><Last>"), "{xml}");
    assert_eq!(xml_text(&xml, "Last"), HOSTILE);
    assert_eq!(xml_text(&xml, "Note"), HOSTILE);
    assert_eq!(xml_text(&xml, "Price"), "11.50");

    let call = received(&query_buyer, "/lead").await;
    assert_eq!(call.method.as_str(), "GET");
    assert!(call.body.is_empty());
    assert_eq!(header(&call, "x-lead-id"), lead_id);
    let params = query(&call);
    assert_eq!(params["last"], HOSTILE);
    assert_eq!(
        (params["price"].as_str(), params["ref"].as_str()),
        ("11.50", "ref-query")
    );

    // No request: the native delivery, unchanged.
    let call = received(&native_buyer, "/lead").await;
    assert_eq!(header(&call, "content-type"), "application/json");
    let body: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(body["lead"], hostile_full_lead());
    assert_eq!(body["consent"], consent());
    assert_eq!(body["rtb_ref"], "ref-native");
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "consent",
            "lead",
            "lead_id",
            "offer",
            "ping_id",
            "price",
            "rtb_ref",
            "sale_type",
            "test"
        ]
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_delivery_that_cannot_be_rendered_fails_the_sale_without_a_call(pool: PgPool) {
    let exchange = exchange(&pool).await;
    let buyer = buyer_server("r").await;
    let spec = ContractSpec {
        pricing: Some(json!({ "type": "fixed", "shared_cents": 1000 })),
        delivery: Some(json!({ "url": format!("{}/lead", buyer.uri()),
            "request": { "fields": { "Phone": { "from": "lead.last_name", "transform": ["phone:###-###-####"] } } } })),
        ..Default::default()
    };
    exchange.buyer_with(100_000, spec).await;
    let app = spawn_app(pool.clone()).await;
    let (status, ping) = app
        .ping(
            &exchange.posting_key,
            json!({ "lead": hostile_ping_lead() }),
        )
        .await;
    assert_eq!(
        (status, ping["status"].as_str()),
        (200, Some("bids")),
        "{ping}"
    );
    let (status, answer) = app
        .post(
            &exchange.posting_key,
            json!({ "ping_id": ping["ping_id"], "lead": hostile_full_lead(), "consent": consent() }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let result = &answer["results"][0];
    assert_eq!(result["status"], "failed", "{answer}");
    let reason = result["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("could not be rendered"), "{answer}");
    assert!(!reason.contains("Brien"), "{answer}");
    assert!(buyer.received_requests().await.unwrap().is_empty());
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn templates_naming_pii_or_unknown_names_are_refused_when_saved(pool: PgPool) {
    let exchange = exchange(&pool).await;
    let buyer = exchange.buyer(0).await;
    let app = spawn_app(pool.clone()).await;
    let contract = |pricing_request: Value, delivery_request: Value| {
        json!({
            "buyer_id": buyer, "offer_id": exchange.offer_id, "name": "Templated",
            "pricing": { "type": "rtb", "url": "http://127.0.0.1:9/bid", "request": pricing_request },
            "delivery": { "url": "http://127.0.0.1:9/lead", "request": delivery_request },
        })
    };
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM contracts")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let cases = [
        (
            contract(
                json!({ "fields": { "Email": "lead.email", "Zip": "lead.zip" } }),
                json!({ "fields": { "Email": "lead.email" } }),
            ),
            vec!["/pricing/request/fields/Email"],
        ),
        (
            contract(
                json!({ "template": "{\"zip\": {{ lead.zip }}, \"n\": {{ lead.first_name }}}" }),
                json!({ "template": "{{ lead.shoe_size }}" }),
            ),
            vec!["/pricing/request/template", "/delivery/request/template"],
        ),
        (
            contract(
                json!({ "fields": { "P": "price", "C": { "from": "consent.ip" } } }),
                json!({ "fields": { "Phone": { "from": "lead.phone", "transform": ["phone:##"] } } }),
            ),
            vec![
                "/pricing/request/fields/C/from",
                "/pricing/request/fields/P",
                "/delivery/request/fields/Phone/transform/0",
            ],
        ),
        (
            contract(
                json!({ "method": "GET", "format": "json", "fields": {} }),
                json!({ "headers": { "Host": "evil.example" }, "template": "{% if %}" }),
            ),
            vec![
                "/pricing/request/method",
                "/delivery/request/headers/Host",
                "/delivery/request/template",
            ],
        ),
    ];
    for (body, expected) in cases {
        let (status, problem) = app
            .admin(
                Method::POST,
                "/v1/admin/contracts",
                &exchange.admin_key,
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, 422, "{body}: {problem}");
        assert_eq!(problem["code"], "invalid_config", "{problem}");
        let mut pointers: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["pointer"].as_str().unwrap())
            .collect();
        pointers.sort_unstable();
        let mut expected = expected;
        expected.sort_unstable();
        assert_eq!(pointers, expected, "{problem}");
        assert_eq!(count().await, 0, "nothing is written");
    }

    // A valid one is saved, and its request's header values are shown masked.
    let body = contract(
        json!({ "format": "form", "headers": { "X-Api-Key": "k_live_0123456789abcdefghijkl" },
                "fields": { "Zip": "lead.zip", "Partner": "partner.name" } }),
        json!({ "format": "xml", "fields": { "Email": "lead.email", "Price": "price" } }),
    );
    let (status, saved) = app
        .admin(
            Method::POST,
            "/v1/admin/contracts",
            &exchange.admin_key,
            Some(body),
        )
        .await;
    assert_eq!(status, 201, "{saved}");
    assert_eq!(
        saved["pricing"]["request"]["headers"]["X-Api-Key"],
        "••••ijkl"
    );
    assert_eq!(
        saved["delivery"]["request"]["fields"]["Email"],
        "lead.email"
    );
    assert_eq!(count().await, 1);
}
