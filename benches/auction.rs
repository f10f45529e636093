//! A ping's own work (no I/O): validate the lead, evaluate every fixed-price contract (four
//! filters with an any-group, a schedule, two caps) and select the winners, for 3, 30 and 300
//! contracts. SPEC §5.1: 300 contracts should cost about what 3 do.

use std::hint::black_box;

use chrono::{DateTime, Utc};
use chrono_tz::America::New_York;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gavel::auction::{
    CapPeriod, CapUsage, CompiledContract, CompiledSchema, ContractConfig, ContractState,
    Evaluation, Mode, OfferRules, PayoutRule, PeriodUsage, PingContext, Status, effective_floor,
    select, validate_ping,
};
use gavel::money::Money;
use serde_json::{Map, Value, json};
use uuid::Uuid;

const STATES: [&str; 6] = ["TX", "OK", "LA", "AR", "NM", "CO"];

fn schema() -> CompiledSchema {
    CompiledSchema::compile(&json!([
        { "name": "state", "type": "string", "pattern": "^[A-Z]{2}$", "required": true },
        { "name": "zip", "type": "string", "pattern": "^[0-9]{5}$", "required": true },
        { "name": "age", "type": "integer", "min": 18, "max": 120 },
        { "name": "homeowner", "type": "boolean" },
        { "name": "credit", "type": "string", "enum": ["excellent", "good", "fair", "poor"] },
        { "name": "first_name", "type": "string", "pii": true, "required": true },
        { "name": "email", "type": "email", "pii": true, "required": true },
        { "name": "phone", "type": "phone", "pii": true, "required": true }
    ]))
    .expect("the bench schema compiles")
}

/// `count` contracts of `count / 2 + 1` buyers, with varied states, prices and priorities.
fn contracts(schema: &CompiledSchema, count: usize) -> Vec<(CompiledContract, ContractState)> {
    (0..count)
        .map(|i| {
            let states = [STATES[i % STATES.len()], STATES[(i + 1) % STATES.len()], "TX"];
            let config = ContractConfig {
                id: Uuid::from_u128(i as u128 + 1),
                buyer_id: Uuid::from_u128((i / 2) as u128 + 1_000),
                status: Status::Active,
                priority: (i % 3) as i32,
                pricing: json!({ "type": "fixed", "exclusive_cents": 2000 + (i * 37) % 4000, "shared_cents": 500 + (i * 13) % 1000 }),
                filters: json!([
                    { "field": "state", "op": "in", "value": states },
                    { "any": [ { "field": "homeowner", "op": "eq", "value": true },
                               { "field": "credit", "op": "in", "value": ["excellent", "good"] } ] },
                    { "field": "age", "op": "between", "value": [25, 64 + i % 10] },
                    { "field": "zip", "op": "prefix", "value": ["750", "751", "752"] }
                ]),
                schedule: json!({ "timezone": "America/Chicago",
                                  "days": { "mon": [["08:00", "20:00"]], "tue": [["08:00", "20:00"]],
                                            "wed": [["08:00", "12:00"], ["13:00", "20:00"]],
                                            "thu": [["08:00", "20:00"]], "fri": [["08:00", "18:00"]] } }),
                caps: json!([{ "period": "day", "max_leads": 100 }, { "period": "month", "max_spend_cents": 500_000 }]),
            };
            let contract = CompiledContract::compile(&config, schema).expect("the bench contracts compile");
            let mut usage = PeriodUsage::default();
            usage.set(CapPeriod::Day, CapUsage { leads: (i % 90) as i64, spend: Money::ZERO });
            usage.set(CapPeriod::Month, CapUsage { leads: 0, spend: Money::from_cents((i as i64 * 1_234) % 400_000) });
            let state = ContractState {
                buyer_status: Status::Active,
                balance: Money::from_cents(250_000),
                credit_limit: Money::from_cents(50_000),
                usage,
                duplicate: i % 17 == 5,
                buyer_caps: Default::default(),
                suppressed_by: None,
            };
            (contract, state)
        })
        .collect()
}

/// One ping: validation, the typed lead, every contract's checks, selection.
fn ping(
    schema: &CompiledSchema,
    contracts: &[(CompiledContract, ContractState)],
    lead: &Map<String, Value>,
    now: DateTime<Utc>,
    offer: &OfferRules,
) -> Money {
    if validate_ping(schema, lead).is_err() {
        return Money::ZERO;
    }
    let prepared = schema.prepare(lead);
    let context = PingContext {
        lead: &prepared,
        now,
        tenant_tz: New_York,
        sale_types: offer.mode.sale_types(),
    };
    let bids: Vec<_> = contracts
        .iter()
        .filter_map(
            |(contract, state)| match contract.evaluate(state, &context) {
                Evaluation::Priced(prices) => Some(contract.bid(prices, None)),
                Evaluation::Declined(_) | Evaluation::CallRtb => None,
            },
        )
        .collect();
    let floor = effective_floor(Money::from_cents(200), Some(Money::from_cents(300)));
    select(
        &bids,
        offer,
        PayoutRule::Revshare { percent_bp: 7000 },
        floor,
    )
    .total_payout()
}

