//! Reading buyers' answers with response rules (docs/buyer-integrations.md): one JSON and one
//! XML delivery answer judged by their rules, and RTB answers read natively (SPEC §3.1) and
//! by rules from JSON, XML and text. The rules are compiled once, outside the timing, as when
//! the configuration loads. Run with `cargo bench --bench read_answer`.

use criterion::{Criterion, criterion_group, criterion_main};
use gavel::auction::{Pricing, RtbPricing, parse_rtb_answer};
use gavel::buyers::delivery::{DeliveryConfig, judge};
use gavel::money::{ExtraDecimals, Money};
use serde_json::{Value, json};
use std::hint::black_box;

fn rtb(response: Option<Value>) -> RtbPricing {
    let mut pricing = json!({ "type": "rtb", "url": "https://buyer.example/bid" });
    if let Some(response) = response {
        pricing["response"] = response;
    }
    match Pricing::parse(&pricing).unwrap() {
        Pricing::Rtb(rtb) => rtb,
        Pricing::Fixed(_) => unreachable!(),
    }
}

fn read_answer(c: &mut Criterion) {
    let json_delivery = DeliveryConfig::parse(&json!({ "url": "https://buyer.example/leads",
        "response": {
            "status": { "409": "duplicate", "4xx": "rejected" },
            "accepted": { "path": "/result/status", "in": ["ok", "accepted"] },
            "duplicate": { "path": "/result/status", "equals": "duplicate" },
            "rejected": { "path": "/result/errors/0/code", "exists": true },
            "reason": { "path": "/result/message" } } }))
    .unwrap();
    let json_answer = br#"{"result":{"status":"accepted","lead_id":"L-88121","message":"thank you","errors":[]}}"#;
    c.bench_function("read_answer/delivery_json", |b| {
        b.iter(|| judge(&json_delivery, 200, black_box(json_answer)))
    });

    let xml_delivery = DeliveryConfig::parse(&json!({ "url": "https://buyer.example/leads",
        "response": {
            "format": "xml",
            "accepted": { "path": "/Envelope/Body/PostResult/@status", "equals": "Accepted" },
            "duplicate": { "path": "/Envelope/Body/PostResult/Errors/Error[1]/@code", "equals": "DUP" },
            "reason": { "path": "/Envelope/Body/PostResult/Message" } } }))
    .unwrap();
    let xml_answer = br#"<?xml version="1.0" encoding="UTF-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
  <soap:Body>
    <PostResult xmlns="urn:buyer" status="Accepted">
      <LeadId>88121</LeadId><Message>thank you</Message><Errors/>
    </PostResult>
  </soap:Body>
</soap:Envelope>"#;
    c.bench_function("read_answer/delivery_xml", |b| {
        b.iter(|| judge(&xml_delivery, 200, black_box(xml_answer)))
    });

    let native = rtb(None);
    let native_answer = br#"{"exclusive_bid": 40.125, "shared_bid": "12.50", "ref": "abc123"}"#;
    c.bench_function("read_answer/rtb_native_json", |b| {
        b.iter(|| parse_rtb_answer(200, black_box(native_answer), &native))
    });
    // The same reading as written before response rules (exact JSON, three pointers), for a
    // side-by-side comparison in one run.
    c.bench_function("read_answer/rtb_native_json_inline_baseline", |b| {
        b.iter(|| {
            let answer = gavel::exact_json::from_slice(black_box(native_answer)).unwrap();
            let bid = |pointer: &str| {
                answer
                    .pointer(pointer)
                    .map(|v| Money::from_json(v, ExtraDecimals::Truncate))
            };
            let reference = answer
                .pointer("/ref")
                .and_then(Value::as_str)
                .map(str::to_owned);
            (bid("/exclusive_bid"), bid("/shared_bid"), reference)
        })
    });

    let json_rules = rtb(Some(json!({
        "status": { "204": "no_bid" },
        "exclusive_bid": { "path": "/bid/exclusive" },
        "shared_bid": { "path": "/bid/shared" },
        "ref": { "path": "/bid/id" },
        "no_bid": { "path": "/status", "in": ["no_bid", "declined"] },
        "reason": { "path": "/message" } })));
    let json_answer =
        br#"{"status":"ok","bid":{"exclusive":"40.125","shared":12.5,"id":"abc123"}}"#;
    c.bench_function("read_answer/rtb_json_rules", |b| {
        b.iter(|| parse_rtb_answer(200, black_box(json_answer), &json_rules))
    });

    let xml_rules = rtb(Some(json!({
        "format": "xml",
        "exclusive_bid": { "path": "/BidResponse/Bid[1]/Amount" },
        "shared_bid": { "path": "/BidResponse/Bid[2]/Amount" },
        "ref": { "path": "/BidResponse/@id" },
        "no_bid": { "path": "/BidResponse/@status", "equals": "NoBid" } })));
    let xml_answer = br#"<?xml version="1.0"?><BidResponse id="R-981" status="OK">
  <Bid type="exclusive"><Amount>38.505</Amount></Bid><Bid type="shared"><Amount>12.5</Amount></Bid>
</BidResponse>"#;
    c.bench_function("read_answer/rtb_xml_rules", |b| {
        b.iter(|| parse_rtb_answer(200, black_box(xml_answer), &xml_rules))
    });

    let text_rules = rtb(Some(json!({
        "format": "text",
        "exclusive_bid": { "regex": "bid=([0-9.]+)" },
        "ref": { "regex": "\\bid=(\\S+)" },
        "no_bid": { "regex": "^DECLINE", "exists": true } })));
    let text_answer = b"ACCEPT bid=30.019 id=t-7";
    c.bench_function("read_answer/rtb_text_rules", |b| {
        b.iter(|| parse_rtb_answer(200, black_box(text_answer), &text_rules))
    });
}

criterion_group!(benches, read_answer);
criterion_main!(benches);
