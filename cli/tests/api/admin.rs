//! The admin API: CRUD round trips, pagination, archiving, validation with pointers, tenant
//! isolation over every route of the OpenAPI document, live configuration, the ledger, and
//! the document itself.

use std::time::{Duration, Instant};

use gavel::money::{ExtraDecimals, Money};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fixtures::{consent, full_lead, offer_fields, ping_lead};
use crate::harness::{TestApp, spawn_app};

fn cents(value: &Value) -> i64 {
    Money::from_json(value, ExtraDecimals::Reject)
        .unwrap_or_else(|e| panic!("{value}: {e}"))
        .cents()
}

impl TestApp {
    /// An admin call; returns the status and the JSON body (null when there is none).
    pub async fn admin(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method, self.url(path)).bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn created(&self, path: &str, key: &str, body: Value) -> Value {
        let (status, answer) = self.admin(Method::POST, path, key, Some(body)).await;
        assert_eq!(status, 201, "POST {path}: {answer}");
        answer
    }
}

fn id_of(resource: &Value) -> String {
    resource["id"].as_str().unwrap().to_owned()
}

/// A tenant configured entirely through the admin API.
struct Tenant {
    admin_key: String,
    offer: String,
    partner: String,
    campaign: String,
    posting_key: String,
    buyer: String,
    contract: String,
    suppression_list: String,
}

async fn tenant_with_admin_key(pool: &PgPool) -> String {
    gavel::store::tenants::create(pool, "Admin Test", "America/New_York")
        .await
        .unwrap()
        .admin_key
}

fn contract_body(buyer: &str, offer: &str, delivery_url: &str) -> Value {
    json!({
        "buyer_id": buyer, "offer_id": offer, "name": "TX homeowners", "priority": 1,
        "pricing": { "type": "fixed", "exclusive": 40.00, "shared": 12.50 },
        "filters": [
            { "field": "state", "op": "in", "value": ["TX", "OK"] },
            { "any": [ { "field": "homeowner", "op": "eq", "value": true },
                       { "field": "credit", "op": "in", "value": ["excellent", "good"] } ] },
            { "field": "age", "op": "between", "value": [25, 64] }
        ],
        "caps": [ { "period": "day", "max_leads": 100 }, { "period": "month", "max_spend": 5000.00 } ],
        "delivery": { "url": delivery_url, "timeout_ms": 2000,
                      "accept": { "path": "/status", "equals": "accepted" } }
    })
}

impl Tenant {
    /// A multisell offer, a partner paid 70 %, a buyer funded with 1000.00 and one contract.
    async fn create(app: &TestApp, pool: &PgPool, delivery_url: &str) -> Tenant {
        let admin_key = tenant_with_admin_key(pool).await;
        let offer = app
            .created(
                "/v1/admin/offers",
                &admin_key,
                json!({ "name": "auto-insurance", "mode": "multisell", "fields": offer_fields() }),
            )
            .await;
        let partner = app
            .created(
                "/v1/admin/partners",
                &admin_key,
                json!({ "name": "Quote Funnel" }),
            )
            .await;
        let campaign = app
            .created(
                "/v1/admin/campaigns",
                &admin_key,
                json!({ "partner_id": partner["id"], "offer_id": offer["id"],
                        "payout": { "type": "revshare", "percent": 70 } }),
            )
            .await;
        let buyer = app
            .created("/v1/admin/buyers", &admin_key, json!({ "name": "Acme" }))
            .await;
        let buyer = id_of(&buyer);
        let (status, _) = app
            .admin(
                Method::POST,
                &format!("/v1/admin/buyers/{buyer}/funds"),
                &admin_key,
                Some(json!({ "amount": 1000.00, "note": "wire 1123" })),
            )
            .await;
        assert_eq!(status, 201);
        let contract = app
            .created(
                "/v1/admin/contracts",
                &admin_key,
                contract_body(&buyer, &id_of(&offer), delivery_url),
            )
            .await;
        let list = app
            .created(
                "/v1/admin/suppression-lists",
                &admin_key,
                json!({ "name": "Do not call" }),
            )
            .await;
        Tenant {
            suppression_list: id_of(&list),
            admin_key,
            offer: id_of(&offer),
            partner: id_of(&partner),
            campaign: id_of(&campaign),
            posting_key: campaign["posting_key"].as_str().unwrap().to_owned(),
            buyer,
            contract: id_of(&contract),
        }
    }

    async fn get(&self, app: &TestApp, path: &str) -> Value {
        let (status, answer) = app.admin(Method::GET, path, &self.admin_key, None).await;
        assert_eq!(status, 200, "GET {path}: {answer}");
        answer
    }

    async fn patch(&self, app: &TestApp, path: &str, body: Value) -> Value {
        let (status, answer) = app
            .admin(Method::PATCH, path, &self.admin_key, Some(body))
            .await;
        assert_eq!(status, 200, "PATCH {path}: {answer}");
        answer
    }
}

/// A buyer endpoint accepting every lead.
async fn accepting_buyer() -> (MockServer, String) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/leads"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "status": "accepted" })))
        .mount(&server)
        .await;
    let url = format!("{}/leads", server.uri());
    (server, url)
}

