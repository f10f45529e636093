//! Names, not only ids (issue 19): the explain of a ping, the sales list, the lead's sales and
//! the summary report name every contract, buyer, partner, campaign and offer beside its id,
//! and a `filtered` decline says in words which filter failed and why.

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fixtures::{ContractSpec, Exchange, consent, full_lead, outcome_of, ping_lead};
use crate::harness::{TestApp, spawn_app};

/// A tenant with three buyers, each with one contract: `Acme TX` (wins: fixed exclusive
/// $40.00, delivered and accepted), `Beacon CA NY` (filtered: state in CA, NY) and `Crest 50+`
/// (filtered by its second filter: age at least 50).
struct Named {
    exchange: Exchange,
    winner: (Uuid, Uuid),
    by_state: (Uuid, Uuid),
    by_age: (Uuid, Uuid),
    _buyers: MockServer,
}

async fn named_exchange(pool: &PgPool) -> Named {
    let exchange = Exchange::create(pool, "exclusive").await;
    let buyers = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/leads"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "status": "accepted" })))
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
    let by_state = exchange
        .buyer_with(
            100_000,
            ContractSpec {
                filters: Some(json!([{ "field": "state", "op": "in", "value": ["CA", "NY"] }])),
                ..ContractSpec::fixed(Some(5000), None)
            },
        )
        .await;
    let by_age = exchange
        .buyer_with(
            100_000,
            ContractSpec {
                filters: Some(json!([{ "field": "state", "op": "exists" },
                                     { "field": "age", "op": "gte", "value": 50 }])),
                ..ContractSpec::fixed(Some(6000), None)
            },
        )
        .await;
    for ((buyer, contract), buyer_name, contract_name) in [
        (winner, "Acme Insurance", "Acme TX"),
        (by_state, "Beacon Leads", "Beacon CA NY"),
        (by_age, "Crest Media", "Crest 50+"),
    ] {
        sqlx::query("UPDATE buyers SET name = $2 WHERE id = $1")
            .bind(buyer)
            .bind(buyer_name)
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("UPDATE contracts SET name = $2 WHERE id = $1")
            .bind(contract)
            .bind(contract_name)
            .execute(pool)
            .await
            .unwrap();
    }
    Named {
        exchange,
        winner,
        by_state,
        by_age,
        _buyers: buyers,
    }
}

