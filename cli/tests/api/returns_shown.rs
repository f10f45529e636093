//! Where returns show (docs/returns.md): the explain, the lead view, the sales list and the
//! summary report, with real sales (real buyers on 127.0.0.1) and exact money.
//!
//! The returns go through the returns API (request, then approve or deny).

use chrono::{DateTime, Utc};
use gavel::money::{ExtraDecimals, Money};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fixtures::{ContractSpec, Exchange, consent, full_lead, outcome_of, ping_lead};
use crate::harness::{TestApp, spawn_app};

fn cents(value: &Value) -> i64 {
    Money::from_json(value, ExtraDecimals::Reject)
        .unwrap_or_else(|e| panic!("{value}: {e}"))
        .cents()
}

/// A buyer (funded with 1,000.00) with one contract delivering to `route` of `server`, which
/// accepts or rejects every lead.
async fn bidder(
    exchange: &Exchange,
    server: &MockServer,
    route: &str,
    accepts: bool,
    pricing: ContractSpec,
) -> (Uuid, Uuid) {
    let status = if accepts { "accepted" } else { "rejected" };
    Mock::given(method("POST"))
        .and(path(route))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "status": status })))
        .mount(server)
        .await;
    let delivery = json!({ "url": format!("{}{route}", server.uri()), "timeout_ms": 2000,
                           "accept": { "path": "/status", "equals": "accepted" } });
    exchange
        .buyer_with(
            100_000,
            ContractSpec {
                delivery: Some(delivery),
                ..pricing
            },
        )
        .await
}

/// A ping with bids, then its post: the post's answer.
async fn sell(app: &TestApp, exchange: &Exchange) -> Value {
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
    answer
}

/// The lead's sales: (sale id, contract id, status), in id order.
async fn sales_of(exchange: &Exchange, lead_id: &Value) -> Vec<(Uuid, Uuid, String)> {
    sqlx::query_as(
        "SELECT id, contract_id, status FROM lead_sales WHERE tenant_id = $1 AND lead_id = $2 ORDER BY id",
    )
    .bind(exchange.tenant_id)
    .bind(lead_id.as_str().unwrap().parse::<Uuid>().unwrap())
    .fetch_all(&exchange.pool)
    .await
    .unwrap()
}

/// The sale of `contract` among the lead's.
async fn sale_of(exchange: &Exchange, answer: &Value, contract: Uuid) -> Uuid {
    let sales = sales_of(exchange, &answer["lead_id"]).await;
    let (sale, _, status) = sales
        .into_iter()
        .find(|(_, c, _)| *c == contract)
        .unwrap_or_else(|| panic!("no sale of {contract}: {answer}"));
    assert_eq!(status, "sold");
    sale
}

