//! Read-your-writes of the admin API, and fair sharing between tenants: the statement timeout,
//! the report's bounds, the bound on RTB calls per ping, admin keys checked in memory, and
//! admin reads that take no row locks.

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::fixtures::{offer_fields, ping_lead};
use crate::harness::{TestApp, spawn_app};

async fn created(app: &TestApp, path: &str, key: &str, body: Value) -> Value {
    let (status, answer) = app.admin(Method::POST, path, key, Some(body)).await;
    assert_eq!(status, 201, "POST {path}: {answer}");
    answer
}

fn id(resource: &Value) -> &str {
    resource["id"].as_str().unwrap()
}

async fn admin_key(pool: &PgPool) -> String {
    gavel::store::tenants::create(pool, "Fair Test", "America/New_York")
        .await
        .unwrap()
        .admin_key
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_ping_sent_right_after_an_admin_write_sees_it(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let key = admin_key(&pool).await;
    for round in 0..30 {
        let offer = created(
            &app,
            "/v1/admin/offers",
            &key,
            json!({ "name": format!("offer {round}"), "mode": "multisell", "fields": offer_fields() }),
        )
        .await;
        let partner = created(&app, "/v1/admin/partners", &key, json!({ "name": "P" })).await;
        let campaign = created(
            &app,
            "/v1/admin/campaigns",
            &key,
            json!({ "partner_id": id(&partner), "offer_id": id(&offer),
                    "payout": { "type": "revshare", "percent": 70 } }),
        )
        .await;
        let posting_key = campaign["posting_key"].as_str().unwrap();
        let (status, answer) = app.ping(posting_key, json!({ "lead": ping_lead() })).await;
        assert_eq!(
            (status, &answer["status"]),
            (200, &json!("no_bids")),
            "round {round}: a new campaign's key works at once: {answer}"
        );
        let buyer = created(
            &app,
            "/v1/admin/buyers",
            &key,
            json!({ "name": "B", "credit_limit": 1000.00 }),
        )
        .await;
        let contract = created(
            &app,
            "/v1/admin/contracts",
            &key,
            json!({ "buyer_id": id(&buyer), "offer_id": id(&offer), "name": "C",
                    "pricing": { "type": "fixed", "shared": 12.50 },
                    "delivery": { "url": "http://127.0.0.1:9/leads" } }),
        )
        .await;
        let (status, answer) = app.ping(posting_key, json!({ "lead": ping_lead() })).await;
        assert_eq!(
            (status, &answer["status"]),
            (200, &json!("bids")),
            "round {round}: a new contract bids at once: {answer}"
        );

        // A pause, then a rotated key: each holds for the very next ping.
        let (status, _) = app
            .admin(
                Method::PATCH,
                &format!("/v1/admin/contracts/{}", id(&contract)),
                &key,
                Some(json!({ "status": "paused" })),
            )
            .await;
        assert_eq!(status, 200);
        let (_, answer) = app.ping(posting_key, json!({ "lead": ping_lead() })).await;
        assert_eq!(answer["status"], "no_bids", "round {round}: {answer}");
        let (status, rotated) = app
            .admin(
                Method::POST,
                &format!("/v1/admin/campaigns/{}/rotate-key", id(&campaign)),
                &key,
                None,
            )
            .await;
        assert_eq!(status, 200, "{rotated}");
        let (status, answer) = app.ping(posting_key, json!({ "lead": ping_lead() })).await;
        assert_eq!(
            status, 401,
            "round {round}: the old key fails at once: {answer}"
        );
        let new_key = rotated["posting_key"].as_str().unwrap();
        let (status, answer) = app.ping(new_key, json!({ "lead": ping_lead() })).await;
        assert_eq!(
            status, 200,
            "round {round}: the new key works at once: {answer}"
        );
    }
}
