//! Auctions (docs/console.md): the tenant's recent pings, searchable by time, partner,
//! campaign, status, ping id or lead id; a ping's page (the explain, made readable: every
//! contract's outcome and reason in words, bids, RTB answers, the sale's verdict and the
//! buyer's own answer, the timeline from ping to settlement); and a posted lead's page, the
//! only one that shows personal data.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Path, Query};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::app::AppState;
use crate::auction::DeclineReason;
use crate::console::view::{Section, badge, url_encode};
use crate::console::{Amount, Console, ConsoleError, Page};
use crate::pii::{personal_values, redact};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/auctions", get(auctions))
        .route("/console/auctions/{ping_id}", get(ping_page))
        .route("/console/leads/{lead_id}", get(lead_page))
}

/// Rows per page of the list.
const PAGE_SIZE: u32 = 50;

// ---------------------------------------------------------------------------------------------
// The admin API's answers, as the console reads them

#[derive(Deserialize)]
struct List<T> {
    items: Vec<T>,
}

#[derive(Deserialize)]
struct Partner {
    id: Uuid,
    name: String,
}

#[derive(Deserialize)]
struct Offer {
    id: Uuid,
    name: String,
}

#[derive(Deserialize)]
struct Campaign {
    id: Uuid,
    partner_id: Uuid,
    offer_id: Uuid,
}

#[derive(Deserialize)]
struct PingsPage {
    items: Vec<PingItem>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct PingItem {
    ping_id: Uuid,
    created_at: DateTime<Utc>,
    status: String,
    test: bool,
    latency_ms: f64,
    partner_name: Option<String>,
    campaign_name: Option<String>,
    offer_name: Option<String>,
    contracts: i64,
    bids: i64,
    winners: i64,
    best_price: Option<Amount>,
    payout: Option<Amount>,
    posted: bool,
    sold: i64,
    revenue: Amount,
}

#[derive(Deserialize)]
struct PingView {
    ping_id: Uuid,
    status: String,
    sale_type: Option<String>,
    payout: Option<Amount>,
    test: bool,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    latency_ms: f64,
    lead_id: Option<Uuid>,
    posted_at: Option<DateTime<Utc>>,
    partner_id: Uuid,
    partner_name: Option<String>,
    campaign_id: Uuid,
    campaign_name: Option<String>,
    offer_id: Uuid,
    offer_name: Option<String>,
    sub_ids: Option<Map<String, Value>>,
    winners: Vec<Winner>,
    contracts: Vec<Outcome>,
    distribution: String,
    strategy: String,
    attempts: Vec<Attempt>,
    /// The offer's consent verification steps at the post (docs/verification.md).
    #[serde(default)]
    verification: Option<Vec<VerificationStep>>,
}

#[derive(Deserialize)]
struct VerificationStep {
    #[serde(rename = "type")]
    provider: String,
    required: bool,
    outcome: String,
    code: String,
    reason: Option<String>,
    cached: bool,
    took_ms: Option<u64>,
}

#[derive(Deserialize)]
struct Winner {
    contract_name: Option<String>,
    buyer_name: Option<String>,
    sale_type: Option<String>,
    price: Option<Amount>,
}

#[derive(Deserialize)]
struct Outcome {
    contract_id: Uuid,
    contract_name: Option<String>,
    buyer_id: Uuid,
    buyer_name: Option<String>,
    outcome: String,
    reason: Option<String>,
    detail: Option<String>,
    explanation: Option<String>,
    exclusive_bid: Option<Amount>,
    shared_bid: Option<Amount>,
    rtb_ms: Option<i32>,
    rtb_http_status: Option<i32>,
    rtb_response: Option<String>,
    sale: Option<SaleVerdict>,
}

#[derive(Deserialize)]
struct SaleVerdict {
    status: String,
    price: Option<Amount>,
}

#[derive(Deserialize)]
struct Attempt {
    contract_id: Uuid,
    contract_name: String,
    buyer_name: String,
    replaces_bid_id: Option<Uuid>,
    attempt: i16,
    status: String,
    reason: Option<String>,
    price: Amount,
    payout: Amount,
    buyer_http_status: Option<i32>,
    buyer_response: Option<String>,
    delivery_ms: Option<i32>,
    created_at: DateTime<Utc>,
    settled_at: Option<DateTime<Utc>>,
    returns: Vec<SaleReturn>,
}

#[derive(Deserialize)]
struct SaleReturn {
    status: String,
    reason: String,
    requested_at: DateTime<Utc>,
    decided_at: Option<DateTime<Utc>>,
    price: Amount,
    payout_reversed: Option<Amount>,
}

#[derive(Deserialize)]
struct LeadView {
    id: Uuid,
    ping_id: Uuid,
    partner_name: Option<String>,
    campaign_name: Option<String>,
    offer_name: Option<String>,
    lead: Map<String, Value>,
    consent: Map<String, Value>,
    /// How its PII is stored (docs/pii.md): `sealed`, `not_sealed` or `unavailable`.
    #[serde(default)]
    pii: String,
    test: bool,
    created_at: DateTime<Utc>,
    sales: Vec<LeadSale>,
}

#[derive(Deserialize)]
struct LeadSale {
    contract_id: Uuid,
    contract_name: String,
    buyer_name: String,
    sale_type: String,
    status: String,
    reason: Option<String>,
    price: Amount,
    payout: Amount,
    buyer_http_status: Option<i32>,
    delivery_ms: Option<i32>,
    created_at: DateTime<Utc>,
    returns: Vec<SaleReturn>,
}

// ---------------------------------------------------------------------------------------------
// Words

/// A decline reason in words (every [`DeclineReason`]; an unknown code as it is).
fn reason_in_words(code: &str) -> String {
    let Ok(reason) = code.parse::<DeclineReason>() else {
        return code.replace('_', " ");
    };
    match reason {
        DeclineReason::ContractPaused => "the contract is paused",
        DeclineReason::BuyerPaused => "the buyer is paused",
        DeclineReason::Suppressed => "the consumer is on a suppression list of the contract",
        DeclineReason::Filtered => "a filter of the contract did not hold for the ping",
        DeclineReason::OutsideSchedule => "the ping came outside the contract's schedule",
        DeclineReason::CapReached => "its cap for the period is reached",
        DeclineReason::Duplicate => "the buyer bought this consumer within its dedup window",
        DeclineReason::InsufficientFunds => "the buyer's balance cannot pay the price",
        DeclineReason::NoPriceForSaleType => "the contract has no price for the sale type offered",
        DeclineReason::BuyerUnavailable => {
            "the buyer's endpoint kept failing: its breaker is open, so no call was made"
        }
        DeclineReason::RtbLimit => {
            "more RTB contracts were eligible than a ping calls: this one was not called"
        }
        DeclineReason::RtbNoBid => "the buyer answered that it does not bid",
        DeclineReason::RtbTimeout => "the buyer did not answer its bid request in time",
        DeclineReason::RtbError => "the bid request to the buyer failed",
        DeclineReason::RtbInvalid => "the buyer's answer could not be read as a bid",
        DeclineReason::BelowFloor => "its bid leaves less than the floor (the partner's minimum)",
        DeclineReason::Outbid => "it bid, and another bid won",
    }
    .to_owned()
}

/// A sale's status in words.
fn sale_in_words(status: &str) -> &'static str {
    match status {
        "pending" => "being delivered",
        "sold" => "the buyer accepted the lead",
        "rejected" => "the buyer declined the lead",
        "failed" => "the delivery failed, or the contract or buyer stopped since the ping",
        "capped" => "a cap filled since the ping",
        "suppressed" => "the consumer is on a suppression list of the contract",
        "insufficient_funds" => "the buyer's balance could not pay since the ping",
        "duplicate" => "the buyer already had this consumer",
        "not_accepted" => "the partner left this bid out of its post",
        "returned" => "sold, then returned by the buyer",
        _ => "",
    }
}