/// An admin call: its status and JSON answer.
async fn admin_call(
    app: &TestApp,
    exchange: &Exchange,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app
        .client
        .request(method, app.url(path))
        .bearer_auth(&exchange.admin_key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Allows returns on the sale's contract (every sale of the period may be returned).
async fn allow_returns(app: &TestApp, exchange: &Exchange, contract: Uuid) {
    let (status, answer) = admin_call(
        app,
        exchange,
        reqwest::Method::PATCH,
        &format!("/v1/admin/contracts/{contract}"),
        Some(json!({ "returns": { "allowed": true, "max_percent": 100 } })),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
}

/// `POST /v1/admin/sales/{id}/returns`, then the decision (`approve` or `deny`) unless
/// `None`: the return's id.
async fn return_sale(
    app: &TestApp,
    exchange: &Exchange,
    sale_id: Uuid,
    reason: &str,
    decision: Option<&str>,
) -> Uuid {
    let (status, requested) = admin_call(
        app,
        exchange,
        reqwest::Method::POST,
        &format!("/v1/admin/sales/{sale_id}/returns"),
        Some(json!({ "reason": reason })),
    )
    .await;
    assert_eq!(status, 201, "{requested}");
    let id: Uuid = requested["id"].as_str().unwrap().parse().unwrap();
    if let Some(decision) = decision {
        let (status, decided) = admin_call(
            app,
            exchange,
            reqwest::Method::POST,
            &format!("/v1/admin/returns/{id}/{decision}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{decided}");
    }
    id
}

async fn set_return_policy(app: &TestApp, exchange: &Exchange, policy: &str) {
    let (status, answer) = admin_call(
        app,
        exchange,
        reqwest::Method::PATCH,
        &format!("/v1/admin/offers/{}", exchange.offer_id),
        Some(json!({ "return_policy": policy })),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
}

async fn get(app: &TestApp, exchange: &Exchange, path: &str) -> (u16, Value) {
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

fn time(value: &Value) -> DateTime<Utc> {
    value.as_str().unwrap().parse().unwrap()
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn the_explain_the_lead_view_and_the_sales_list_show_returns(pool: PgPool) {
    let exchange = Exchange::create(&pool, "exclusive").await;
    let server = MockServer::start().await;
    // The winner rejects; the cascade sells to the runner-up, whose sale is then returned.
    let (_, refuser) = bidder(
        &exchange,
        &server,
        "/a",
        false,
        ContractSpec::fixed(Some(5000), None),
    )
    .await;
    let (_, keeper) = bidder(
        &exchange,
        &server,
        "/b",
        true,
        ContractSpec::fixed(Some(4000), None),
    )
    .await;
    let app = spawn_app(pool.clone()).await;

    let answer = sell(&app, &exchange).await;
    assert_eq!(answer["status"], "sold", "{answer}");
    let sale = sale_of(&exchange, &answer, keeper).await;
    // First a return denied, then one approved: both show, oldest first.
    allow_returns(&app, &exchange, keeper).await;
    let denied = return_sale(&app, &exchange, sale, "duplicate", Some("deny")).await;
    let approved = return_sale(&app, &exchange, sale, "bad_phone", Some("approve")).await;

    let (status, view) = app
        .ping_view(&exchange.admin_key, answer["ping_id"].as_str().unwrap())
        .await;
    assert_eq!(status, 200, "{view}");
    let returned = &outcome_of(&view, keeper)["sale"];
    assert_eq!(returned["status"], "returned", "{view:#}");
    assert_eq!(cents(&returned["price"]), 4000);
    // The payout the sale earned still shows; the return says what was taken back.
    assert_eq!(cents(&returned["payout"]), 2800);
    let returns = returned["returns"].as_array().unwrap();
    assert_eq!(returns.len(), 2, "{returned:#}");
    assert_eq!(returns[0]["id"], json!(denied));
    assert_eq!(
        (
            &returns[0]["status"],
            &returns[0]["reason"],
            &returns[0]["payout_reversed"]
        ),
        (&json!("denied"), &json!("duplicate"), &Value::Null)
    );
    assert!(returns[0]["decided_at"].is_string());
    assert_eq!(returns[1]["id"], json!(approved));
    assert_eq!(
        (&returns[1]["status"], &returns[1]["reason"]),
        (&json!("approved"), &json!("bad_phone"))
    );
    assert_eq!(cents(&returns[1]["price"]), 4000);
    assert_eq!(cents(&returns[1]["payout_reversed"]), 2800);
    assert!(time(&returns[0]["requested_at"]) <= time(&returns[1]["requested_at"]));
    let mut keys: Vec<&String> = returns[1].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "decided_at",
            "id",
            "payout_reversed",
            "price",
            "reason",
            "requested_at",
            "status"
        ]
    );
    // The refused winner's sale has no returns; the cascade's attempts show the same.
    assert_eq!(outcome_of(&view, refuser)["sale"]["status"], "rejected");
    assert_eq!(outcome_of(&view, refuser)["sale"]["returns"], json!([]));
    let attempts = view["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{view:#}");
    assert_eq!(
        (&attempts[0]["status"], &attempts[0]["returns"]),
        (&json!("rejected"), &json!([]))
    );
    assert_eq!(attempts[1]["status"], "returned");
    assert_eq!(attempts[1]["sale_id"], json!(sale));
    assert_eq!(attempts[1]["returns"], returned["returns"]);

    // The lead view: the same per sale.
    let (status, lead) = get(
        &app,
        &exchange,
        &format!("/v1/admin/leads/{}", answer["lead_id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(status, 200, "{lead}");
    let sales = lead["sales"].as_array().unwrap();
    assert_eq!(sales.len(), 2, "{lead:#}");
    let kept = sales.iter().find(|s| s["id"] == json!(sale)).unwrap();
    assert_eq!(kept["status"], "returned");
    assert_eq!(kept["returns"], returned["returns"]);
    let refused = sales.iter().find(|s| s["id"] != json!(sale)).unwrap();
    assert_eq!(refused["returns"], json!([]));

    // The sales list shows the returned sale and filters by it.
    let (status, page) = get(&app, &exchange, "/v1/admin/sales?status=returned").await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page:#}");
    assert_eq!(
        (&items[0]["id"], &items[0]["status"]),
        (&json!(sale), &json!("returned"))
    );
    assert_eq!(cents(&items[0]["price"]), 4000);
    let (_, sold) = get(&app, &exchange, "/v1/admin/sales?status=sold").await;
    assert_eq!(sold["items"], json!([]), "the sale is no longer sold");
    let (status, _) = get(&app, &exchange, "/v1/admin/sales?status=refunded").await;
    assert_eq!(status, 422);

    // The buyer's and the partner's books moved with the return.
    let buyer: i64 = sqlx::query_scalar(
        "SELECT b.balance_cents FROM buyers b JOIN contracts c ON c.tenant_id = b.tenant_id AND c.buyer_id = b.id
         WHERE c.tenant_id = $1 AND c.id = $2",
    )
    .bind(exchange.tenant_id)
    .bind(keeper)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(buyer, 100_000, "charged 40.00, refunded 40.00");
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn the_summary_report_counts_returns_and_net_figures_exactly(pool: PgPool) {
    let exchange = Exchange::create(&pool, "multisell").await;
    let server = MockServer::start().await;
    // Every post sells to both: 12.50 and 10.00, the partner paid 70 % (8.75 and 7.00).
    let (_, a) = bidder(
        &exchange,
        &server,
        "/a",
        true,
        ContractSpec::fixed(None, Some(1250)),
    )
    .await;
    let (_, b) = bidder(
        &exchange,
        &server,
        "/b",
        true,
        ContractSpec::fixed(None, Some(1000)),
    )
    .await;
    let app = spawn_app(pool.clone()).await;
    let mut posts = Vec::new();
    for _ in 0..3 {
        let answer = sell(&app, &exchange).await;
        assert_eq!(answer["status"], "sold", "{answer}");
        posts.push(answer);
    }
    // a's first sale returned under reverse_payout (8.75 taken back), b's first under
    // exchange_absorbs (nothing taken back); a's second return denied and b's second only
    // requested: neither counts.
    allow_returns(&app, &exchange, a).await;
    allow_returns(&app, &exchange, b).await;
    let first_of_a = sale_of(&exchange, &posts[0], a).await;
    return_sale(&app, &exchange, first_of_a, "bad_phone", Some("approve")).await;
    set_return_policy(&app, &exchange, "exchange_absorbs").await;
    let absorbed = sale_of(&exchange, &posts[0], b).await;
    let absorbed_return = return_sale(&app, &exchange, absorbed, "fraud", Some("approve")).await;
    let second_of_a = sale_of(&exchange, &posts[1], a).await;
    return_sale(&app, &exchange, second_of_a, "other", Some("deny")).await;
    let second_of_b = sale_of(&exchange, &posts[1], b).await;
    return_sale(&app, &exchange, second_of_b, "other", None).await;

    let (_, view) = app
        .ping_view(&exchange.admin_key, posts[0]["ping_id"].as_str().unwrap())
        .await;
    let absorbed_view = &outcome_of(&view, b)["sale"]["returns"][0];
    assert_eq!(absorbed_view["id"], json!(absorbed_return));
    assert_eq!(
        absorbed_view["payout_reversed"],
        json!(0.0),
        "{absorbed_view}"
    );

    let figures = |row: &Value| {
        [
            "revenue",
            "payout",
            "margin",
            "returned_revenue",
            "net_revenue",
            "net_payout",
            "net_margin",
        ]
        .map(|field| cents(&row[field]))
    };
    let (status, report) = get(
        &app,
        &exchange,
        "/v1/admin/reports/summary?group_by=contract",
    )
    .await;
    assert_eq!(status, 200, "{report}");
    let rows = report["rows"].as_array().unwrap();
    let row_of = |id: Uuid| rows.iter().find(|r| r["group_id"] == json!(id)).unwrap();
    let (a_row, b_row) = (row_of(a), row_of(b));
    assert_eq!(
        (&a_row["sales"], &a_row["returns"], &a_row["return_rate"]),
        (&json!(3), &json!(1), &json!(0.3333)),
        "{a_row}"
    );
    assert_eq!(
        figures(a_row),
        [3750, 2625, 1125, 1250, 2500, 1750, 750],
        "{a_row}"
    );
    assert_eq!(
        (&b_row["sales"], &b_row["returns"], &b_row["return_rate"]),
        (&json!(3), &json!(1), &json!(0.3333)),
        "{b_row}"
    );
    // The exchange absorbed b's return: the partner keeps its payout, the margin goes below 0.
    assert_eq!(
        figures(b_row),
        [3000, 2100, 900, 1000, 2000, 2100, -100],
        "{b_row}"
    );

    let (_, by_offer) = get(&app, &exchange, "/v1/admin/reports/summary?group_by=offer").await;
    let row = &by_offer["rows"][0];
    assert_eq!(row["group_id"], json!(exchange.offer_id));
    assert_eq!(
        (&row["sales"], &row["returns"], &row["return_rate"]),
        (&json!(6), &json!(2), &json!(0.3333)),
        "{row}"
    );
    assert_eq!(
        figures(row),
        [6750, 4725, 2025, 2250, 4500, 3850, 650],
        "{row}"
    );

    // By partner: the same sales; by buyer: each buyer's own contract.
    let (_, by_partner) = get(
        &app,
        &exchange,
        "/v1/admin/reports/summary?group_by=partner",
    )
    .await;
    assert_eq!(
        by_partner["rows"][0]["group_id"],
        json!(exchange.partner_id)
    );
    assert_eq!(figures(&by_partner["rows"][0]), figures(row));
    let (_, by_buyer) = get(&app, &exchange, "/v1/admin/reports/summary?group_by=buyer").await;
    let mut buyers: Vec<[i64; 7]> = by_buyer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(figures)
        .collect();
    buyers.sort();
    let mut contracts = vec![figures(a_row), figures(b_row)];
    contracts.sort();
    assert_eq!(buyers, contracts);
}
