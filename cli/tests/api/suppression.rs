//! Suppression lists (docs/suppression.md): a consumer on a list declines the contracts the
//! list covers with `suppressed`, at the ping (by its dedup hashes) and at the post (by the
//! posted email and phone), without a reservation, a delivery or a charge; lists are uploaded
//! as JSON batches or CSV, validated with pointers, paused, and each tenant's own.

use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fixtures::{ContractSpec, Exchange, consent, full_lead, outcome_of, ping_lead};
use crate::harness::{TestApp, spawn_app};

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

impl TestApp {
    /// Sends a CSV file to a list's entries.
    async fn upload_csv(&self, key: &str, list: &str, csv: &str) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(&format!("/v1/admin/suppression-lists/{list}/entries")))
            .bearer_auth(key)
            .header("content-type", "text/csv")
            .body(csv.to_owned())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// A buyer whose deliveries go to `/{name}` on `buyers` and are accepted.
fn shared_to(buyers: &MockServer, name: &str) -> ContractSpec {
    ContractSpec {
        delivery: Some(
            json!({ "url": format!("{}/{name}", buyers.uri()), "timeout_ms": 2000,
                               "accept": { "path": "/status", "equals": "accepted" } }),
        ),
        ..ContractSpec::fixed(None, Some(1500))
    }
}