/// A ping's status as a badge.
fn ping_badge(status: &str) -> Markup {
    let (text, kind) = match status {
        "bids" => ("bids", "good"),
        "no_bids" => ("no bids", "muted"),
        "duplicate" => ("duplicate", "warn"),
        other => (other, "bad"),
    };
    badge(text, kind)
}

fn outcome_badge(outcome: &str) -> Markup {
    let kind = match outcome {
        "won" => "good",
        "outbid" => "warn",
        _ => "bad",
    };
    badge(outcome, kind)
}

fn sale_badge(status: &str) -> Markup {
    let kind = match status {
        "sold" => "good",
        "pending" | "returned" | "not_accepted" => "warn",
        _ => "bad",
    };
    badge(&status.replace('_', " "), kind)
}

fn return_badge(status: &str) -> Markup {
    let kind = match status {
        "approved" => "warn",
        "denied" => "muted",
        _ => "muted",
    };
    badge(status, kind)
}

/// `1 bid`, `2 bids`.
fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn or_id(name: &Option<String>, id: Uuid) -> String {
    name.clone().unwrap_or_else(|| id.to_string())
}

fn ms(value: f64) -> String {
    if value >= 1000.0 {
        format!("{:.2} s", value / 1000.0)
    } else {
        format!("{value} ms")
    }
}

/// A JSON value as text (a string without its quotes).
fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// The list

/// The search form's fields (an empty field is no filter).
#[derive(Deserialize, Default)]
struct Search {
    from: Option<String>,
    to: Option<String>,
    partner_id: Option<String>,
    campaign_id: Option<String>,
    status: Option<String>,
    id: Option<String>,
    cursor: Option<String>,
}

fn filled(field: &Option<String>) -> Option<&str> {
    field.as_deref().map(str::trim).filter(|t| !t.is_empty())
}