fn bench_ping(c: &mut Criterion) {
    let schema = schema();
    let Value::Object(lead) =
        json!({ "state": "TX", "zip": "75001", "age": 42, "homeowner": true, "credit": "good" })
    else {
        unreachable!("the lead is an object literal")
    };
    // Wednesday 2026-11-25 15:00 in Chicago: inside every schedule.
    let now = DateTime::parse_from_rfc3339("2026-11-25T21:00:00Z")
        .expect("valid instant")
        .with_timezone(&Utc);
    let offer = OfferRules {
        mode: Mode::Hybrid,
        max_buyers: 3,
        exclusive_floor: Money::from_cents(5_000),
        dedup_days: 0,
        require_consent: Vec::new(),
        distribution: Default::default(),
        strategy: Default::default(),
    };
    let mut group = c.benchmark_group("ping");
    for count in [3, 30, 300] {
        let contracts = contracts(&schema, count);
        assert!(
            ping(&schema, &contracts, &lead, now, &offer) > Money::ZERO,
            "the bench lead sells"
        );
        group.bench_with_input(
            BenchmarkId::new("fixed_contracts", count),
            &contracts,
            |b, contracts| {
                b.iter(|| {
                    ping(
                        &schema,
                        black_box(contracts),
                        black_box(&lead),
                        black_box(now),
                        &offer,
                    )
                })
            },
        );
    }
    group.finish();
}

/// The same contracts through the server's fan-out (`gavel::evaluate::fan_out`), as a ping
/// runs them on its tokio runtime (no validation or selection here).
fn bench_fan_out(c: &mut Criterion) {
    use std::sync::Arc;

    use gavel::evaluate::{SharedPing, fan_out};
    use gavel::store::snapshot::Contract;

    let schema = schema();
    let Value::Object(lead) =
        json!({ "state": "TX", "zip": "75001", "age": 42, "homeowner": true, "credit": "good" })
    else {
        unreachable!("the lead is an object literal")
    };
    let now = DateTime::parse_from_rfc3339("2026-11-25T21:00:00Z")
        .expect("valid instant")
        .with_timezone(&Utc);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let shared = Arc::new(SharedPing {
        ping_id: Uuid::now_v7(),
        offer_name: "auto-insurance".to_owned(),
        prepared: Arc::new(schema.prepare(&lead).into_owned()),
        lead: Arc::new(lead),
        test: false,
        sub_ids: None,
        now,
        tenant_tz: New_York,
        sale_types: Mode::Hybrid.sale_types(),
        http: gavel::buyers::Outbound::new(Default::default()).expect("an HTTP client"),
        max_rtb_calls: 50,
        rtb_timeout_ms: 200,
        deadline: None,
        campaign: None,
    });
    let no_sales = std::collections::HashMap::new();
    let mut group = c.benchmark_group("fan_out");
    for count in [3, 30, 300] {
        let (contracts, states): (Vec<Arc<Contract>>, Vec<ContractState>) =
            contracts(&schema, count)
                .into_iter()
                .map(|(compiled, state)| {
                    let contract = Contract {
                        compiled,
                        name: "bench".to_owned(),
                        dedup_days: 0,
                        delivery: gavel::buyers::delivery::DeliveryConfig::parse(
                            &json!({ "url": "http://127.0.0.1:9/" }),
                        )
                        .expect("a delivery URL"),
                        weight: gavel::auction::DEFAULT_WEIGHT,
                        notices: None,
                        suppression_lists: Vec::new(),
                    };
                    (Arc::new(contract), state)
                })
                .unzip();
        group.bench_with_input(
            BenchmarkId::new("fixed_contracts", count),
            &contracts,
            |b, contracts| {
                b.to_async(&runtime).iter(|| {
                    let context = shared.context();
                    let checked = contracts
                        .iter()
                        .zip(&states)
                        .map(|(c, state)| {
                            let precheck = c.compiled.precheck(state.buyer_status, &context);
                            (precheck, *state)
                        })
                        .collect();
                    fan_out(
                        black_box(contracts),
                        checked,
                        Arc::clone(&shared),
                        &no_sales,
                    )
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench_ping, bench_fan_out);
criterion_main!(benches);