async fn deliveries_to(buyers: &MockServer, name: &str) -> usize {
    let wanted = format!("/{name}");
    buyers
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == wanted)
        .count()
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_listed_consumer_declines_the_list_s_contracts_at_the_ping_and_at_the_post(pool: PgPool) {
    let exchange = Exchange::create(&pool, "multisell").await;
    let buyers = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "status": "accepted" })))
        .mount(&buyers)
        .await;
    let (careful_buyer, careful) = exchange
        .buyer_with(100_000, shared_to(&buyers, "careful"))
        .await;
    let (_, other) = exchange
        .buyer_with(100_000, shared_to(&buyers, "other"))
        .await;
    let app = spawn_app(pool.clone()).await;
    let (admin, key) = (&exchange.admin_key, &exchange.posting_key);

    // A list, filled from a CSV export (other columns ignored), attached to one contract.
    let (status, list) = app
        .admin(
            Method::POST,
            "/v1/admin/suppression-lists",
            admin,
            Some(json!({ "name": "Do not call" })),
        )
        .await;
    assert_eq!(status, 201, "{list}");
    assert_eq!(list["entry_count"], 0);
    let list_id = list["id"].as_str().unwrap().to_owned();
    let csv = "First name,Email,Phone\nAda,ADA@example.com,\nGrace,,+1 (415) 555-2671\n";
    let (status, changed) = app.upload_csv(admin, &list_id, csv).await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        (
            &changed["received"],
            &changed["changed"],
            &changed["entry_count"]
        ),
        (&json!(2), &json!(2), &json!(2))
    );
    // The same consumers again add nothing.
    let (_, again) = app.upload_csv(admin, &list_id, csv).await;
    assert_eq!(
        (&again["changed"], &again["entry_count"]),
        (&json!(0), &json!(2))
    );
    let (status, patched) = app
        .admin(
            Method::PATCH,
            &format!("/v1/admin/contracts/{careful}"),
            admin,
            Some(json!({ "suppression_list_ids": [list_id] })),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["suppression_list_ids"], json!([list_id]));

    // At the ping: the partner's dedup hash of the listed email declines that contract only.
    let listed =
        json!({ "lead": ping_lead(), "dedup": { "email_sha256": sha256_hex("ada@example.com") } });
    let (status, ping) = app.ping(key, listed.clone()).await;
    assert_eq!(
        (status, ping["status"].as_str()),
        (200, Some("bids")),
        "{ping}"
    );
    let ping_id = ping["ping_id"].as_str().unwrap();
    let (_, view) = app.ping_view(admin, ping_id).await;
    let declined = outcome_of(&view, careful);
    assert_eq!(declined["reason"], "suppressed", "{view}");
    assert_eq!(declined["detail"], list_id);
    let explanation = declined["explanation"].as_str().unwrap();
    assert!(explanation.contains("Do not call"), "{explanation}");
    assert_eq!(outcome_of(&view, other)["outcome"], "won");

    // A consumer not on the list: both contracts win.
    let unlisted =
        json!({ "lead": ping_lead(), "dedup": { "email_sha256": sha256_hex("bob@example.com") } });
    let (_, ping) = app.ping(key, unlisted).await;
    assert_eq!(ping["bids"].as_array().map(Vec::len), Some(2), "{ping}");

    // At the post: a ping without hashes wins both, and the posted email is found on the list.
    let (_, ping) = app.ping(key, json!({ "lead": ping_lead() })).await;
    assert_eq!(ping["bids"].as_array().map(Vec::len), Some(2), "{ping}");
    let mut lead = full_lead();
    lead["email"] = json!(" Ada@Example.com");
    let (status, post) = app
        .post(
            key,
            json!({ "ping_id": ping["ping_id"], "lead": lead, "consent": consent() }),
        )
        .await;
    assert_eq!(status, 200, "{post}");
    assert_eq!(post["status"], "partially_sold", "{post}");
    let (_, view) = app
        .ping_view(admin, ping["ping_id"].as_str().unwrap())
        .await;
    let sale = &outcome_of(&view, careful)["sale"];
    assert_eq!(sale["status"], "suppressed", "{view}");
    // The partner's answer names the list by its id only.
    assert!(
        sale["reason"].as_str().unwrap().contains(&list_id),
        "{sale}"
    );
    assert!(!post.to_string().contains("Do not call"), "{post}");
    assert_eq!(outcome_of(&view, other)["sale"]["status"], "sold");
    // Nothing was delivered to the careful buyer, nor charged.
    assert_eq!(deliveries_to(&buyers, "careful").await, 0);
    assert_eq!(deliveries_to(&buyers, "other").await, 1);
    assert_eq!(
        exchange.buyer_books(careful_buyer).await,
        (100_000, 100_000)
    );

    // On the offer, the list declines every contract: the whole ping has no bids.
    let (status, offer) = app
        .admin(
            Method::PATCH,
            &format!("/v1/admin/offers/{}", exchange.offer_id),
            admin,
            Some(json!({ "suppression_list_ids": [list_id] })),
        )
        .await;
    assert_eq!(status, 200, "{offer}");
    let by_phone =
        json!({ "lead": ping_lead(), "dedup": { "phone_sha256": sha256_hex("4155552671") } });
    let (_, ping) = app.ping(key, by_phone.clone()).await;
    assert_eq!(ping["status"], "no_bids", "{ping}");
    let (_, view) = app
        .ping_view(admin, ping["ping_id"].as_str().unwrap())
        .await;
    assert_eq!(outcome_of(&view, other)["reason"], "suppressed", "{view}");

    // A paused list suppresses no more; removing an entry takes the consumer off.
    let (status, _) = app
        .admin(
            Method::PATCH,
            &format!("/v1/admin/suppression-lists/{list_id}"),
            admin,
            Some(json!({ "status": "paused" })),
        )
        .await;
    assert_eq!(status, 200);
    let (_, ping) = app.ping(key, by_phone.clone()).await;
    assert_eq!(ping["status"], "bids", "{ping}");
    app.admin(
        Method::PATCH,
        &format!("/v1/admin/suppression-lists/{list_id}"),
        admin,
        Some(json!({ "status": "active" })),
    )
    .await;
    let (status, removed) = app
        .admin(
            Method::DELETE,
            &format!("/v1/admin/suppression-lists/{list_id}/entries"),
            admin,
            Some(json!({ "phones": ["415-555-2671"] })),
        )
        .await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(
        (&removed["changed"], &removed["entry_count"]),
        (&json!(1), &json!(1))
    );
    let (_, ping) = app.ping(key, by_phone).await;
    assert_eq!(ping["status"], "bids", "{ping}");
    let (_, ping) = app.ping(key, listed).await;
    assert_eq!(ping["status"], "no_bids", "{ping}");
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn uploads_and_attachments_are_validated_with_pointers_and_each_tenant_s_own(pool: PgPool) {
    let exchange = Exchange::create(&pool, "multisell").await;
    let other = Exchange::create(&pool, "multisell").await;
    let app = spawn_app(pool.clone()).await;
    let admin = &exchange.admin_key;
    let (_, list) = app
        .admin(
            Method::POST,
            "/v1/admin/suppression-lists",
            admin,
            Some(json!({ "name": "Litigators", "description": "known TCPA plaintiffs" })),
        )
        .await;
    let list_id = list["id"].as_str().unwrap().to_owned();
    let entries = format!("/v1/admin/suppression-lists/{list_id}/entries");

    // A bad value refuses the whole batch, pointed at and never echoed.
    let (status, problem) = app
        .admin(
            Method::POST,
            &entries,
            admin,
            Some(json!({ "emails": ["ok@example.com", "grace-at-example"], "hashes": ["abc"] })),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    let pointers: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, ["/emails/1", "/hashes/0"], "{problem}");
    assert!(
        !problem.to_string().contains("grace-at-example"),
        "{problem}"
    );
    let (status, problem) = app
        .upload_csv(admin, &list_id, "phone\n4155552671\n12345\n")
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["pointer"], "/rows/2/phone");
    let (status, problem) = app.upload_csv(admin, &list_id, "name\nAda\n").await;
    assert_eq!(status, 422, "{problem}");
    let (_, list) = app
        .admin(
            Method::GET,
            &format!("/v1/admin/suppression-lists/{list_id}"),
            admin,
            None,
        )
        .await;
    assert_eq!(list["entry_count"], 0, "nothing half-written: {list}");

    // A consumer's request: are they on it?
    let lookup = format!("/v1/admin/suppression-lists/{list_id}/lookup");
    let (status, found) = app
        .admin(
            Method::POST,
            &lookup,
            admin,
            Some(json!({ "emails": ["Ada@Example.com"] })),
        )
        .await;
    assert_eq!((status, &found["listed"]), (200, &json!(0)), "{found}");

    // Hashes straight from another system.
    let (status, changed) = app
        .admin(
            Method::POST,
            &entries,
            admin,
            Some(json!({ "hashes": [sha256_hex("ada@example.com"), sha256_hex("2145550123")] })),
        )
        .await;
    assert_eq!(
        (status, &changed["entry_count"]),
        (200, &json!(2)),
        "{changed}"
    );
    let (_, found) = app
        .admin(
            Method::POST,
            &lookup,
            admin,
            Some(json!({ "emails": ["Ada@Example.com", "bob@example.com"], "phones": ["214-555-0123"] })),
        )
        .await;
    assert_eq!(
        (&found["checked"], &found["listed"]),
        (&json!(3), &json!(2)),
        "{found}"
    );

    // Attachments name the tenant's lists only.
    let unknown = Uuid::now_v7();
    let (status, problem) = app
        .admin(
            Method::PATCH,
            &format!("/v1/admin/offers/{}", exchange.offer_id),
            admin,
            Some(json!({ "suppression_list_ids": [list_id, unknown.to_string(), "x"] })),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    let pointers: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(
        pointers,
        ["/suppression_list_ids/2", "/suppression_list_ids/1"],
        "{problem}"
    );

    // Another tenant sees none of it.
    let (status, _) = app
        .admin(
            Method::GET,
            &format!("/v1/admin/suppression-lists/{list_id}"),
            &other.admin_key,
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .admin(
            Method::POST,
            &entries,
            &other.admin_key,
            Some(json!({ "emails": ["a@b.co"] })),
        )
        .await;
    assert_eq!(status, 404);
    let (status, problem) = app
        .admin(
            Method::PATCH,
            &format!("/v1/admin/offers/{}", other.offer_id),
            &other.admin_key,
            Some(json!({ "suppression_list_ids": [list_id] })),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    let (_, lists) = app
        .admin(
            Method::GET,
            "/v1/admin/suppression-lists",
            &other.admin_key,
            None,
        )
        .await;
    assert_eq!(lists["items"], json!([]));
    let (_, list) = app
        .admin(
            Method::GET,
            &format!("/v1/admin/suppression-lists/{list_id}"),
            admin,
            None,
        )
        .await;
    assert_eq!(list["entry_count"], 2, "{list}");
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn a_list_of_a_million_consumers_suppresses_at_the_ping_and_at_the_post(pool: PgPool) {
    let exchange = Exchange::create(&pool, "multisell").await;
    let buyers = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "status": "accepted" })))
        .mount(&buyers)
        .await;
    let (buyer, _) = exchange
        .buyer_with(100_000, shared_to(&buyers, "buyer"))
        .await;
    // A million consumers (the hashes of numbers, as `gavel bench --suppression-entries`
    // seeds them), then the posted consumer's phone among them, on the offer.
    let list_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO suppression_lists (tenant_id, id, name, entry_count) VALUES ($1, $2, 'Big', 1000001)",
    )
    .bind(exchange.tenant_id)
    .bind(list_id)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO suppression_entries (tenant_id, list_id, hash)
         SELECT $1, $2, sha256(n::text::bytea) FROM generate_series(1, 1000000) AS n
         UNION ALL SELECT $1, $2, sha256('2145550123'::bytea)",
    )
    .bind(exchange.tenant_id)
    .bind(list_id)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE offers SET suppression_list_ids = ARRAY[$2] WHERE id = $1")
        .bind(exchange.offer_id)
        .bind(list_id)
        .execute(&pool)
        .await
        .unwrap();
    let app = spawn_app(pool.clone()).await;
    let key = &exchange.posting_key;

    // At the ping: one of the million, found by its hash; a consumer not on it bids.
    let listed = json!({ "lead": ping_lead(), "dedup": { "email_sha256": sha256_hex("777777") } });
    let (_, ping) = app.ping(key, listed).await;
    assert_eq!(ping["status"], "no_bids", "{ping}");
    let unlisted =
        json!({ "lead": ping_lead(), "dedup": { "email_sha256": sha256_hex("1000001") } });
    let (_, ping) = app.ping(key, unlisted).await;
    assert_eq!(ping["status"], "bids", "{ping}");

    // At the post: the posted phone (the full lead's 214-555-0123) is on the list.
    let (status, post) = app
        .post(
            key,
            json!({ "ping_id": ping["ping_id"], "lead": full_lead(), "consent": consent() }),
        )
        .await;
    assert_eq!(status, 200, "{post}");
    assert_eq!(post["status"], "unsold", "{post}");
    assert_eq!(post["results"][0]["status"], "suppressed", "{post}");
    assert_eq!(deliveries_to(&buyers, "buyer").await, 0);
    assert_eq!(exchange.buyer_books(buyer).await, (100_000, 100_000));
}