/// A time the form sent (`2025-03-01T14:30`, with seconds or not, or a date) in the tenant's
/// timezone; a date alone is its first instant, or for `to` the next day's.
fn local_time(text: &str, tz: Tz, end_of_day: bool) -> Option<DateTime<Utc>> {
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M"))
        .ok()
        .or_else(|| {
            let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
            let date = if end_of_day { date.succ_opt()? } else { date };
            date.and_hms_opt(0, 0, 0)
        })?;
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

/// The list's own query (the form's fields, kept for the "Older" link).
fn search_query(search: &Search) -> String {
    let mut parts = Vec::new();
    for (name, field) in [
        ("from", &search.from),
        ("to", &search.to),
        ("partner_id", &search.partner_id),
        ("campaign_id", &search.campaign_id),
        ("status", &search.status),
    ] {
        if let Some(value) = filled(field) {
            parts.push(format!("{name}={}", url_encode(value)));
        }
    }
    parts.join("&")
}

/// Where an id of the search box leads: its ping's page (a ping id, or a lead id through its
/// lead), or `None` when the tenant has neither.
async fn find_ping_of(console: &Console, id: Uuid) -> Result<Option<Uuid>, ConsoleError> {
    #[derive(Deserialize)]
    struct Found {
        ping_id: Uuid,
    }
    match console
        .admin
        .get::<Found>(&format!("/v1/admin/pings/{id}"))
        .await
    {
        Ok(found) => return Ok(Some(found.ping_id)),
        Err(ConsoleError::NotFound) => {}
        Err(error) => return Err(error),
    }
    match console
        .admin
        .get::<Found>(&format!("/v1/admin/leads/{id}"))
        .await
    {
        Ok(found) => Ok(Some(found.ping_id)),
        Err(ConsoleError::NotFound) => Ok(None),
        Err(error) => Err(error),
    }
}

/// To a ping's page; from htmx, as a full navigation.
fn to_ping(headers: &HeaderMap, ping_id: Uuid) -> Response {
    let to = format!("/console/auctions/{ping_id}");
    if headers.contains_key("hx-request") {
        ([("hx-redirect", to)], "").into_response()
    } else {
        Redirect::to(&to).into_response()
    }
}

async fn auctions(
    console: Console,
    headers: HeaderMap,
    Query(search): Query<Search>,
) -> Result<Response, ConsoleError> {
    let mut problems: Vec<String> = Vec::new();

    // An id: straight to its ping's page.
    if let Some(id) = filled(&search.id) {
        match id.parse::<Uuid>() {
            Ok(id) => match find_ping_of(&console, id).await? {
                Some(ping_id) => return Ok(to_ping(&headers, ping_id)),
                None => problems.push(format!("No ping or lead of yours has the id {id}.")),
            },
            Err(_) => problems.push(format!("“{id}” is not a ping id or a lead id.")),
        }
    }

    // The admin API's query.
    let tz = console.timezone;
    let mut query = vec![format!("limit={PAGE_SIZE}")];
    for (name, field, end) in [("from", &search.from, false), ("to", &search.to, true)] {
        if let Some(text) = filled(field) {
            match local_time(text, tz, end) {
                Some(at) => query.push(format!(
                    "{name}={}",
                    url_encode(&at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                )),
                None => problems.push(format!("“{text}” is not a date or a time: not used.")),
            }
        }
    }
    // Without a start, the last 7 days: a rare status or a quiet partner never has the list
    // walk the tenant's whole history.
    if filled(&search.from).is_none() {
        let week_ago = chrono::Utc::now() - chrono::Duration::days(DEFAULT_DAYS);
        query.push(format!(
            "from={}",
            url_encode(&week_ago.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        ));
    }
    for (name, field) in [
        ("partner_id", &search.partner_id),
        ("campaign_id", &search.campaign_id),
        ("cursor", &search.cursor),
    ] {
        if let Some(value) = filled(field) {
            query.push(format!("{name}={}", url_encode(value)));
        }
    }
    match filled(&search.status) {
        Some("posted") => query.push("posted=true".into()),
        Some("not_posted") => query.push("posted=false".into()),
        Some(status) => query.push(format!("status={}", url_encode(status))),
        None => {}
    }
    let list_path = format!("/v1/admin/pings?{}", query.join("&"));

    // One round: the page and the form's choices.
    let (page, partners, campaigns, offers) = tokio::try_join!(
        console.admin.get::<PingsPage>(&list_path),
        console
            .admin
            .get::<List<Partner>>("/v1/admin/partners?limit=1000"),
        console
            .admin
            .get::<List<Campaign>>("/v1/admin/campaigns?limit=1000"),
        console
            .admin
            .get::<List<Offer>>("/v1/admin/offers?limit=1000"),
    )?;
    let partner_names: BTreeMap<Uuid, &str> = partners
        .items
        .iter()
        .map(|p| (p.id, p.name.as_str()))
        .collect();
    let offer_names: BTreeMap<Uuid, &str> = offers
        .items
        .iter()
        .map(|o| (o.id, o.name.as_str()))
        .collect();
    let mut campaign_names: Vec<(Uuid, String)> = campaigns
        .items
        .iter()
        .map(|c| {
            let partner = partner_names.get(&c.partner_id).copied().unwrap_or("?");
            let offer = offer_names.get(&c.offer_id).copied().unwrap_or("?");
            (c.id, format!("{partner} → {offer}"))
        })
        .collect();
    campaign_names.sort_by(|a, b| a.1.cmp(&b.1));
    let mut partner_list: Vec<&Partner> = partners.items.iter().collect();
    partner_list.sort_by(|a, b| a.name.cmp(&b.name));

    let selected = |field: &Option<String>, value: &str| filled(field) == Some(value);
    let statuses = [
        ("", "Any status"),
        ("bids", "Bids"),
        ("no_bids", "No bids"),
        ("duplicate", "Duplicate"),
        ("refused", "Refused"),
        ("posted", "Posted"),
        ("not_posted", "Not posted"),
    ];
    let filters = search_query(&search);
    let body = html! {
        form #search .filters method="get" action="/console/auctions"
            hx-get="/console/auctions" hx-target="#results" hx-select="#results"
            hx-swap="outerHTML" hx-push-url="true" role="search" {
            label { "From (default: 7 days ago)"
                input type="datetime-local" name="from" value=[filled(&search.from)]; }
            label { "To"
                input type="datetime-local" name="to" value=[filled(&search.to)]; }
            label { "Partner"
                select name="partner_id" {
                    option value="" { "Any partner" }
                    @for p in &partner_list {
                        option value=(p.id) selected[selected(&search.partner_id, &p.id.to_string())] { (p.name) }
                    }
                }
            }
            label { "Campaign"
                select name="campaign_id" {
                    option value="" { "Any campaign" }
                    @for (id, name) in &campaign_names {
                        option value=(id) selected[selected(&search.campaign_id, &id.to_string())] { (name) }
                    }
                }
            }
            label { "Status"
                select name="status" {
                    @for (value, label) in statuses {
                        option value=(value) selected[selected(&search.status, value)] { (label) }
                    }
                }
            }
            label.grow { "Ping or lead id"
                input type="search" name="id" placeholder="0190…" value=[filled(&search.id)]
                    autocomplete="off" spellcheck="false"; }
            button type="submit" { "Search" }
            @if !filters.is_empty() {
                a.reset href="/console/auctions" { "Clear" }
            }
        }
        div #results {
            @for problem in &problems {
                p.error role="alert" { (problem) }
            }
            (ping_table(&console, &page.items))
            nav.pager aria-label="Pages" {
                @if filled(&search.cursor).is_some() {
                    a href={ "/console/auctions?" (filters) } { "Newest" }
                }
                @if let Some(cursor) = &page.next_cursor {
                    a rel="next" href={ "/console/auctions?" (filters) @if !filters.is_empty() { "&" } "cursor=" (url_encode(cursor)) } { "Older" }
                }
            }
        }
    };
    Ok(Page::new(&console, Section::Auctions, "Auctions", body).into_response())
}

fn ping_table(console: &Console, items: &[PingItem]) -> Markup {
    html! {
        @if items.is_empty() {
            p.muted { "No pings match." }
        } @else {
            div.panel.flush {
                table.pings {
                    thead { tr {
                        th { "Received" } th { "Partner → offer" } th { "Status" }
                        th.num { "Contracts" } th.num { "Bids" } th.num { "Best bid" }
                        th.num { "Payout" } th { "Post" } th.num { "Latency" }
                    } }
                    tbody {
                        @for p in items {
                            tr {
                                td { a href={ "/console/auctions/" (p.ping_id) } { (console.time(p.created_at)) } }
                                td {
                                    (p.campaign_name.clone().or_else(|| p.partner_name.clone()).unwrap_or_default())
                                    @if p.campaign_name.is_none() {
                                        @if let Some(offer) = &p.offer_name { " → " (offer) }
                                    }
                                }
                                td {
                                    (ping_badge(&p.status))
                                    @if p.test { " " (badge("test", "muted")) }
                                }
                                td.num { (p.contracts) }
                                td.num { (p.bids) @if p.winners > 0 { span.muted { " (" (p.winners) " won)" } } }
                                td.num { @if let Some(a) = p.best_price { (console.money(a)) } @else { "—" } }
                                td.num { @if let Some(a) = p.payout { (console.money(a)) } @else { "—" } }
                                td {
                                    @if p.sold > 0 {
                                        (badge(&format!("sold {}", p.sold), "good")) " " (console.money(p.revenue))
                                    } @else if p.posted {
                                        (badge("posted, unsold", "warn"))
                                    } @else {
                                        span.muted { "—" }
                                    }
                                }
                                td.num { (ms(p.latency_ms)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The days the list searches when the form names no start.
const DEFAULT_DAYS: i64 = 7;

// ---------------------------------------------------------------------------------------------
// A ping's page

async fn ping_page(console: Console, Path(id): Path<String>) -> Result<Page, ConsoleError> {
    let id: Uuid = id.parse().map_err(|_| ConsoleError::NotFound)?;
    let ping: PingView = console.admin.get(&format!("/v1/admin/pings/{id}")).await?;
    // A buyer's answer to the post may quote the lead: its personal data is masked here (the
    // lead's page shows it), so the posted lead's values are read to be found.
    let personal = match ping.lead_id {
        Some(lead) => {
            let lead: LeadView = console
                .admin
                .get(&format!("/v1/admin/leads/{lead}"))
                .await?;
            personal_values(&lead.lead, &lead.consent)
        }
        None => Vec::new(),
    };
    let title = match (&ping.partner_name, &ping.offer_name) {
        (Some(partner), Some(offer)) => format!("Auction: {partner} → {offer}"),
        _ => "Auction".to_owned(),
    };
    let body = html! {
        p.subtitle {
            span.id { "ping " (ping.ping_id) } " "
            (ping_badge(&ping.status))
            @if ping.test { " " (badge("test", "muted")) }
        }
        (summary_cards(&console, &ping))
        div.grid2 {
            section.panel aria-labelledby="the-ping" {
                h2 #the-ping { "The ping" }
                (ping_facts(&console, &ping))
            }
            section.panel aria-labelledby="timeline" {
                h2 #timeline { "Timeline" }
                (timeline(&console, &ping))
            }
        }
        section aria-labelledby="contracts" {
            h2 #contracts { "Every contract" }
            (contracts_table(&console, &ping))
        }
        @if let Some(steps) = &ping.verification {
            section aria-labelledby="verification" {
                h2 #verification { "Consent verification" }
                (verification_table(steps))
            }
        }
        section aria-labelledby="sales" {
            h2 #sales { "The post and its sales" }
            (sales(&console, &ping, &personal))
        }
    };
    Ok(Page::new(&console, Section::Auctions, title, body))
}

/// What each verification step found, in the order they ran (a refusing step is the last).
fn verification_table(steps: &[VerificationStep]) -> Markup {
    html! {
        table {
            thead { tr { th { "Step" } th { "Outcome" } th { "Code" } th { "Reason" } th.num { "Time" } } }
            tbody {
                @for step in steps {
                    tr {
                        td {
                            (step.provider)
                            @if !step.required { " " (badge("optional", "muted")) }
                        }
                        td {
                            @let kind = match step.outcome.as_str() { "passed" => "good", "failed" => "bad", _ => "warn" };
                            (badge(&step.outcome, kind))
                            @if step.cached { " " (badge("cached", "muted")) }
                        }
                        td { code { (step.code) } }
                        td { (step.reason.as_deref().unwrap_or("—")) }
                        td.num { @if let Some(ms) = step.took_ms { (ms) " ms" } @else { "—" } }
                    }
                }
            }
        }
    }
}

fn summary_cards(console: &Console, ping: &PingView) -> Markup {
    let bids = ping
        .contracts
        .iter()
        .filter(|c| c.outcome == "won" || c.outcome == "outbid")
        .count();
    let sold: Vec<&Attempt> = ping
        .attempts
        .iter()
        .filter(|a| a.status == "sold" || a.status == "returned")
        .collect();
    let revenue = Amount(crate::money::Money::from_cents(
        sold.iter().map(|a| a.price.cents()).sum(),
    ));
    let paid = Amount(crate::money::Money::from_cents(
        sold.iter().map(|a| a.payout.cents()).sum(),
    ));
    html! {
        div.cards.summary {
            div.card { div.label { "Contracts" } div.value { (ping.contracts.len()) }
                div.sub { (plural(bids, "bid")) ", " (ping.winners.len()) " won" } }
            div.card { div.label { "Offered to the partner" }
                div.value { @if let Some(p) = ping.payout { (console.money(p)) } @else { "—" } }
                div.sub { (ping.sale_type.as_deref().unwrap_or("no sale type")) } }
            div.card { div.label { "Sold" } div.value { (console.money(revenue)) }
                div.sub { (plural(sold.len(), "sale")) ", payout " (console.money(paid)) } }
            div.card { div.label { "Answered in" } div.value { (ms(ping.latency_ms)) }
                div.sub { (ping.distribution) " · " (ping.strategy.replace('_', " ")) } }
        }
    }
}

fn ping_facts(console: &Console, ping: &PingView) -> Markup {
    html! {
        dl.facts {
            dt { "Received" } dd { (console.time(ping.created_at)) }
            dt { "Partner" } dd { a href={ "/console/partners/" (ping.partner_id) } { (or_id(&ping.partner_name, ping.partner_id)) } }
            dt { "Campaign" } dd { (or_id(&ping.campaign_name, ping.campaign_id)) }
            dt { "Offer" } dd { (or_id(&ping.offer_name, ping.offer_id)) }
            dt { "Routing" } dd { (ping.distribution) ", by " (ping.strategy.replace('_', " ")) }
            @if let Some(sub_ids) = ping.sub_ids.as_ref().filter(|s| !s.is_empty()) {
                dt { "Sub ids" }
                dd { @for (i, (k, v)) in sub_ids.iter().enumerate() {
                    @if i > 0 { ", " } code { (k) "=" (value_text(v)) }
                } }
            }
            @if !ping.winners.is_empty() {
                dt { "Winners" }
                dd { @for (i, w) in ping.winners.iter().enumerate() {
                    @if i > 0 { br; }
                    (w.contract_name.as_deref().unwrap_or("?")) " (" (w.buyer_name.as_deref().unwrap_or("?")) ")"
                    @if let Some(p) = w.price { ": " (console.money(p)) }
                    @if let Some(t) = &w.sale_type { " " span.muted { (t) } }
                } }
            }
            dt { "Post" }
            dd {
                @if let (Some(lead_id), Some(at)) = (ping.lead_id, ping.posted_at) {
                    "posted " (console.time(at)) " · "
                    a.pii-link href={ "/console/leads/" (lead_id) } { "View the lead (PII)" }
                } @else if let Some(lead_id) = ping.lead_id {
                    a.pii-link href={ "/console/leads/" (lead_id) } { "View the lead (PII)" }
                } @else if let Some(expires) = ping.expires_at {
                    "not posted; its bids expire " (console.time(expires))
                } @else {
                    "not posted"
                }
            }
        }
    }
}

fn bid_text(console: &Console, c: &Outcome) -> Markup {
    html! {
        @if let Some(a) = c.exclusive_bid { (console.money(a)) span.muted { " excl." } }
        @if c.exclusive_bid.is_some() && c.shared_bid.is_some() { br; }
        @if let Some(a) = c.shared_bid { (console.money(a)) span.muted { " shared" } }
        @if c.exclusive_bid.is_none() && c.shared_bid.is_none() { span.muted { "—" } }
    }
}

fn why(c: &Outcome) -> Markup {
    html! {
        @match (c.outcome.as_str(), c.reason.as_deref()) {
            ("won", _) => { span.words { "won the auction" } },
            (_, Some(reason)) => {
                span.words { (reason_in_words(reason)) }
                " " code.reason { (reason) }
            },
            _ => { span.muted { "—" } },
        }
        @if let Some(explanation) = &c.explanation {
            p.explanation { (explanation) }
        }
        @if let Some(detail) = c.detail.as_ref().filter(|_| c.explanation.is_none() || c.reason.as_deref() != Some("filtered")) {
            p.detail { span.muted { "detail: " } (detail) }
        } @else if let Some(detail) = &c.detail {
            p.detail { span.muted { "filter " } code { (detail) } }
        }
    }
}

fn contracts_table(console: &Console, ping: &PingView) -> Markup {
    html! {
        @if ping.contracts.is_empty() {
            p.muted { "No contract saw this ping (it was refused, or no contract sells its offer)." }
        } @else {
            div.panel.flush {
                table.contracts {
                    thead { tr {
                        th { "Contract" } th { "Buyer" } th { "Outcome" } th { "Why" }
                        th.num { "Bid" } th.num { "RTB" } th { "Sale" }
                    } }
                    tbody {
                        @for c in &ping.contracts {
                            tr {
                                td { a href={ "/console/contracts/" (c.contract_id) } { (or_id(&c.contract_name, c.contract_id)) } }
                                td { a href={ "/console/buyers/" (c.buyer_id) } { (or_id(&c.buyer_name, c.buyer_id)) } }
                                td { (outcome_badge(&c.outcome)) }
                                td.why { (why(c)) }
                                td.num { (bid_text(console, c)) }
                                td.num { @if let Some(ms) = c.rtb_ms { (ms) " ms" } @else { span.muted { "—" } } }
                                td {
                                    @if let Some(sale) = &c.sale {
                                        (sale_badge(&sale.status))
                                        @if let Some(p) = sale.price { " " (console.money(p)) }
                                    } @else { span.muted { "—" } }
                                }
                            }
                            @if c.rtb_http_status.is_some() || c.rtb_response.is_some() {
                                tr.answer {
                                    td colspan="7" {
                                        span.muted { "The buyer's bid answer" }
                                        @if let Some(status) = c.rtb_http_status { " · HTTP " (status) }
                                        @if let Some(text) = &c.rtb_response { pre.buyer-answer { (text) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn sales(console: &Console, ping: &PingView, personal: &[String]) -> Markup {
    html! {
        @if ping.lead_id.is_none() {
            p.muted { "Not posted: no sale was made." }
        } @else if ping.attempts.is_empty() {
            p.muted { "Posted, but no bid was sold (none accepted, or none left)." }
        }
        div.sales {
            @for a in &ping.attempts {
                article.panel.sale {
                    h3 {
                        a href={ "/console/contracts/" (a.contract_id) } { (a.contract_name) }
                        " · " (a.buyer_name) " " (sale_badge(&a.status))
                    }
                    dl.facts {
                        dt { "Verdict" }
                        dd {
                            (sale_in_words(&a.status))
                            @if let Some(reason) = &a.reason { " (" (reason) ")" }
                        }
                        @if a.attempt > 0 {
                            dt { "Cascade" }
                            dd { "attempt " (a.attempt) " at a refused winner's slot"
                                @if let Some(bid) = a.replaces_bid_id { " " span.id { "(bid " (bid) ")" } } }
                        }
                        dt { "Price" } dd { (console.money(a.price)) }
                        dt { "Partner payout" } dd { (console.money(a.payout)) }
                        dt { "Buyer's HTTP status" }
                        dd { @if let Some(s) = a.buyer_http_status { (s) } @else { "—" } }
                        dt { "Delivery" }
                        dd { @if let Some(ms) = a.delivery_ms { (ms) " ms" } @else { "—" } }
                        dt { "Settled" }
                        dd { @if let Some(at) = a.settled_at { (console.time(at)) } @else { "not yet" } }
                    }
                    @if let Some(text) = &a.buyer_response {
                        p.muted { "The buyer's answer" }
                        pre.buyer-answer { (redact(text, personal)) }
                    }
                    @if !a.returns.is_empty() {
                        (returns_table(console, &a.returns))
                    }
                }
            }
        }
    }
}

fn returns_table(console: &Console, returns: &[SaleReturn]) -> Markup {
    html! {
        table.returns {
            thead { tr { th { "Return" } th { "Reason" } th { "Requested" } th { "Decided" } th.num { "Refund" } th.num { "Payout reversed" } } }
            tbody {
                @for r in returns {
                    tr {
                        td { (return_badge(&r.status)) }
                        td { (r.reason) }
                        td { (console.time(r.requested_at)) }
                        td { @if let Some(at) = r.decided_at { (console.time(at)) } @else { "—" } }
                        td.num { (console.money(r.price)) }
                        td.num { @if let Some(a) = r.payout_reversed { (console.money(a)) } @else { "—" } }
                    }
                }
            }
        }
    }
}

/// What happened, in order: the ping, its answer, the post, each sale's reservation and
/// settlement (cascade attempts included), the returns.
fn timeline(console: &Console, ping: &PingView) -> Markup {
    let mut events: Vec<(DateTime<Utc>, u8, Markup)> = Vec::new();
    let start = ping.created_at;
    let bids = ping
        .contracts
        .iter()
        .filter(|c| c.outcome == "won" || c.outcome == "outbid")
        .count();
    events.push((
        start,
        0,
        html! { "Ping received from " (or_id(&ping.partner_name, ping.partner_id))
        ": " (plural(ping.contracts.len(), "contract")) " considered" },
    ));
    let answered = start + chrono::Duration::microseconds((ping.latency_ms * 1000.0) as i64);
    events.push((
        answered,
        1,
        html! {
            "Answered " (ping_badge(&ping.status)) ": "
            (plural(bids, "bid")) ", " (plural(ping.winners.len(), "winner"))
            @if let Some(p) = ping.payout { ", " (console.money(p)) " offered" }
        },
    ));
    if let Some(at) = ping.posted_at {
        events.push((at, 2, html! { "Posted: the lead was stored" }));
    }
    for a in &ping.attempts {
        let who = html! { (a.contract_name) " (" (a.buyer_name) ")" };
        let what = if a.attempt > 0 {
            html! { "Cascade attempt " (a.attempt) ": sale to " (who) " at " (console.money(a.price)) }
        } else {
            html! { "Sale to " (who) " at " (console.money(a.price)) }
        };
        events.push((a.created_at, 3, what));
        if let Some(at) = a.settled_at {
            events.push((
                at,
                4,
                html! {
                    "Settled " (sale_badge(&a.status)) " for " (a.contract_name)
                    @if let Some(s) = a.buyer_http_status { ": the buyer answered HTTP " (s) }
                    @if let Some(ms) = a.delivery_ms { " in " (ms) " ms" }
                },
            ));
        }
        for r in &a.returns {
            events.push((
                r.requested_at,
                5,
                html! { "Return requested by " (a.buyer_name) ": " (r.reason) },
            ));
            if let Some(at) = r.decided_at {
                events.push((
                    at,
                    6,
                    html! { "Return " (return_badge(&r.status)) " (" (console.money(r.price)) ")" },
                ));
            }
        }
    }
    if ping.posted_at.is_none()
        && let Some(expires) = ping.expires_at
    {
        events.push((expires, 7, html! { "The bids expire" }));
    }
    events.sort_by_key(|(at, order, _)| (*at, *order));
    html! {
        ol.timeline {
            @for (at, _, what) in &events {
                li {
                    (console.time(*at))
                    span.after { " " (offset(*at - start)) }
                    div { (what) }
                }
            }
        }
    }
}

/// The time since the ping, short: `+0 ms`, `+1.25 s`, `+3 min`, `+2 h`, `+4 d`.
fn offset(delta: chrono::Duration) -> String {
    let ms = delta.num_milliseconds();
    if ms < 0 {
        String::new()
    } else if ms < 1000 {
        format!("+{ms} ms")
    } else if ms < 60_000 {
        format!("+{:.2} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("+{} min", ms / 60_000)
    } else if ms < 86_400_000 {
        format!("+{} h", ms / 3_600_000)
    } else {
        format!("+{} d", ms / 86_400_000)
    }
}

// ---------------------------------------------------------------------------------------------
// The lead's page (personal data)

async fn lead_page(console: Console, Path(id): Path<String>) -> Result<Page, ConsoleError> {
    let id: Uuid = id.parse().map_err(|_| ConsoleError::NotFound)?;
    let lead: LeadView = console.admin.get(&format!("/v1/admin/leads/{id}")).await?;
    let body = html! {
        p.pii-banner role="note" {
            strong { "Personal data." }
            " This page shows the consumer's personal data as the partner posted it. "
            "Look only when you need to, and do not copy it elsewhere."
        }
        @if lead.pii == "unavailable" {
            p.hint role="note" {
                "This lead's personal data and consent were sealed with a key this server does not "
                "have (pii_keys): only its other fields are shown."
            }
        } @else if lead.pii == "erased" {
            p.hint role="note" {
                "This lead's personal data and consent were erased (the consumer's request or "
                "the retention period): only its other fields remain."
            }
        } @else if lead.pii == "not_sealed" {
            p.hint role="note" {
                "Stored before personal data was sealed at rest: "
                code { "gavel pii rotate" } " seals it."
            }
        }
        p.subtitle { span.id { "lead " (lead.id) }
            @if lead.test { " " (badge("test", "muted")) } }
        div.grid2 {
            section.panel aria-labelledby="posted" {
                h2 #posted { "The post" }
                dl.facts {
                    dt { "Posted" } dd { (console.time(lead.created_at)) }
                    dt { "Partner" } dd { (lead.partner_name.as_deref().unwrap_or("?")) }
                    dt { "Campaign" } dd { (lead.campaign_name.as_deref().unwrap_or("?")) }
                    dt { "Offer" } dd { (lead.offer_name.as_deref().unwrap_or("?")) }
                    dt { "Auction" } dd { a href={ "/console/auctions/" (lead.ping_id) } { "The ping's auction" } }
                }
                h2 { "Consent" }
                (fields_table(&lead.consent))
            }
            section.panel aria-labelledby="fields" {
                h2 #fields { "The lead's fields" }
                (fields_table(&lead.lead))
            }
        }
        section aria-labelledby="lead-sales" {
            h2 #lead-sales { "Sales" }
            @if lead.sales.is_empty() {
                p.muted { "No sale." }
            } @else {
                div.panel.flush {
                    table {
                        thead { tr {
                            th { "Made" } th { "Contract" } th { "Buyer" } th { "Type" } th { "Status" }
                            th.num { "Price" } th.num { "Payout" } th.num { "Buyer's HTTP" } th.num { "Delivery" } th { "Returns" }
                        } }
                        tbody {
                            @for s in &lead.sales {
                                tr {
                                    td { (console.time(s.created_at)) }
                                    td { a href={ "/console/contracts/" (s.contract_id) } { (s.contract_name) } }
                                    td { (s.buyer_name) }
                                    td { (s.sale_type) }
                                    td { (sale_badge(&s.status)) @if let Some(r) = &s.reason { " " span.muted { (r) } } }
                                    td.num { (console.money(s.price)) }
                                    td.num { (console.money(s.payout)) }
                                    td.num { @if let Some(h) = s.buyer_http_status { (h) } @else { "—" } }
                                    td.num { @if let Some(ms) = s.delivery_ms { (ms) " ms" } @else { "—" } }
                                    td { @for r in &s.returns { (return_badge(&r.status)) " " } }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(Page::new(&console, Section::Auctions, "Lead", body))
}

fn fields_table(fields: &Map<String, Value>) -> Markup {
    html! {
        @if fields.is_empty() {
            p.muted { "None." }
        } @else {
            table.kv {
                tbody {
                    @for (name, value) in fields {
                        tr { th scope="row" { (name) } td { (value_text(value)) } }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_decline_reason_has_words() {
        for reason in DeclineReason::ALL {
            let words = reason_in_words(reason.as_str());
            assert!(!words.contains('_'), "{reason:?}: {words}");
            assert_ne!(words, reason.as_str().replace('_', " "), "{reason:?}");
        }
        assert_eq!(reason_in_words("something_new"), "something new");
    }

    #[test]
    fn a_local_time_is_read_in_the_tenants_timezone() {
        let tz: Tz = "America/New_York".parse().unwrap();
        let at = |text, end| local_time(text, tz, end).map(|t| t.to_rfc3339());
        assert_eq!(
            at("2025-03-01T14:30", false).as_deref(),
            Some("2025-03-01T19:30:00+00:00")
        );
        assert_eq!(
            at("2025-03-01", false).as_deref(),
            Some("2025-03-01T05:00:00+00:00")
        );
        assert_eq!(
            at("2025-03-01", true).as_deref(),
            Some("2025-03-02T05:00:00+00:00")
        );
        assert_eq!(at("yesterday", false), None);
    }

    #[test]
    fn offsets_are_short() {
        let d = chrono::Duration::milliseconds;
        assert_eq!(offset(d(12)), "+12 ms");
        assert_eq!(offset(d(1250)), "+1.25 s");
        assert_eq!(offset(d(180_000)), "+3 min");
    }
}