/// Pings until `done` accepts a 200 answer, for at most one second; returns the answer.
async fn ping_until(app: &TestApp, key: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    ping_until_status(app, key, what, 200, done).await
}

/// Pings until an answer has `expected` status and `done` accepts it, for at most one second
/// (configuration changes reach the server through a notification, within milliseconds).
async fn ping_until_status(
    app: &TestApp,
    key: &str,
    what: &str,
    expected: u16,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let (status, answer) = app.ping(key, json!({ "lead": ping_lead() })).await;
        if status == expected && done(&answer) {
            return answer;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{what} not seen within 1 s; last answer {status} {answer}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn sell_one(app: &TestApp, tenant: &Tenant) -> Value {
    let ping = ping_until(app, &tenant.posting_key, "bids", |a| a["status"] == "bids").await;
    let (status, answer) = app
        .post(
            &tenant.posting_key,
            json!({ "ping_id": ping["ping_id"], "lead": full_lead(), "consent": consent() }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    answer
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn every_resource_round_trips_through_create_read_update_list_and_archive(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let (_buyers, url) = accepting_buyer().await;
    let tenant = Tenant::create(&app, &pool, &url).await;

    // Each resource reads back as created, in the API's shapes (money as decimals).
    let offer = tenant
        .get(&app, &format!("/v1/admin/offers/{}", tenant.offer))
        .await;
    assert_eq!(
        (&offer["mode"], &offer["max_buyers"], &offer["status"]),
        (&json!("multisell"), &json!(3), &json!("active"))
    );
    assert_eq!(offer["fields"], offer_fields());
    let campaign = tenant
        .get(&app, &format!("/v1/admin/campaigns/{}", tenant.campaign))
        .await;
    assert_eq!(
        campaign["payout"],
        json!({ "type": "revshare", "percent": 70.0 })
    );
    assert!(
        campaign.get("posting_key").is_none(),
        "the key is shown once"
    );
    let buyer = tenant
        .get(&app, &format!("/v1/admin/buyers/{}", tenant.buyer))
        .await;
    assert_eq!(cents(&buyer["balance"]), 100_000);
    let contract_path = format!("/v1/admin/contracts/{}", tenant.contract);
    let contract = tenant.get(&app, &contract_path).await;
    assert_eq!(
        contract["pricing"],
        json!({ "type": "fixed", "exclusive": 40.0, "shared": 12.5 })
    );
    assert_eq!(cents(&contract["caps"][1]["max_spend"]), 500_000);
    assert_eq!(contract["filters"][2]["value"], json!([25, 64]));

    // A PATCH changes only what it names, and is validated merged.
    let patched = tenant
        .patch(
            &app,
            &contract_path,
            json!({ "pricing": { "type": "fixed", "shared": 15.25 }, "priority": 5 }),
        )
        .await;
    assert_eq!(
        patched["pricing"],
        json!({ "type": "fixed", "shared": 15.25 })
    );
    assert_eq!(
        (&patched["priority"], &patched["name"]),
        (&json!(5), &json!("TX homeowners"))
    );
    let partner_path = format!("/v1/admin/partners/{}", tenant.partner);
    let partner = tenant
        .patch(&app, &partner_path, json!({ "status": "paused" }))
        .await;
    assert_eq!(
        (&partner["status"], &partner["name"]),
        (&json!("paused"), &json!("Quote Funnel"))
    );
    let buyer = tenant
        .patch(
            &app,
            &format!("/v1/admin/buyers/{}", tenant.buyer),
            json!({ "credit_limit": 250.5 }),
        )
        .await;
    assert_eq!(
        (cents(&buyer["credit_limit"]), cents(&buyer["balance"])),
        (25_050, 100_000)
    );
    let offer = tenant
        .patch(
            &app,
            &format!("/v1/admin/offers/{}", tenant.offer),
            json!({ "exclusive_floor": 25, "mode": "hybrid" }),
        )
        .await;
    assert_eq!(
        (cents(&offer["exclusive_floor"]), &offer["mode"]),
        (2500, &json!("hybrid"))
    );
    let campaign = tenant
        .patch(
            &app,
            &format!("/v1/admin/campaigns/{}", tenant.campaign),
            json!({ "payout": { "type": "fixed", "amount": 8 }, "min_payout": 2.5 }),
        )
        .await;
    assert_eq!(
        campaign["payout"],
        json!({ "type": "fixed", "amount": 8.0 })
    );

    // Lists hold each resource; DELETE archives and the resource stays readable.
    for (collection, id) in [
        ("partners", &tenant.partner),
        ("buyers", &tenant.buyer),
        ("offers", &tenant.offer),
        ("campaigns", &tenant.campaign),
        ("contracts", &tenant.contract),
    ] {
        let list = tenant.get(&app, &format!("/v1/admin/{collection}")).await;
        assert_eq!(list["items"][0]["id"], json!(id), "{collection}");
        assert_eq!(list["next_cursor"], Value::Null);
        let path = format!("/v1/admin/{collection}/{id}");
        let (status, archived) = app
            .admin(Method::DELETE, &path, &tenant.admin_key, None)
            .await;
        assert_eq!(
            (status, &archived["status"]),
            (200, &json!("archived")),
            "{collection}"
        );
        let again = tenant.get(&app, &path).await;
        assert_eq!(again["status"], "archived");
    }
    // An archived resource can be brought back.
    let partner = tenant
        .patch(&app, &partner_path, json!({ "status": "active" }))
        .await;
    assert_eq!(partner["status"], "active");
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn lists_page_through_more_than_one_page_with_an_opaque_cursor(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let key = tenant_with_admin_key(&pool).await;
    let mut created = Vec::new();
    for n in 0..5 {
        let partner = app
            .created(
                "/v1/admin/partners",
                &key,
                json!({ "name": format!("P{n}") }),
            )
            .await;
        created.push(id_of(&partner));
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/admin/partners?limit=2&cursor={c}"),
            None => "/v1/admin/partners?limit=2".to_owned(),
        };
        let (status, page) = app.admin(Method::GET, &path, &key, None).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        seen.extend(page["items"].as_array().unwrap().iter().map(id_of));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created);
    let (status, problem) = app
        .admin(Method::GET, "/v1/admin/partners?limit=0", &key, None)
        .await;
    assert_eq!(
        (status, &problem["errors"][0]["pointer"]),
        (422, &json!("/query/limit"))
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn archiving_keeps_the_history_readable(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let (_buyers, url) = accepting_buyer().await;
    let tenant = Tenant::create(&app, &pool, &url).await;
    let sold = sell_one(&app, &tenant).await;
    assert_eq!(sold["status"], "sold", "{sold}");

    for (collection, id) in [
        ("contracts", &tenant.contract),
        ("campaigns", &tenant.campaign),
        ("buyers", &tenant.buyer),
    ] {
        let (status, _) = app
            .admin(
                Method::DELETE,
                &format!("/v1/admin/{collection}/{id}"),
                &tenant.admin_key,
                None,
            )
            .await;
        assert_eq!(status, 200);
    }
    let ping = tenant
        .get(
            &app,
            &format!("/v1/admin/pings/{}", sold["ping_id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(ping["contracts"][0]["contract_id"], json!(tenant.contract));
    assert_eq!(ping["contracts"][0]["sale"]["status"], "sold");
    let lead = tenant
        .get(
            &app,
            &format!("/v1/admin/leads/{}", sold["lead_id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(lead["sales"][0]["status"], "sold");
    assert_eq!(lead["consent"], consent());
    let ledger = tenant
        .get(&app, &format!("/v1/admin/buyers/{}/ledger", tenant.buyer))
        .await;
    assert_eq!(ledger["items"].as_array().unwrap().len(), 2, "{ledger}");
    let sales = tenant
        .get(
            &app,
            &format!("/v1/admin/sales?contract_id={}", tenant.contract),
        )
        .await;
    assert_eq!(sales["items"].as_array().unwrap().len(), 1);
    // The archived campaign no longer sells.
    ping_until_status(
        &app,
        &tenant.posting_key,
        "the archived campaign",
        403,
        |_| true,
    )
    .await;
}

/// Row counts of every configuration table and the ledger.
async fn configuration_rows(pool: &PgPool) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in [
        "partners",
        "buyers",
        "offers",
        "campaigns",
        "contracts",
        "ledger_entries",
    ] {
        let count: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(pool)
                .await
                .unwrap();
        counts.push(count);
    }
    let contract: String =
        sqlx::query_scalar("SELECT pricing::text || caps::text || filters::text FROM contracts")
            .fetch_one(pool)
            .await
            .unwrap();
    counts.push(contract.len() as i64);
    counts
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn every_validation_rule_answers_422_with_its_pointer_and_writes_nothing(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let (_buyers, url) = accepting_buyer().await;
    let tenant = Tenant::create(&app, &pool, &url).await;
    let other = Tenant::create(&app, &pool, &url).await;
    let contract = contract_body(&tenant.buyer, &tenant.offer, &url);
    let with = |changes: Value| {
        let mut body = contract.clone();
        for (key, value) in changes.as_object().unwrap() {
            body[key] = value.clone();
        }
        body
    };
    let campaign = json!({ "partner_id": tenant.partner, "offer_id": tenant.offer,
                           "payout": { "type": "revshare", "percent": 70 } });
    let with_campaign = |changes: Value| {
        let mut body = campaign.clone();
        for (key, value) in changes.as_object().unwrap() {
            body[key] = value.clone();
        }
        body
    };
    let contracts = "/v1/admin/contracts";
    let contract_path = format!("/v1/admin/contracts/{}", tenant.contract);
    let cases: Vec<(Method, String, Value, &str)> = vec![
        // money with more than 2 decimals, or negative
        (
            Method::POST,
            contracts.into(),
            with(json!({ "pricing": { "type": "fixed", "exclusive": 40.005 } })),
            "/pricing/exclusive",
        ),
        (
            Method::POST,
            contracts.into(),
            with(json!({ "pricing": { "type": "fixed", "shared": -1 } })),
            "/pricing/shared",
        ),
        (
            Method::POST,
            "/v1/admin/buyers".into(),
            json!({ "name": "B", "credit_limit": -5 }),
            "/credit_limit",
        ),
        (
            Method::POST,
            "/v1/admin/buyers".into(),
            json!({ "name": "B", "credit_limit": 1.001 }),
            "/credit_limit",
        ),
        (
            Method::POST,
            format!("/v1/admin/buyers/{}/funds", tenant.buyer),
            json!({ "amount": 10.123 }),
            "/amount",
        ),
        (
            Method::POST,
            "/v1/admin/campaigns".into(),
            with_campaign(json!({ "min_payout": 0.001 })),
            "/min_payout",
        ),
        // percent outside 0–100
        (
            Method::POST,
            "/v1/admin/campaigns".into(),
            with_campaign(json!({ "payout": { "type": "revshare", "percent": 100.5 } })),
            "/payout/percent",
        ),
        (
            Method::POST,
            "/v1/admin/campaigns".into(),
            with_campaign(json!({ "payout": { "type": "revshare", "percent": -1 } })),
            "/payout/percent",
        ),
        (
            Method::POST,
            "/v1/admin/campaigns".into(),
            with_campaign(json!({ "payout": { "type": "fixed", "amount": 2.555 } })),
            "/payout/amount",
        ),
        (
            Method::POST,
            "/v1/admin/campaigns".into(),
            with_campaign(json!({ "payout": { "type": "salary", "amount": 2 } })),
            "/payout",
        ),
        // unknown timezone
        (
            Method::PATCH,
            contract_path.clone(),
            json!({ "schedule": { "timezone": "Mars/Olympus", "days": {} } }),
            "/schedule/timezone",
        ),
        // offer field schema: duplicate names, unknown types
        (
            Method::POST,
            "/v1/admin/offers".into(),
            json!({ "name": "o", "mode": "exclusive",
            "fields": [{ "name": "a", "type": "string" }, { "name": "a", "type": "integer" }] }),
            "/fields/1/name",
        ),
        (
            Method::POST,
            "/v1/admin/offers".into(),
            json!({ "name": "o", "mode": "exclusive",
            "fields": [{ "name": "a", "type": "colour" }] }),
            "/fields/0",
        ),
        // filters: unknown field, PII field, op not fitting the type, between, regex
        (
            Method::POST,
            contracts.into(),
            with(json!({ "filters": [{ "field": "color", "op": "eq", "value": 1 }] })),
            "/filters/0/field",
        ),
        (
            Method::POST,
            contracts.into(),
            with(json!({ "filters": [{ "field": "email", "op": "exists" }] })),
            "/filters/0/field",
        ),
        (
            Method::POST,
            contracts.into(),
            with(json!({ "filters": [{ "field": "homeowner", "op": "gt", "value": 1 }] })),
            "/filters/0/op",
        ),
        (
            Method::POST,
            contracts.into(),
            with(
                json!({ "filters": [{ "any": [{ "field": "age", "op": "prefix", "value": "4" }] }] }),
            ),
            "/filters/0/any/0/op",
        ),
        (
            Method::POST,
            contracts.into(),
            with(json!({ "filters": [{ "field": "age", "op": "between", "value": [64, 25] }] })),
            "/filters/0/value",
        ),
        (
            Method::POST,
            contracts.into(),
            with(json!({ "filters": [{ "field": "age", "op": "between", "value": [25] }] })),
            "/filters/0/value",
        ),
        (
            Method::POST,
            contracts.into(),
            with(json!({ "filters": [{ "field": "zip", "op": "matches", "value": "([0-9]" }] })),
            "/filters/0/value",
        ),
        // schedule times not HH:MM, or ending before they start
        (
            Method::POST,
            contracts.into(),
            with(json!({ "schedule": { "days": { "mon": [["8am", "18:00"]] } } })),
            "/schedule/days/mon/0/0",
        ),
        (
            Method::POST,
            contracts.into(),
            with(json!({ "schedule": { "days": { "mon": [["18:00", "08:00"]] } } })),
            "/schedule/days/mon/0/1",
        ),
        // caps with neither or both limits
        (
            Method::POST,
            contracts.into(),
            with(json!({ "caps": [{ "period": "day" }] })),
            "/caps/0",
        ),
        (
            Method::POST,
            contracts.into(),
            with(json!({ "caps": [{ "period": "day", "max_leads": 5, "max_spend": 10 }] })),
            "/caps/0",
        ),
        (
            Method::POST,
            contracts.into(),
            with(json!({ "caps": [{ "period": "week", "max_spend": 10.001 }] })),
            "/caps/0/max_spend",
        ),
        // URLs that are not http(s), timeouts out of bounds
        (
            Method::POST,
            contracts.into(),
            with(json!({ "pricing": { "type": "rtb", "url": "ftp://bids.example" } })),
            "/pricing/url",
        ),
        (
            Method::POST,
            contracts.into(),
            with(
                json!({ "pricing": { "type": "rtb", "url": "https://bids.example", "timeout_ms": 5000 } }),
            ),
            "/pricing/timeout_ms",
        ),
        (
            Method::POST,
            contracts.into(),
            with(json!({ "delivery": { "url": "mailto:leads@buyer.example" } })),
            "/delivery/url",
        ),
        (
            Method::POST,
            contracts.into(),
            with(json!({ "delivery": { "url": "https://buyer.example", "timeout_ms": 0 } })),
            "/delivery/timeout_ms",
        ),
        // another tenant's buyer, offer or partner
        (
            Method::POST,
            contracts.into(),
            with(json!({ "buyer_id": other.buyer })),
            "/buyer_id",
        ),
        (
            Method::POST,
            contracts.into(),
            with(json!({ "offer_id": other.offer })),
            "/offer_id",
        ),
        (
            Method::PATCH,
            contract_path.clone(),
            json!({ "buyer_id": other.buyer }),
            "/buyer_id",
        ),
        (
            Method::POST,
            "/v1/admin/campaigns".into(),
            with_campaign(json!({ "partner_id": other.partner })),
            "/partner_id",
        ),
        (
            Method::POST,
            "/v1/admin/campaigns".into(),
            with_campaign(json!({ "offer_id": other.offer })),
            "/offer_id",
        ),
        // read-only fields cannot be written
        (
            Method::PATCH,
            format!("/v1/admin/buyers/{}", tenant.buyer),
            json!({ "balance": 1000000 }),
            "/balance",
        ),
        // a changed field schema must still fit the offer's contracts
        (
            Method::PATCH,
            format!("/v1/admin/offers/{}", tenant.offer),
            json!({ "fields": [{ "name": "zip", "type": "string" }] }),
            "/fields",
        ),
    ];
    let before = configuration_rows(&pool).await;
    for (method, path, body, pointer) in cases {
        let (status, problem) = app
            .admin(method.clone(), &path, &tenant.admin_key, Some(body.clone()))
            .await;
        assert_eq!(status, 422, "{method} {path} {body}: {problem}");
        assert_eq!(problem["code"], "invalid_config", "{problem}");
        let pointers: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["pointer"].as_str().unwrap())
            .collect();
        assert!(
            pointers.contains(&pointer),
            "{method} {path} {body}: expected {pointer} in {problem}"
        );
        assert!(
            problem["errors"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["code"] == "invalid_config")
        );
    }
    assert_eq!(configuration_rows(&pool).await, before, "nothing written");
}

/// Substitutes tenant A's id of the right kind for `{id}` in an admin path.
fn with_ids(
    route: &str,
    a: &Tenant,
    ping_id: &str,
    lead_id: &str,
    sale_and_return: [&str; 2],
) -> String {
    let resource = route
        .trim_start_matches("/v1/admin/")
        .split('/')
        .next()
        .unwrap();
    let id = match resource {
        "partners" => &a.partner,
        "buyers" => &a.buyer,
        "offers" => &a.offer,
        "campaigns" => &a.campaign,
        "contracts" => &a.contract,
        "suppression-lists" => &a.suppression_list,
        "pings" => ping_id,
        "leads" => lead_id,
        "sales" => sale_and_return[0],
        "returns" => sale_and_return[1],
        other => panic!("an admin route with an id of an unknown kind: {other}"),
    };
    route.replace("{id}", id)
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn another_tenants_key_gets_404_on_every_admin_route_and_sees_none_of_its_data(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let (_buyers, url) = accepting_buyer().await;
    let a = Tenant::create(&app, &pool, &url).await;
    let b = Tenant::create(&app, &pool, &url).await;
    let sold = sell_one(&app, &a).await;
    let (ping_id, lead_id) = (
        sold["ping_id"].as_str().unwrap(),
        sold["lead_id"].as_str().unwrap(),
    );
    // A's sale, returned (docs/returns.md): returns allowed on its contract.
    sqlx::query(
        "UPDATE contracts SET returns = returns || '{\"allowed\": true, \"max_percent\": 100}'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let sale_id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM lead_sales WHERE ping_id = $1::uuid")
            .bind(ping_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    let sale_id = sale_id.to_string();
    let (status, requested) = app
        .admin(
            Method::POST,
            &format!("/v1/admin/sales/{sale_id}/returns"),
            &a.admin_key,
            Some(json!({ "reason": "other" })),
        )
        .await;
    assert_eq!(status, 201, "{requested}");
    let return_id = requested["id"].as_str().unwrap().to_owned();
    let a_ids = [&a.partner, &a.buyer, &a.offer, &a.campaign, &a.contract]
        .map(|id| id.as_str())
        .into_iter()
        .chain([ping_id, lead_id, &sale_id, &return_id])
        .collect::<Vec<_>>();

    // The routes come from the OpenAPI document, itself built from the router's registration.
    let (_, document) = gavel::api::router_and_document();
    let mut with_id = 0;
    let mut without_id = 0;
    for (route, item) in &document.paths.paths {
        if !route.starts_with("/v1/admin/") {
            continue;
        }
        let methods = [
            (Method::GET, item.get.is_some()),
            (Method::POST, item.post.is_some()),
            (Method::PATCH, item.patch.is_some()),
            (Method::DELETE, item.delete.is_some()),
        ];
        for (method, _) in methods.into_iter().filter(|(_, served)| *served) {
            let body = matches!(method, Method::POST | Method::PATCH).then(|| json!({}));
            if route.contains("{id}") {
                with_id += 1;
                let path = with_ids(route, &a, ping_id, lead_id, [&sale_id, &return_id]);
                let (status, answer) = app.admin(method.clone(), &path, &b.admin_key, body).await;
                assert_eq!(
                    (status, &answer["code"]),
                    (404, &json!("not_found")),
                    "{method} {path} with tenant B's key: {answer}"
                );
                // Tenant A's own key reaches the same route (the 404 is not a wrong path).
                if method == Method::GET {
                    let (status, _) = app.admin(method, &path, &a.admin_key, None).await;
                    assert_eq!(status, 200, "GET {path} with tenant A's key");
                }
            } else if method == Method::GET {
                without_id += 1;
                let (status, answer) = app.admin(method, route, &b.admin_key, None).await;
                assert_eq!(status, 200, "GET {route}: {answer}");
                let text = answer.to_string();
                for id in &a_ids {
                    assert!(
                        !text.contains(id),
                        "GET {route} with B's key shows A's {id}"
                    );
                }
            }
        }
    }
    assert!(with_id >= 20 && without_id >= 7, "{with_id} {without_id}");

    // Tenant B's posting key cannot post tenant A's ping.
    let ping = ping_until(&app, &a.posting_key, "bids", |p| p["status"] == "bids").await;
    let (status, answer) = app
        .post(
            &b.posting_key,
            json!({ "ping_id": ping["ping_id"], "lead": full_lead(), "consent": consent() }),
        )
        .await;
    assert_eq!(
        (status, &answer["code"]),
        (404, &json!("ping_not_found")),
        "{answer}"
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_contract_created_paused_and_repriced_through_the_api_changes_the_next_ping_within_a_second(
    pool: PgPool,
) {
    let app = spawn_app(pool.clone()).await;
    let (_buyers, url) = accepting_buyer().await;
    let tenant = Tenant::create(&app, &pool, &url).await;
    // Created: the next pings bid the shared price, 70 % of 12.50 to the partner.
    let answer = ping_until(&app, &tenant.posting_key, "the new contract", |a| {
        a["status"] == "bids"
    })
    .await;
    assert_eq!(cents(&answer["payout"]), 875);

    let path = format!("/v1/admin/contracts/{}", tenant.contract);
    tenant
        .patch(&app, &path, json!({ "status": "paused" }))
        .await;
    ping_until(&app, &tenant.posting_key, "the pause", |a| {
        a["status"] == "no_bids"
    })
    .await;

    tenant
        .patch(
            &app,
            &path,
            json!({ "status": "active", "pricing": { "type": "fixed", "shared": 20.00 } }),
        )
        .await;
    ping_until(&app, &tenant.posting_key, "the new price", |a| {
        a["status"] == "bids" && cents(&a["payout"]) == 1400
    })
    .await;
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_rotated_posting_key_replaces_the_old_one_within_a_second(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let (_buyers, url) = accepting_buyer().await;
    let tenant = Tenant::create(&app, &pool, &url).await;
    ping_until(&app, &tenant.posting_key, "the campaign", |a| {
        a["status"] == "bids"
    })
    .await;
    let (status, rotated) = app
        .admin(
            Method::POST,
            &format!("/v1/admin/campaigns/{}/rotate-key", tenant.campaign),
            &tenant.admin_key,
            None,
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new_key = rotated["posting_key"].as_str().unwrap();
    assert_ne!(new_key, tenant.posting_key);
    ping_until(&app, new_key, "the new key", |a| a["status"] == "bids").await;
    let (status, _) = app
        .ping(&tenant.posting_key, json!({ "lead": ping_lead() }))
        .await;
    assert_eq!(status, 401, "the old key stopped working");
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn after_funds_sales_and_a_release_the_balance_is_the_sum_of_the_ledger(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let buyers = MockServer::start().await;
    // The buyer accepts the first lead and rejects the next: a charge, then a charge released.
    Mock::given(method("POST"))
        .and(path("/leads"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "status": "accepted" })))
        .up_to_n_times(1)
        .mount(&buyers)
        .await;
    Mock::given(method("POST"))
        .and(path("/leads"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "status": "rejected" })))
        .mount(&buyers)
        .await;
    let tenant = Tenant::create(&app, &pool, &format!("{}/leads", buyers.uri())).await;
    let funds = format!("/v1/admin/buyers/{}/funds", tenant.buyer);
    let (status, receipt) = app
        .admin(
            Method::POST,
            &funds,
            &tenant.admin_key,
            Some(json!({ "amount": -150.25, "note": "refund" })),
        )
        .await;
    assert_eq!(status, 201, "{receipt}");
    assert_eq!(cents(&receipt["balance"]), 100_000 - 15_025);
    assert_eq!(receipt["entry"]["kind"], "funds");

    assert_eq!(sell_one(&app, &tenant).await["status"], "sold");
    assert_eq!(sell_one(&app, &tenant).await["status"], "unsold");

    let ledger = format!("/v1/admin/buyers/{}/ledger?limit=2", tenant.buyer);
    let mut entries = Vec::new();
    let mut next = ledger.clone();
    loop {
        let page = tenant.get(&app, &next).await;
        entries.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => next = format!("{ledger}&cursor={cursor}"),
            None => break,
        }
    }
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["release", "sale", "sale", "funds", "funds"],
        "newest first"
    );
    assert_eq!(entries[0]["note"], Value::Null);
    assert_eq!(entries[3]["note"], "refund");
    let sum: i64 = entries.iter().map(|e| cents(&e["amount"])).sum();
    let buyer = tenant
        .get(&app, &format!("/v1/admin/buyers/{}", tenant.buyer))
        .await;
    assert_eq!(cents(&buyer["balance"]), sum);
    assert_eq!(sum, 100_000 - 15_025 - 1250);
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn caps_lead_and_summary_report_show_what_happened(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let (_buyers, url) = accepting_buyer().await;
    let tenant = Tenant::create(&app, &pool, &url).await;
    let sold = sell_one(&app, &tenant).await;
    assert_eq!(sold["status"], "sold");

    let caps = tenant
        .get(
            &app,
            &format!("/v1/admin/contracts/{}/caps", tenant.contract),
        )
        .await;
    let day = &caps["caps"][0];
    assert_eq!(
        (
            &day["period"],
            &day["kind"],
            &day["limit"],
            &day["used"],
            &day["remaining"]
        ),
        (
            &json!("day"),
            &json!("leads"),
            &json!(100),
            &json!(1),
            &json!(99)
        )
    );
    // The day starts at midnight in the tenant's timezone (America/New_York).
    let start =
        chrono::DateTime::parse_from_rfc3339(day["period_start"].as_str().unwrap()).unwrap();
    let local = start.with_timezone(&chrono_tz::America::New_York);
    assert_eq!(local.format("%H:%M").to_string(), "00:00");
    let month = &caps["caps"][1];
    assert_eq!(
        (cents(&month["used"]), cents(&month["remaining"])),
        (1250, 498_750)
    );

    let summary = tenant
        .get(&app, "/v1/admin/reports/summary?group_by=contract")
        .await;
    let row = &summary["rows"][0];
    assert_eq!(row["group_id"], json!(tenant.contract));
    assert_eq!(
        (&row["pings_with_bids"], &row["posts"], &row["sales"]),
        (&json!(1), &json!(1), &json!(1))
    );
    assert_eq!(
        (
            cents(&row["revenue"]),
            cents(&row["payout"]),
            cents(&row["margin"])
        ),
        (1250, 875, 375)
    );
    let by_offer = tenant
        .get(&app, "/v1/admin/reports/summary?group_by=offer")
        .await;
    assert_eq!(by_offer["rows"][0]["group_id"], json!(tenant.offer));
    // Pings sent before the contract was loaded had no bids; the rate counts them too.
    let offer_row = &by_offer["rows"][0];
    let rate =
        offer_row["pings_with_bids"].as_f64().unwrap() / offer_row["pings"].as_f64().unwrap();
    assert!(
        (offer_row["bid_rate"].as_f64().unwrap() - rate).abs() < 1e-4,
        "{offer_row}"
    );

    // A second contract that declines (filtered) shows up in the declines.
    let mut filtered = contract_body(&tenant.buyer, &tenant.offer, &url);
    filtered["filters"] = json!([{ "field": "state", "op": "eq", "value": "CA" }]);
    app.created("/v1/admin/contracts", &tenant.admin_key, filtered)
        .await;
    // And a third, of the same buyer at lower prices, that bids and is outbid by the first
    // (a buyer appears once in a sale).
    let mut cheaper = contract_body(&tenant.buyer, &tenant.offer, &url);
    cheaper["pricing"] = json!({ "type": "fixed", "exclusive": 30.00, "shared": 10.00 });
    let cheaper = app
        .created("/v1/admin/contracts", &tenant.admin_key, cheaper)
        .await;
    ping_until(&app, &tenant.posting_key, "the second contract", |_| true).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.ping(&tenant.posting_key, json!({ "lead": ping_lead() }))
        .await;
    let by_partner = tenant
        .get(&app, "/v1/admin/reports/summary?group_by=partner")
        .await;
    let row = &by_partner["rows"][0];
    assert_eq!(row["group_id"], json!(tenant.partner));
    assert!(row["declines"]["filtered"].as_i64().unwrap() >= 1, "{row}");
    // By contract: the filtered one saw pings and declined each; the cheaper one bid on each
    // and was outbid; the first bid on every ping it saw and was posted once. By buyer: the
    // three added up.
    let by_contract = tenant
        .get(&app, "/v1/admin/reports/summary?group_by=contract")
        .await;
    let rows = by_contract["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{by_contract}");
    let row_of = |id: &Value| rows.iter().find(|r| &r["group_id"] == id).unwrap();
    let first = row_of(&json!(tenant.contract));
    let outbid = row_of(&cheaper["id"]);
    let second = rows
        .iter()
        .find(|r| r["group_id"] != json!(tenant.contract) && r["group_id"] != cheaper["id"])
        .unwrap();
    assert_eq!(first["pings"], first["pings_with_bids"], "{first}");
    assert_eq!(
        (&first["posts"], &first["declines"]),
        (&json!(1), &json!({})),
        "{first}"
    );
    assert!(outbid["pings"].as_i64().unwrap() >= 1, "{outbid}");
    assert_eq!(
        (
            &outbid["pings_with_bids"],
            &outbid["posts"],
            &outbid["declines"]
        ),
        (
            &outbid["pings"],
            &json!(0),
            &json!({ "outbid": outbid["pings"] })
        ),
    );
    assert!(second["pings"].as_i64().unwrap() >= 1, "{second}");
    assert_eq!(
        (
            &second["pings_with_bids"],
            &second["posts"],
            &second["declines"]
        ),
        (
            &json!(0),
            &json!(0),
            &json!({ "filtered": second["pings"] })
        ),
    );
    let by_buyer = tenant
        .get(&app, "/v1/admin/reports/summary?group_by=buyer")
        .await;
    let buyer = &by_buyer["rows"][0];
    let sum = |field: &str| {
        [first, outbid, second]
            .iter()
            .map(|r| r[field].as_i64().unwrap())
            .sum::<i64>()
    };
    assert_eq!(
        (
            buyer["pings"].as_i64().unwrap(),
            buyer["pings_with_bids"].as_i64().unwrap()
        ),
        (sum("pings"), sum("pings_with_bids"))
    );
    assert_eq!(
        buyer["declines"],
        json!({ "filtered": second["pings"], "outbid": outbid["pings"] })
    );
    let (status, problem) = app
        .admin(
            Method::GET,
            "/v1/admin/reports/summary?group_by=color",
            &tenant.admin_key,
            None,
        )
        .await;
    assert_eq!(
        (status, &problem["errors"][0]["pointer"]),
        (422, &json!("/query/group_by"))
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn the_openapi_document_is_3_1_and_lists_every_served_route(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let served: Value = response.json().await.unwrap();
    assert_eq!(served["openapi"], "3.1.0");

    // The router's routes, from the registration the router itself is split from.
    let (_, document) = gavel::api::router_and_document();
    assert_eq!(served, serde_json::to_value(&document).unwrap());
    let schemes = &served["components"]["securitySchemes"];
    assert_eq!(schemes["admin_key"]["scheme"], "bearer");
    assert_eq!(schemes["posting_key"]["scheme"], "bearer");
    let codes = served["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap();
    assert!(codes.contains(&json!("invalid_config")) && codes.contains(&json!("pii_in_ping")));

    for required in [
        "/v1/ping",
        "/v1/post",
        "/v1/leads",
        "/healthz",
        "/readyz",
        "/openapi.json",
    ] {
        assert!(served["paths"].get(required).is_some(), "{required}");
    }
    // Every documented operation is served: none falls through to the router's fallback
    // (its 404 `not_found` without authentication, or 405).
    let mut operations = 0;
    for (route, item) in served["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let method: Method = method.to_uppercase().parse().unwrap();
            operations += 1;
            // OpenAPI requires a description on every response.
            for (status, response) in operation["responses"].as_object().unwrap() {
                assert!(
                    response["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{method} {route} {status}"
                );
            }
            if route.starts_with("/v1/") {
                assert!(operation.get("security").is_some(), "{method} {route}");
            }
            let path = route.replace("{id}", &Uuid::now_v7().to_string());
            let mut request = app.client.request(method.clone(), app.url(&path));
            if matches!(method, Method::POST | Method::PATCH) {
                request = request.json(&json!({}));
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            assert_ne!(status, 405, "{method} {route}");
            if operation.get("security").is_some() {
                assert_eq!(status, 401, "{method} {route} is served and authenticated");
            } else {
                assert!(status == 200 || status == 503, "{method} {route}: {status}");
            }
        }
    }
    assert!(operations >= 35, "{operations}");
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_patch_cannot_null_a_field_into_its_default_and_null_limits_are_absent(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let tenant = Tenant::create(&app, &pool, "http://127.0.0.1:9/leads").await;
    let path = format!("/v1/admin/contracts/{}", tenant.contract);
    let (_, before) = app.admin(Method::GET, &path, &tenant.admin_key, None).await;

    // `filters: null` would make the contract buy everything; `status: null` would activate it.
    for field in ["filters", "status", "pricing"] {
        let (status, problem) = app
            .admin(
                Method::PATCH,
                &path,
                &tenant.admin_key,
                Some(json!({ field: null })),
            )
            .await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (422, Some("invalid_config")),
            "{field}"
        );
        assert_eq!(problem["errors"][0]["pointer"], format!("/{field}"));
    }
    let (_, after) = app.admin(Method::GET, &path, &tenant.admin_key, None).await;
    assert_eq!(before, after, "nothing written");

    // A schedule's null is a value: always open.
    let (status, _) = app
        .admin(
            Method::PATCH,
            &path,
            &tenant.admin_key,
            Some(json!({ "schedule": { "days": {} } })),
        )
        .await;
    assert_eq!(status, 200);
    let (status, patched) = app
        .admin(
            Method::PATCH,
            &path,
            &tenant.admin_key,
            Some(json!({ "schedule": null })),
        )
        .await;
    assert_eq!((status, &patched["schedule"]), (200, &Value::Null));

    // A cap whose other limit is written as null is the same as one without it.
    let caps = json!({ "caps": [{ "period": "day", "max_leads": null, "max_spend": 50 }] });
    let (status, patched) = app
        .admin(Method::PATCH, &path, &tenant.admin_key, Some(caps))
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(cents(&patched["caps"][0]["max_spend"]), 5000);
}
