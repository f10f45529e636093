//! Response rules (docs/buyer-integrations.md, `response`): buyers answering XML, plain text
//! or their own JSON, read as accepted, duplicate or rejected at delivery, and as exact bids,
//! no-bids and references at the RTB call; buyers are real HTTP servers on 127.0.0.1.

use gavel::money::{ExtraDecimals, Money};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fixtures::{ContractSpec, Exchange, consent, full_lead, outcome_of, ping_lead};
use crate::harness::{TestApp, spawn_app};

fn cents(value: &Value) -> i64 {
    Money::from_json(value, ExtraDecimals::Reject)
        .unwrap_or_else(|e| panic!("{value}: {e}"))
        .cents()
}

/// A buyer endpoint at `route` answering `status` with `body` of `content_type`; returns the
/// contract's `delivery` with `response` rules.
async fn delivery_to(
    server: &MockServer,
    route: &str,
    answer: ResponseTemplate,
    response: Value,
) -> Value {
    Mock::given(method("POST"))
        .and(path(route))
        .respond_with(answer)
        .mount(server)
        .await;
    json!({ "url": format!("{}{route}", server.uri()), "timeout_ms": 1000, "response": response })
}

fn answering(status: u16, content_type: &str, body: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.as_bytes().to_vec(), content_type)
}

fn shared(cents: i64, delivery: Value) -> ContractSpec {
    ContractSpec {
        delivery: Some(delivery),
        ..ContractSpec::fixed(None, Some(cents))
    }
}

async fn ping_with_bids(app: &TestApp, key: &str) -> Value {
    let (status, answer) = app.ping(key, json!({ "lead": ping_lead() })).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("bids")),
        "{answer}"
    );
    answer
}

