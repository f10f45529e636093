//! The offer's opt-in lead validation rules (docs/validation.md): refused at the ping for
//! non-PII fields and at the post for PII, with their pointers and codes and never the value;
//! a good lead still sells; a rule that does not fit its field is refused when the offer is saved.

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fixtures::{ContractSpec, Exchange, consent, offer_fields, ping_lead};
use crate::harness::spawn_app;

/// The demo's fields with every rule on: the ZIP against the state, a strict and
/// non-disposable email, a NANP phone.
fn fields_with_rules() -> Value {
    let mut fields = offer_fields();
    for field in fields.as_array_mut().unwrap() {
        let rules = match field["name"].as_str().unwrap() {
            "zip" => json!({ "zip_state": "state" }),
            "email" => json!({ "strict_syntax": true, "refuse_disposable": true }),
            "phone" => json!({ "nanp": true }),
            _ => continue,
        };
        field["validation"] = rules;
    }
    fields
}

/// A lead that passes every rule.
fn good_lead() -> Value {
    let mut lead = ping_lead();
    lead["first_name"] = json!("Ada");
    lead["email"] = json!("ada.lovelace@example.com");
    lead["phone"] = json!("(214) 555-0200");
    lead
}

fn pointers_and_codes(problem: &Value) -> Vec<(String, String)> {
    problem["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors[]: {problem}"))
        .iter()
        .map(|e| {
            (
                e["pointer"].as_str().unwrap().to_owned(),
                e["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pair(pointer: &str, code: &str) -> (String, String) {
    (pointer.to_owned(), code.to_owned())
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn an_offer_s_rules_refuse_bad_leads_with_pointers_and_sell_good_ones(pool: PgPool) {
    let exchange = Exchange::create(&pool, "multisell").await;
    sqlx::query("UPDATE offers SET fields = $1 WHERE id = $2")
        .bind(fields_with_rules())
        .bind(exchange.offer_id)
        .execute(&pool)
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
            json!({ "url": format!("{}/leads", buyers.uri()), "timeout_ms": 1000,
                               "accept": { "path": "/status", "equals": "accepted" } }),
        ),
        ..ContractSpec::fixed(None, Some(1250))
    };
    exchange.buyer_with(100_000, spec).await;
    let app = spawn_app(pool.clone()).await;
    let key = &exchange.posting_key;

    // A ping whose ZIP is in another state: refused at the ping (both fields are non-PII).
    let mut mismatched = ping_lead();
    mismatched["state"] = json!("CA");
    let (status, problem) = app.ping(key, json!({ "lead": mismatched })).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["code"], "zip_state_mismatch");
    assert_eq!(
        pointers_and_codes(&problem),
        [
            pair("/lead/zip", "zip_state_mismatch"),
            pair("/lead/state", "zip_state_mismatch")
        ]
    );
    // A ZIP no one uses is refused too, at its pointer.
    let mut unused = ping_lead();
    unused["zip"] = json!("00001");
    let (status, problem) = app.ping(key, json!({ "lead": unused })).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(
        pointers_and_codes(&problem),
        [pair("/lead/zip", "invalid_zip")]
    );

    // The PII rules wait for the post.
    let (status, ping) = app.ping(key, json!({ "lead": ping_lead() })).await;
    assert_eq!(
        (status, ping["status"].as_str()),
        (200, Some("bids")),
        "{ping}"
    );
    let post =
        |lead: Value| json!({ "ping_id": ping["ping_id"], "lead": lead, "consent": consent() });

    let mut disposable = good_lead();
    disposable["email"] = json!("ada.lovelace@inbox.mailinator.com");
    let (status, _, text) = app.post_raw("/v1/post", key, &post(disposable)).await;
    let problem: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["code"], "disposable_email");
    assert_eq!(
        pointers_and_codes(&problem),
        [pair("/lead/email", "disposable_email")]
    );
    assert!(
        !text.contains("lovelace") && !text.contains("mailinator"),
        "{text}"
    );

    let mut fictional = good_lead();
    fictional["phone"] = json!("(214) 555-0123");
    let (status, _, text) = app.post_raw("/v1/post", key, &post(fictional)).await;
    let problem: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["code"], "invalid_phone");
    assert_eq!(
        pointers_and_codes(&problem),
        [pair("/lead/phone", "invalid_phone")]
    );
    assert!(
        !text.contains("555") && !text.contains("0123") && !text.contains("214"),
        "{text}"
    );

    let mut both = good_lead();
    both["phone"] = json!("+1 911 234 5678");
    both["email"] = json!("ada..lovelace@example.com");
    let (status, problem) = app.post(key, post(both)).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(
        pointers_and_codes(&problem),
        [
            pair("/lead/email", "invalid_email"),
            pair("/lead/phone", "invalid_phone")
        ]
    );

    // The refused posts sold nothing: the good lead still sells, delivered as posted.
    let (status, answer) = app.post(key, post(good_lead())).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "sold", "{answer}");
    let received = buyers.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    let delivered: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(delivered["lead"], good_lead());

    // A direct post checks every rule at once.
    let mut direct = good_lead();
    direct["state"] = json!("NY");
    direct["email"] = json!("someone@yopmail.com");
    let (status, problem) = {
        let (status, _, text) = app
            .post_raw(
                "/v1/leads",
                key,
                &json!({ "lead": direct, "consent": consent() }),
            )
            .await;
        (status, serde_json::from_str::<Value>(&text).unwrap())
    };
    assert_eq!(status, 422, "{problem}");
    assert_eq!(
        pointers_and_codes(&problem),
        [
            pair("/lead/zip", "zip_state_mismatch"),
            pair("/lead/state", "zip_state_mismatch"),
            pair("/lead/email", "disposable_email")
        ]
    );
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn an_offer_with_a_rule_its_field_cannot_have_is_refused_with_pointers(pool: PgPool) {
    let admin_key = gavel::store::tenants::create(&pool, "Rules", "America/New_York")
        .await
        .unwrap()
        .admin_key;
    let app = spawn_app(pool.clone()).await;

    let mut fields = fields_with_rules();
    fields[1]["validation"] = json!({ "zip_state": "province" }); // no such field
    fields[7]["validation"] = json!({ "nanp": true }); // the email field
    fields[8]["validation"] = json!({ "refuse_disposable": true, "typo": true }); // the phone
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
    let pointers: Vec<String> = pointers_and_codes(&problem)
        .into_iter()
        .map(|(pointer, _)| pointer)
        .collect();
    assert_eq!(
        pointers,
        [
            "/fields/7/validation/nanp",
            "/fields/8/validation",
            "/fields/1/validation/zip_state"
        ]
    );

    // The same offer with its rules where they fit is saved and shows them back.
    let (status, offer) = app
        .admin(
            Method::POST,
            "/v1/admin/offers",
            &admin_key,
            Some(json!({ "name": "auto-insurance", "mode": "multisell",
                         "fields": fields_with_rules() })),
        )
        .await;
    assert_eq!(status, 201, "{offer}");
    assert_eq!(offer["fields"], fields_with_rules());

    // A change that puts a rule on the wrong type is refused too, and changes nothing.
    let mut wrong = fields_with_rules();
    wrong[0]["validation"] = json!({ "refuse_disposable": true }); // state is a string
    let id = offer["id"].as_str().unwrap();
    let (status, problem) = app
        .admin(
            Method::PATCH,
            &format!("/v1/admin/offers/{id}"),
            &admin_key,
            Some(json!({ "fields": wrong })),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(
        pointers_and_codes(&problem)[0].0,
        "/fields/0/validation/refuse_disposable"
    );
    let (_, unchanged) = app
        .admin(
            Method::GET,
            &format!("/v1/admin/offers/{id}"),
            &admin_key,
            None,
        )
        .await;
    assert_eq!(unchanged["fields"], fields_with_rules());
}
