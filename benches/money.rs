//! Money on the hot path: every RTB answer's bids are parsed from JSON, and every ping answer
//! writes payouts. Run with `cargo bench --bench money`.

use criterion::{Criterion, criterion_group, criterion_main};
use gavel::money::{ExtraDecimals, Money};
use std::hint::black_box;

fn money(c: &mut Criterion) {
    let answer = br#"{"exclusive_bid": 40.125, "shared_bid": "12.50", "ref": "abc123"}"#;
    c.bench_function("money/parse_rtb_answer_bids", |b| {
        b.iter(|| {
            let value: serde_json::Value = serde_json::from_slice(black_box(answer)).unwrap();
            let exclusive = Money::from_json(&value["exclusive_bid"], ExtraDecimals::Truncate);
            let shared = Money::from_json(&value["shared_bid"], ExtraDecimals::Truncate);
            (exclusive, shared)
        })
    });
    let payouts: Vec<Money> = (0..10).map(|i| Money::from_cents(1050 + i * 7)).collect();
    c.bench_function("money/serialize_10_payouts", |b| {
        b.iter(|| serde_json::to_vec(black_box(&payouts)).unwrap())
    });
}

criterion_group!(benches, money);
criterion_main!(benches);