/// An admin GET that must answer 200.
async fn get(app: &TestApp, key: &str, path: &str) -> Value {
    let (status, answer) = app.admin(Method::GET, path, key, None).await;
    assert_eq!(status, 200, "GET {path}: {answer}");
    answer
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

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn the_explain_names_everyone_and_tells_a_filtered_decline_in_words(pool: PgPool) {
    let named = named_exchange(&pool).await;
    let exchange = &named.exchange;
    let app = spawn_app(pool.clone()).await;
    let (ping_id, _) = sold_lead(&app, exchange).await;

    let (status, view) = app.ping_view(&exchange.admin_key, &ping_id).await;
    assert_eq!(status, 200, "{view}");
    // The ping's partner, campaign and offer, by id and name.
    assert_eq!(view["partner_id"], json!(exchange.partner_id));
    assert_eq!(view["partner_name"], "Quote Funnel");
    assert_eq!(view["campaign_id"], json!(exchange.campaign_id));
    assert_eq!(view["campaign_name"], "Quote Funnel → auto-insurance");
    assert_eq!(view["offer_id"], json!(exchange.offer_id));
    assert_eq!(view["offer_name"], "auto-insurance");

    // Every contract and its buyer, named; only the filtered ones have words.
    for ((buyer, contract), buyer_name, contract_name) in [
        (named.winner, "Acme Insurance", "Acme TX"),
        (named.by_state, "Beacon Leads", "Beacon CA NY"),
        (named.by_age, "Crest Media", "Crest 50+"),
    ] {
        let outcome = outcome_of(&view, contract);
        assert_eq!(outcome["contract_name"], contract_name, "{outcome}");
        assert_eq!(outcome["buyer_id"], json!(buyer));
        assert_eq!(outcome["buyer_name"], buyer_name, "{outcome}");
    }
    let won = outcome_of(&view, named.winner.1);
    assert_eq!(
        (won["outcome"].as_str(), &won["explanation"]),
        (Some("won"), &Value::Null)
    );

    // The filtered ones: the pointer as before, and the words: the field, the operator, the
    // contract's values and the ping's value.
    let by_state = outcome_of(&view, named.by_state.1);
    assert_eq!(
        (by_state["reason"].as_str(), by_state["detail"].as_str()),
        (Some("filtered"), Some("/filters/0"))
    );
    assert_eq!(
        by_state["explanation"],
        "state is TX, but the contract requires state to be one of CA, NY"
    );
    let by_age = outcome_of(&view, named.by_age.1);
    assert_eq!(by_age["detail"], "/filters/1");
    assert_eq!(
        by_age["explanation"],
        "age is 42, but the contract requires age to be at least 50"
    );

    // The winner and the post's sale, named.
    let winner = &view["winners"][0];
    assert_eq!(
        (
            winner["contract_name"].as_str(),
            winner["buyer_name"].as_str()
        ),
        (Some("Acme TX"), Some("Acme Insurance"))
    );
    let attempt = &view["attempts"][0];
    assert_eq!(
        (
            attempt["status"].as_str(),
            attempt["contract_name"].as_str(),
            attempt["buyer_name"].as_str()
        ),
        (Some("sold"), Some("Acme TX"), Some("Acme Insurance"))
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn an_old_ping_keeps_its_names_and_says_when_the_contract_changed_since(pool: PgPool) {
    let named = named_exchange(&pool).await;
    let exchange = &named.exchange;
    let key = &exchange.admin_key;
    let app = spawn_app(pool.clone()).await;
    let (ping_id, _) = sold_lead(&app, exchange).await;

    // The filtered-by-state contract is archived, the filtered-by-age one loses its filter.
    let (status, archived) = app
        .admin(
            Method::DELETE,
            &format!("/v1/admin/contracts/{}", named.by_state.1),
            key,
            None,
        )
        .await;
    assert_eq!(
        (status, archived["status"].as_str()),
        (200, Some("archived"))
    );
    let (status, patched) = app
        .admin(
            Method::PATCH,
            &format!("/v1/admin/contracts/{}", named.by_age.1),
            key,
            Some(json!({ "filters": [{ "field": "state", "op": "exists" }] })),
        )
        .await;
    assert_eq!(status, 200, "{patched}");

    let (_, view) = app.ping_view(key, &ping_id).await;
    let by_state = outcome_of(&view, named.by_state.1);
    assert_eq!(
        (
            by_state["contract_name"].as_str(),
            by_state["buyer_name"].as_str()
        ),
        (Some("Beacon CA NY"), Some("Beacon Leads")),
        "an archived contract keeps its name: {by_state}"
    );
    assert_eq!(
        by_state["explanation"],
        "state is TX, but the contract requires state to be one of CA, NY \
         (filters as they are now; the contract changed since the ping)"
    );
    // The failing filter is gone: the words fall back to its pointer.
    let by_age = outcome_of(&view, named.by_age.1);
    assert_eq!(by_age["detail"], "/filters/1");
    assert_eq!(
        by_age["explanation"],
        "the contract's filter at /filters/1 did not hold for the ping \
         (the contract changed since the ping and has no such filter now)"
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn sales_leads_and_reports_name_their_groups(pool: PgPool) {
    let named = named_exchange(&pool).await;
    let exchange = &named.exchange;
    let key = &exchange.admin_key;
    let app = spawn_app(pool.clone()).await;
    let (_, lead_id) = sold_lead(&app, exchange).await;

    // The sales list and the lead's sales: the contract, buyer, partner, campaign and offer.
    let sales = get(&app, key, "/v1/admin/sales").await;
    let lead = get(&app, key, &format!("/v1/admin/leads/{lead_id}")).await;
    for sale in [&sales["items"][0], &lead["sales"][0]] {
        let names = [
            "contract_id",
            "contract_name",
            "buyer_id",
            "buyer_name",
            "partner_id",
            "partner_name",
            "campaign_id",
            "campaign_name",
            "offer_id",
            "offer_name",
        ]
        .map(|field| sale[field].clone());
        assert_eq!(
            names,
            [
                json!(named.winner.1),
                json!("Acme TX"),
                json!(named.winner.0),
                json!("Acme Insurance"),
                json!(exchange.partner_id),
                json!("Quote Funnel"),
                json!(exchange.campaign_id),
                json!("Quote Funnel → auto-insurance"),
                json!(exchange.offer_id),
                json!("auto-insurance"),
            ],
            "{sale}"
        );
    }

    // The summary report: every group named, by every grouping.
    let expected = [
        ("offer", vec![(exchange.offer_id, "auto-insurance")]),
        ("partner", vec![(exchange.partner_id, "Quote Funnel")]),
        (
            "buyer",
            vec![
                (named.winner.0, "Acme Insurance"),
                (named.by_state.0, "Beacon Leads"),
                (named.by_age.0, "Crest Media"),
            ],
        ),
        (
            "contract",
            vec![
                (named.winner.1, "Acme TX"),
                (named.by_state.1, "Beacon CA NY"),
                (named.by_age.1, "Crest 50+"),
            ],
        ),
    ];
    for (group_by, groups) in expected {
        let report = get(
            &app,
            key,
            &format!("/v1/admin/reports/summary?group_by={group_by}"),
        )
        .await;
        let mut rows: Vec<(String, String)> = report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                (
                    row["group_id"].as_str().unwrap().to_owned(),
                    row["group_name"].as_str().unwrap_or("<none>").to_owned(),
                )
            })
            .collect();
        rows.sort();
        let mut groups: Vec<(String, String)> = groups
            .into_iter()
            .map(|(id, name)| (id.to_string(), name.to_owned()))
            .collect();
        groups.sort();
        assert_eq!(rows, groups, "group_by={group_by}: {report}");
    }
}