/// Posts the full lead for `ping`; returns the answer and its results as (status, reason),
/// highest price first.
async fn post(app: &TestApp, key: &str, ping: &Value) -> (Value, Vec<(String, String)>) {
    let body = json!({ "ping_id": ping["ping_id"], "lead": full_lead(), "consent": consent() });
    let (status, answer) = app.post(key, body).await;
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["status"].as_str().unwrap().to_owned(),
                r["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    (answer, results)
}

fn pair(status: &str, reason: &str) -> (String, String) {
    (status.to_owned(), reason.to_owned())
}

const XML_ACCEPTED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
  <soap:Body><PostResult xmlns="urn:buyer" status="Accepted"><LeadId>88121</LeadId></PostResult></soap:Body>
</soap:Envelope>"#;

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn xml_text_and_json_answers_are_read_as_accepted_by_their_rules(pool: PgPool) {
    let exchange = Exchange::create(&pool, "multisell").await;
    let buyers = MockServer::start().await;
    let xml = delivery_to(
        &buyers,
        "/xml",
        answering(200, "text/xml", XML_ACCEPTED),
        json!({ "format": "xml",
                "accepted": { "path": "/Envelope/Body/PostResult/@status", "equals": "Accepted" } }),
    )
    .await;
    let text = delivery_to(
        &buyers,
        "/text",
        answering(200, "text/plain", "OK|lead=5521"),
        json!({ "format": "text", "accepted": { "regex": "^(OK|ACCEPTED)\\|", "exists": true } }),
    )
    .await;
    let own_json = delivery_to(
        &buyers,
        "/json",
        answering(
            200,
            "application/json",
            r#"{"result":{"code":1,"state":"ok"}}"#,
        ),
        json!({ "accepted": { "path": "/result/code", "equals": "1" },
                "rejected": { "path": "/result/state", "in": ["error", "rejected"] } }),
    )
    .await;
    let mut buyer_ids = Vec::new();
    for (price, delivery) in [(1500, xml), (1400, text), (1300, own_json)] {
        let (buyer, _) = exchange.buyer_with(50_000, shared(price, delivery)).await;
        buyer_ids.push((buyer, price));
    }
    let app = spawn_app(pool.clone()).await;

    let ping = ping_with_bids(&app, &exchange.posting_key).await;
    let (answer, results) = post(&app, &exchange.posting_key, &ping).await;
    assert_eq!(answer["status"], "sold", "{answer}");
    assert_eq!(
        results,
        [pair("sold", ""), pair("sold", ""), pair("sold", "")]
    );
    for (buyer, price) in buyer_ids {
        assert_eq!(
            exchange.buyer_books(buyer).await,
            (50_000 - price, 50_000 - price),
            "each buyer charged its price"
        );
    }
    assert_eq!(buyers.received_requests().await.unwrap().len(), 3);
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_buyer_duplicate_ends_the_sale_duplicate_and_gives_everything_back(pool: PgPool) {
    let exchange = Exchange::create(&pool, "multisell").await;
    let buyers = MockServer::start().await;
    // A JSON answer saying duplicate, with the buyer's message.
    let said = delivery_to(
        &buyers,
        "/said",
        answering(
            200,
            "application/json",
            r#"{"result":"duplicate","message":"lead already on file"}"#,
        ),
        json!({ "accepted": { "path": "/result", "equals": "success" },
                "duplicate": { "path": "/result", "equals": "duplicate" },
                "reason": { "path": "/message" } }),
    )
    .await;
    // HTTP 409 means duplicate for this buyer.
    let conflict = delivery_to(
        &buyers,
        "/conflict",
        answering(409, "text/plain", "conflict"),
        json!({ "status": { "409": "duplicate", "4xx": "rejected" } }),
    )
    .await;
    // An XML rejection, its reason read at a path.
    let rejecting = delivery_to(
        &buyers,
        "/rejecting",
        answering(
            200,
            "application/xml",
            "<response><status>rejected</status><errors><error>no coverage</error><error>outside our area</error></errors></response>",
        ),
        json!({ "format": "xml",
                "accepted": { "path": "/response/status", "equals": "accepted" },
                "reason": { "path": "/response/errors/error[2]" } }),
    )
    .await;
    let capped = |price: i64, delivery: Value| ContractSpec {
        caps: Some(json!([{ "period": "day", "max_leads": 10 }])),
        ..shared(price, delivery)
    };
    let mut buyer_ids = Vec::new();
    for (price, delivery) in [(1500, said), (1400, conflict), (1300, rejecting)] {
        let (buyer, _) = exchange.buyer_with(50_000, capped(price, delivery)).await;
        buyer_ids.push(buyer);
    }
    let app = spawn_app(pool.clone()).await;

    let ping = ping_with_bids(&app, &exchange.posting_key).await;
    let (answer, results) = post(&app, &exchange.posting_key, &ping).await;
    assert_eq!(
        (answer["status"].as_str(), cents(&answer["payout"])),
        (Some("unsold"), 0),
        "{answer}"
    );
    assert_eq!(
        results,
        [
            pair("duplicate", "buyer: lead already on file"),
            pair("duplicate", "buyer: HTTP 409"),
            pair("rejected", "buyer: outside our area"),
        ]
    );
    // Nobody charged, every cap counter and hold given back.
    for buyer in buyer_ids {
        assert_eq!(exchange.buyer_books(buyer).await, (50_000, 50_000));
    }
    let counters: i64 = sqlx::query_scalar("SELECT count(*) FROM cap_counters")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(counters, 0, "the caps are given back");
    let stored: Vec<(String, Option<String>, Option<i32>)> = sqlx::query_as(
        "SELECT status, verdict, buyer_http_status FROM lead_sales WHERE tenant_id = $1 ORDER BY price_cents DESC",
    )
    .bind(exchange.tenant_id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        stored,
        [
            ("duplicate".to_owned(), None, Some(200)),
            ("duplicate".to_owned(), None, Some(409)),
            ("rejected".to_owned(), None, Some(200)),
        ]
    );
    // The operator sees the sale's status and the buyer's reason.
    let (_, view) = app
        .ping_view(&exchange.admin_key, ping["ping_id"].as_str().unwrap())
        .await;
    let sales: Vec<(&str, &str)> = view["contracts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["sale"]["status"].as_str().unwrap(),
                c["sale"]["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        sales.contains(&("duplicate", "buyer: lead already on file")),
        "{view}"
    );
}

/// A buyer's duplicate verdict is kept like any other when the sale cannot be settled at once,
/// and the sweep settles the sale `duplicate`, giving the hold back.
#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn the_sweep_settles_a_kept_duplicate_verdict_as_duplicate(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let buyers = MockServer::start().await;
    let delivery = delivery_to(
        &buyers,
        "/post",
        answering(
            409,
            "application/json",
            r#"{"error":"already have this consumer"}"#,
        ),
        json!({ "status": { "409": "duplicate" }, "reason": { "path": "/error" } }),
    )
    .await;
    let spec = ContractSpec {
        delivery: Some(delivery),
        ..ContractSpec::fixed(Some(4000), None)
    };
    let (buyer, _) = exchange.buyer_with(100_000, spec).await;
    // The database refuses to settle any sale as duplicate for now.
    let mut conn = pool.acquire().await.unwrap();
    for statement in [
        "CREATE FUNCTION refuse_duplicate() RETURNS trigger LANGUAGE plpgsql AS
         $$ BEGIN RAISE EXCEPTION 'cannot write now'; END $$",
        "CREATE TRIGGER refuse_duplicate BEFORE UPDATE ON lead_sales FOR EACH ROW
         WHEN (NEW.status = 'duplicate') EXECUTE FUNCTION refuse_duplicate()",
    ] {
        sqlx::query(statement).execute(&mut *conn).await.unwrap();
    }
    let app = spawn_app(pool.clone()).await;

    let ping = ping_with_bids(&app, &exchange.posting_key).await;
    let body = json!({ "ping_id": ping["ping_id"], "lead": full_lead(), "consent": consent() });
    let (status, answer) = app.post(&exchange.posting_key, body).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (202, Some("settling")),
        "{answer}"
    );
    let kept: (String, Option<String>, Option<String>) =
        sqlx::query_as("SELECT status, verdict, reason FROM lead_sales WHERE tenant_id = $1")
            .bind(exchange.tenant_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        kept,
        (
            "pending".to_owned(),
            Some("duplicate".to_owned()),
            Some("buyer: already have this consumer".to_owned())
        )
    );

    sqlx::query("DROP TRIGGER refuse_duplicate ON lead_sales")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE lead_sales SET pending_until = now() - interval '1 second' WHERE status = 'pending'",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    let swept = gavel::store::sales::release_interrupted(&pool, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(swept.len(), 1);
    let settled: (String, Option<String>) =
        sqlx::query_as("SELECT status, reason FROM lead_sales WHERE tenant_id = $1")
            .bind(exchange.tenant_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        settled,
        (
            "duplicate".to_owned(),
            Some("buyer: already have this consumer".to_owned())
        )
    );
    assert_eq!(exchange.buyer_books(buyer).await, (100_000, 100_000));
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_text_answer_is_rejected_with_the_reason_its_regex_finds(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let buyers = MockServer::start().await;
    let delivery = delivery_to(
        &buyers,
        "/post",
        answering(
            200,
            "text/plain",
            "status=ERROR&reason=Zip+not+covered&id=0",
        ),
        json!({ "format": "text",
                "accepted": { "regex": "status=(\\w+)", "equals": "OK" },
                "reason": { "regex": "reason=([^&]*)" } }),
    )
    .await;
    let spec = ContractSpec {
        delivery: Some(delivery),
        ..ContractSpec::fixed(Some(4000), None)
    };
    let (buyer, _) = exchange.buyer_with(100_000, spec).await;
    let app = spawn_app(pool.clone()).await;

    let ping = ping_with_bids(&app, &exchange.posting_key).await;
    let (answer, results) = post(&app, &exchange.posting_key, &ping).await;
    assert_eq!(answer["status"], "unsold");
    assert_eq!(results, [pair("rejected", "buyer: Zip+not+covered")]);
    assert_eq!(exchange.buyer_books(buyer).await, (100_000, 100_000));
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn rtb_buyers_answering_xml_json_and_text_are_read_exactly(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let rtb = MockServer::start().await;
    let answer_at = |route: &'static str, template: ResponseTemplate| {
        Mock::given(method("POST"))
            .and(path(route))
            .respond_with(template)
    };
    answer_at(
        "/xml",
        answering(
            200,
            "application/xml",
            r#"<?xml version="1.0"?><b:BidResponse xmlns:b="urn:buyer" id="R-981">
                 <b:Bid type="exclusive"><b:Amount>38.505</b:Amount></b:Bid></b:BidResponse>"#,
        ),
    )
    .mount(&rtb)
    .await;
    answer_at(
        "/json",
        answering(
            200,
            "application/json",
            r#"{"status":"no_bid","exclusive_bid":"90.00","why":"daily budget spent"}"#,
        ),
    )
    .mount(&rtb)
    .await;
    answer_at(
        "/text",
        answering(200, "text/plain", "ACCEPT bid=30.019 id=t-7"),
    )
    .mount(&rtb)
    .await;
    let pricing = |route: &str, response: Value| ContractSpec {
        pricing: Some(
            json!({ "type": "rtb", "url": format!("{}{route}", rtb.uri()),
                              "timeout_ms": 500, "response": response }),
        ),
        ..Default::default()
    };
    let buyers = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/leads"))
        .respond_with(answering(200, "text/xml", XML_ACCEPTED))
        .mount(&buyers)
        .await;
    let xml_delivery = json!({ "url": format!("{}/leads", buyers.uri()), "response": { "format": "xml",
        "accepted": { "path": "/Envelope/Body/PostResult/@status", "equals": "Accepted" } } });
    let (xml_buyer, xml_contract) = exchange
        .buyer_with(
            100_000,
            ContractSpec {
                delivery: Some(xml_delivery),
                ..pricing(
                    "/xml",
                    json!({ "format": "xml",
                            "exclusive_bid": { "path": "/BidResponse/Bid/Amount" },
                            "ref": { "path": "/BidResponse/@id" } }),
                )
            },
        )
        .await;
    let (_, json_contract) = exchange
        .buyer_with(
            100_000,
            pricing(
                "/json",
                json!({ "no_bid": { "path": "/status", "equals": "no_bid" },
                        "reason": { "path": "/why" } }),
            ),
        )
        .await;
    let (_, text_contract) = exchange
        .buyer_with(
            100_000,
            pricing(
                "/text",
                json!({ "format": "text",
                        "exclusive_bid": { "regex": "bid=([0-9.]+)" },
                        "ref": { "regex": "\\bid=(\\S+)" },
                        "no_bid": { "regex": "^DECLINE", "exists": true } }),
            ),
        )
        .await;
    let app = spawn_app(pool.clone()).await;

    let ping = ping_with_bids(&app, &exchange.posting_key).await;
    assert_eq!(cents(&ping["bids"][0]["payout"]), 2695, "70 % of 38.50");
    let (_, view) = app
        .ping_view(&exchange.admin_key, ping["ping_id"].as_str().unwrap())
        .await;
    let won = outcome_of(&view, xml_contract);
    assert_eq!(
        (won["outcome"].as_str(), cents(&won["exclusive_bid"])),
        (Some("won"), 3850),
        "38.505 read exactly, truncated to the cent: {view}"
    );
    let declined = outcome_of(&view, json_contract);
    assert_eq!(
        (declined["reason"].as_str(), declined["detail"].as_str()),
        (Some("rtb_no_bid"), Some("buyer: daily budget spent")),
        "{view}"
    );
    let outbid = outcome_of(&view, text_contract);
    assert_eq!(
        (outbid["outcome"].as_str(), cents(&outbid["exclusive_bid"])),
        (Some("outbid"), 3001),
        "{view}"
    );
    let refs: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT rtb_ref FROM lead_distribution WHERE ping_id = $1::uuid ORDER BY rtb_ref NULLS LAST",
    )
    .bind(ping["ping_id"].as_str().unwrap())
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        refs,
        [Some("R-981".to_owned()), Some("t-7".to_owned()), None]
    );

    // The winner's reference comes back on delivery, and its XML answer is read as accepted.
    let (answer, results) = post(&app, &exchange.posting_key, &ping).await;
    assert_eq!(answer["status"], "sold", "{answer}");
    assert_eq!(results, [pair("sold", "")]);
    let delivered = buyers.received_requests().await.unwrap();
    let body: Value = serde_json::from_slice(&delivered[0].body).unwrap();
    assert_eq!(
        (body["rtb_ref"].as_str(), cents(&body["price"])),
        (Some("R-981"), 3850)
    );
    assert_eq!(exchange.buyer_books(xml_buyer).await, (96_150, 96_150));
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn response_rules_are_checked_when_a_contract_is_saved(pool: PgPool) {
    let tenant = gavel::store::tenants::create(&pool, "Rules", "America/New_York")
        .await
        .unwrap();
    let key = tenant.admin_key;
    let app = spawn_app(pool.clone()).await;
    let created = |(status, answer): (u16, Value)| {
        assert_eq!(status, 201, "{answer}");
        answer["id"].as_str().unwrap().to_owned()
    };
    let offer = created(
        app.admin(
            Method::POST,
            "/v1/admin/offers",
            &key,
            Some(json!({ "name": "auto", "mode": "exclusive",
                         "fields": crate::fixtures::offer_fields() })),
        )
        .await,
    );
    let buyer = created(
        app.admin(
            Method::POST,
            "/v1/admin/buyers",
            &key,
            Some(json!({ "name": "Acme" })),
        )
        .await,
    );
    let contract = |pricing: Value, delivery: Value| json!({ "buyer_id": buyer, "offer_id": offer, "name": "c", "pricing": pricing, "delivery": delivery });
    let bad = contract(
        json!({ "type": "rtb", "url": "https://buyer.example/bid", "ref_path": "/id",
                "response": { "format": "xml", "ref": { "path": "/r/id" },
                              "status": { "abc": "no_bid", "409": "duplicate" } } }),
        json!({ "url": "https://buyer.example/leads",
                "response": { "format": "text",
                              "accepted": { "regex": "([a-z", "exists": true },
                              "rejected": { "path": "/status", "equals": "no" },
                              "exclusive_bid": { "regex": "x" } } }),
    );
    let (status, problem) = app
        .admin(Method::POST, "/v1/admin/contracts", &key, Some(bad))
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("invalid_config")),
        "{problem}"
    );
    let mut pointers: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    pointers.sort();
    assert_eq!(
        pointers,
        [
            "/delivery/response/accepted/regex",
            "/delivery/response/exclusive_bid",
            "/delivery/response/rejected/path",
            "/pricing/ref_path",
            "/pricing/response",
            "/pricing/response/status/409",
            "/pricing/response/status/abc",
        ],
        "{problem}"
    );
    let contracts: i64 = sqlx::query_scalar("SELECT count(*) FROM contracts")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(contracts, 0, "nothing written");

    // Good rules are kept as written.
    let response = json!({ "format": "xml", "exclusive_bid": { "path": "/r/bid" },
                           "status": { "204": "no_bid", "5xx": "error" } });
    let good = contract(
        json!({ "type": "rtb", "url": "https://buyer.example/bid", "response": response }),
        json!({ "url": "https://buyer.example/leads",
                "response": { "status": { "409": "duplicate" } } }),
    );
    let (status, saved) = app
        .admin(Method::POST, "/v1/admin/contracts", &key, Some(good))
        .await;
    assert_eq!(status, 201, "{saved}");
    assert_eq!(saved["pricing"]["response"], response);
    assert_eq!(
        saved["delivery"]["response"],
        json!({ "status": { "409": "duplicate" } })
    );
}
