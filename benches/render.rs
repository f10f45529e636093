//! Rendering one delivery call from a contract's `request` (docs/buyer-integrations.md): a
//! field map and a text template, each compiled once as when the configuration loads, then
//! rendered for a lead as every sale does. Run with `cargo bench --bench render`.

use criterion::{Criterion, criterion_group, criterion_main};
use gavel::auction::{CompiledSchema, Pricing, SaleType};
use gavel::buyers::delivery::{DeliveryConfig, DeliveryRequest};
use gavel::buyers::rtb::BidRequest;
use gavel::integration::{CallNames, Named};
use gavel::money::Money;
use serde_json::{Value, json};
use std::hint::black_box;
use uuid::Uuid;

fn delivery(request: Value) -> DeliveryConfig {
    DeliveryConfig::parse(
        &json!({ "url": "https://buyer.example/leads?src=gavel", "request": request }),
    )
    .expect("a valid delivery")
}

fn bench(c: &mut Criterion) {
    let schema = CompiledSchema::compile(&json!([
        { "name": "state", "type": "string" }, { "name": "zip", "type": "string" },
        { "name": "age", "type": "integer" }, { "name": "credit", "type": "string" },
        { "name": "dob", "type": "date" },
        { "name": "first_name", "type": "string", "pii": true },
        { "name": "last_name", "type": "string", "pii": true },
        { "name": "email", "type": "email", "pii": true },
        { "name": "phone", "type": "phone", "pii": true }
    ]))
    .expect("a valid schema");
    let Value::Object(lead) = json!({
        "state": "TX", "zip": "75001", "age": 42, "credit": "good", "dob": "1980-02-29",
        "first_name": "Ada", "last_name": "O'Brien & Sons <x>", "email": " Ada@Example.com ",
        "phone": "(214) 555-0123"
    }) else {
        unreachable!("an object literal")
    };
    let Value::Object(consent) = json!({ "text": "I agree", "ip": "203.0.113.7" }) else {
        unreachable!("an object literal")
    };
    let request = DeliveryRequest {
        lead_id: Uuid::now_v7(),
        ping_id: Uuid::now_v7(),
        offer: "auto-insurance",
        sale_type: SaleType::Exclusive,
        price: Money::from_cents(4000),
        rtb_ref: Some("ref-123"),
        test: false,
        lead: &lead,
        consent: &consent,
        names: CallNames {
            offer: Some(Named {
                id: Uuid::now_v7(),
                name: "auto-insurance",
            }),
            campaign: None,
            partner: Some(Named {
                id: Uuid::now_v7(),
                name: "Quote Funnel",
            }),
            sub_ids: None,
            schema: Some(&schema),
        },
    };
    let field_map = delivery(json!({ "fields": {
        "FirstName": "lead.first_name",
        "LastName": "lead.last_name",
        "Phone": { "from": "lead.phone", "transform": ["digits", "phone:(###) ###-####"] },
        "EmailHash": { "from": "lead.email", "transform": ["trim", "lower", "sha256"] },
        "BirthDate": { "from": "lead.dob", "transform": ["date:%m/%d/%Y"] },
        "Credit": { "from": "lead.credit", "map": { "excellent": "A", "good": "B" }, "map_default": "C" },
        "applicant/zip": "lead.zip",
        "applicant/state": "lead.state",
        "applicant/age": "lead.age",
        "Price": "price",
        "LeadId": "lead_id",
        "Source": { "value": "gavel" }
    } }));
    let template = delivery(json!({
        "headers": { "X-Lead-Id": "{{ lead_id }}" },
        "template": "{\"first\": {{ lead.first_name }}, \"last\": {{ lead.last_name }}, \
            \"phone\": {{ lead.phone|phone('(###) ###-####') }}, \
            \"email_hash\": {{ lead.email|trim|lower|sha256 }}, \"dob\": {{ lead.dob|date('%m/%d/%Y') }}, \
            \"applicant\": {\"zip\": {{ lead.zip }}, \"state\": {{ lead.state }}, \"age\": {{ lead.age }}}, \
            \"price\": {{ price }}, \"lead_id\": {{ lead_id }}, \"source\": \"gavel\"}"
    }));
    let native_body = || serde_json::to_vec(&request).expect("serializable");
    c.bench_function("render/delivery_native_json", |b| {
        b.iter(|| black_box(native_body()))
    });
    // The RTB call at the ping (30 buyers a ping): a short PII-free template.
    let Value::Object(ping_lead) =
        json!({ "state": "TX", "zip": "75001", "age": 42, "credit": "good", "dob": "1980-02-29" })
    else {
        unreachable!("an object literal")
    };
    let Pricing::Rtb(rtb) = Pricing::parse(&json!({ "type": "rtb", "url": "https://buyer.example/bid",
        "request": { "template": "{\"zip\": {{ lead.zip }}, \"state\": {{ lead.state }}, \"age\": {{ lead.age }}, \
            \"credit\": {{ lead.credit }}, \"ping\": {{ ping_id }}, \"tmax\": {{ tmax_ms }}}" } }))
    .expect("a valid pricing") else {
        unreachable!("rtb pricing")
    };
    let bid_request = BidRequest {
        ping_id: Uuid::now_v7(),
        offer: "auto-insurance",
        sale_types: &[SaleType::Exclusive, SaleType::Shared],
        lead: &ping_lead,
        test: false,
        tmax_ms: 200,
        names: request.names,
    };
    let rtb_request = rtb.request.as_ref().expect("a request");
    c.bench_function("render/rtb_template", |b| {
        b.iter(|| {
            black_box(rtb_request)
                .render(&rtb.url, &black_box(&bid_request).context())
                .expect("renders")
        })
    });
    for (name, config) in [("field_map", &field_map), ("template", &template)] {
        let spec = config.request.as_ref().expect("a request");
        c.bench_function(&format!("render/delivery_{name}"), |b| {
            b.iter(|| {
                black_box(spec)
                    .render(&config.url, &black_box(&request).context())
                    .expect("renders")
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
