//! PII at rest on the post path (docs/pii.md): each post seals its lead and consent once, and
//! masks what each buyer answered. Run with `cargo bench --bench pii`.

use criterion::{Criterion, criterion_group, criterion_main};
use gavel::pii::{PiiKeys, personal_values, redact};
use serde_json::{Map, Value, json};
use std::hint::black_box;
use uuid::Uuid;

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

fn pii(c: &mut Criterion) {
    let keys = PiiKeys::parse(&PiiKeys::generate("bench"))
        .unwrap()
        .unwrap();
    let lead = object(json!({
        "zip": "75201", "state": "TX", "age": 34, "homeowner": true, "credit": "good",
        "first_name": "Ada", "last_name": "Lovelace", "email": "ada.lovelace@example.com",
        "phone": "(214) 555-0123", "address": "12 Analytical Engine Way", "city": "Dallas"
    }));
    let consent = object(json!({
        "trustedform_cert_url": "https://cert.trustedform.com/2a6b0c9d8e7f",
        "text": "By clicking Submit I agree to be contacted by Acme Insurance and its partners.",
        "consented_at": "2026-11-25T17:04:12Z", "ip": "203.0.113.7"
    }));
    let clear = object(
        json!({ "zip": "75201", "state": "TX", "age": 34, "homeowner": true, "credit": "good" }),
    );
    let (tenant, lead_id) = (Uuid::now_v7(), Uuid::now_v7());
    c.bench_function("pii/seal_a_posted_lead", |b| {
        b.iter(|| keys.seal_lead(tenant, lead_id, black_box(clear.clone()), &lead, &consent))
    });
    let stored = keys.seal_lead(tenant, lead_id, clear.clone(), &lead, &consent);
    c.bench_function("pii/open_a_stored_lead", |b| {
        b.iter(|| {
            keys.open_lead(
                tenant,
                lead_id,
                &stored.sealed.key_id,
                black_box(&stored.sealed.bytes),
            )
            .unwrap()
        })
    });
    let answer = r#"{"status":"accepted","lead_id":"B-88812","message":"Lead for ada.lovelace@example.com accepted","price":31.5}"#;
    c.bench_function("pii/mask_a_buyers_answer", |b| {
        b.iter(|| redact(black_box(answer), &personal_values(&lead, &consent)))
    });
}

criterion_group!(benches, pii);
criterion_main!(benches);
