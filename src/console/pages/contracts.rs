//! The console's contracts section (docs/console.md): every contract with its caps as bars,
//! and a contract's page (status with pause/resume, caps, filters in words, schedule,
//! pricing, returns, its buyer). Also the small models and parts the buyers' and partners'
//! pages share: the admin API's lists, caps, statuses and their actions.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::http::Method;
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::app::AppState;
use crate::console::view::{self, Section};
use crate::console::{Amount, Console, ConsoleError, CsrfForm, Page};

/// The most items a list page asks the admin API for (its largest page).
pub(super) const LIST_LIMIT: usize = 1000;
/// Caps requests of a list sent at once.
const CAPS_AT_ONCE: usize = 8;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/contracts", get(list))
        .route("/console/contracts/{id}", get(show))
        .merge(status_routes("contracts", "Contract"))
}

// ---- the admin API's answers, as the console reads them ----

/// One page of an admin API list.
#[derive(Deserialize)]
pub(super) struct List<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A list's first page of [`LIST_LIMIT`] items.
pub(super) async fn list_of<T: serde::de::DeserializeOwned>(
    console: &Console,
    collection: &str,
) -> Result<List<T>, ConsoleError> {
    console
        .admin
        .get(&format!("/v1/admin/{collection}?limit={LIST_LIMIT}"))
        .await
}

/// A note under a list cut at [`LIST_LIMIT`].
pub(super) fn more_note<T>(list: &List<T>, what: &str) -> Markup {
    html! {
        @if list.next_cursor.is_some() {
            p.hint { "Showing the first " (LIST_LIMIT) " " (what) " (oldest first)." }
        }
    }
}

#[derive(Deserialize, Clone)]
pub(super) struct Contract {
    pub id: Uuid,
    pub buyer_id: Uuid,
    pub offer_id: Uuid,
    pub name: String,
    pub status: String,
    pub priority: i32,
    pub pricing: Pricing,
    pub filters: Vec<Value>,
    pub schedule: Option<Value>,
    pub caps: Vec<Value>,
    pub dedup_days: i32,
    pub weight: i32,
    pub returns: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A contract's `pricing`: fixed prices, or an RTB endpoint (its other keys are not shown).
#[derive(Deserialize, Clone)]
pub(super) struct Pricing {
    #[serde(rename = "type")]
    pub kind: String,
    pub exclusive: Option<Amount>,
    pub shared: Option<Amount>,
    pub max_bid: Option<Amount>,
    pub url: Option<String>,
    pub timeout_ms: Option<u32>,
}

#[derive(Deserialize, Clone)]
pub(super) struct Buyer {
    pub id: Uuid,
    pub name: String,
    pub status: String,
    pub credit_limit: Amount,
    pub balance: Amount,
    pub caps: Vec<Value>,
}

#[derive(Deserialize, Clone)]
pub(super) struct Offer {
    pub id: Uuid,
    pub name: String,
}

/// The caps of a contract or a buyer in their current periods.
#[derive(Deserialize)]
pub(super) struct Caps {
    pub caps: Vec<CapState>,
}

#[derive(Deserialize, Clone)]
pub(super) struct CapState {
    pub period: String,
    pub kind: String,
    /// A count of leads (read as an amount: 100 leads is 100.00) or an amount.
    pub limit: Amount,
    pub used: Amount,
    pub period_start: DateTime<Utc>,
}

/// Names by id.
pub(super) fn names<T>(items: &[T], id: impl Fn(&T) -> (Uuid, String)) -> HashMap<Uuid, String> {
    items.iter().map(id).collect()
}

/// The caps of each `(id, path)` at once, at most [`CAPS_AT_ONCE`] requests in flight.
pub(super) async fn caps_of(
    console: &Console,
    paths: Vec<(Uuid, String)>,
) -> Result<HashMap<Uuid, Vec<CapState>>, ConsoleError> {
    let slots = Arc::new(tokio::sync::Semaphore::new(CAPS_AT_ONCE));
    let mut tasks = tokio::task::JoinSet::new();
    for (id, path) in paths {
        let (admin, slots) = (console.admin.clone(), slots.clone());
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await;
            let caps: Caps = admin.get(&path).await?;
            Ok::<_, ConsoleError>((id, caps.caps))
        });
    }
    let mut found = HashMap::new();
    while let Some(done) = tasks.join_next().await {
        let (id, caps) = done.map_err(|_| ConsoleError::Internal)??;
        found.insert(id, caps);
    }
    Ok(found)
}

/// An id from a console URL: anything else is not found (and never reaches the admin API's
/// path).
pub(super) fn parse_id(id: &str) -> Result<Uuid, ConsoleError> {
    Uuid::parse_str(id).map_err(|_| ConsoleError::NotFound)
}

// ---- parts ----

/// A status as a badge.
pub(super) fn status_badge(status: &str) -> Markup {
    let kind = match status {
        "active" => "good",
        "paused" => "warn",
        _ => "muted",
    };
    view::badge(status, kind)
}

/// Pause (when active) or Resume (when paused) for the resource at `base` (`/console/…/{id}`);
/// an archived one has neither. `back` is where the action returns to.
pub(super) fn status_actions(console: &Console, base: &str, status: &str, back: &str) -> Markup {
    let (action, label, class) = match status {
        "active" => ("pause", "Pause", "secondary"),
        "paused" => ("resume", "Resume", ""),
        _ => return html! {},
    };
    html! {
        form.inline method="post" action={ (base) "/" (action) } {
            (console.csrf_field())
            input type="hidden" name="back" value=(back);
            button type="submit" class=(class) { (label) }
        }
    }
}

/// The form of a pause or resume: where to return.
#[derive(Deserialize)]
pub(super) struct StatusForm {
    back: Option<String>,
}

/// `POST /console/{kind}/{id}/pause` and `…/resume` for a resource of the admin API
/// (`contracts`, `buyers`, `partners`, `campaigns`), called `noun` in the message.
pub(super) fn status_routes(kind: &'static str, noun: &'static str) -> Router<AppState> {
    let action = move |status: &'static str, done: &'static str| {
        move |Path(id): Path<String>, form: CsrfForm<StatusForm>| async move {
            set_status(kind, &id, form, status, &format!("{noun} {done}")).await
        }
    };
    Router::new()
        .route(
            &format!("/console/{kind}/{{id}}/pause"),
            post(action("paused", "paused")),
        )
        .route(
            &format!("/console/{kind}/{{id}}/resume"),
            post(action("active", "resumed")),
        )
}

/// Sets a resource's status through the admin API and returns to `back` (a console page) or
/// the resource's page (a campaign's: the partners'), saying what was done.
async fn set_status(
    kind: &str,
    id: &str,
    CsrfForm { console, form }: CsrfForm<StatusForm>,
    status: &str,
    message: &str,
) -> Result<Response, ConsoleError> {
    let id = parse_id(id)?;
    let _: IgnoredAny = console
        .admin
        .send(
            Method::PATCH,
            &format!("/v1/admin/{kind}/{id}"),
            Some(json!({ "status": status })),
            None,
        )
        .await?;
    let default = match kind {
        "campaigns" => "/console/partners".to_owned(),
        _ => format!("/console/{kind}/{id}"),
    };
    let back = crate::console::session::console_page(form.back.as_deref(), &default);
    Ok(console.done(&back, message))
}

/// A period in words.
pub(super) fn period_words(period: &str) -> &str {
    match period {
        "hour" => "this hour",
        "day" => "today",
        "week" => "this week",
        "month" => "this month",
        "total" => "in total",
        other => other,
    }
}

/// A cap's bar: `12 / 100 leads today` or `$120.00 / $500.00 today`.
pub(super) fn cap_bar(console: &Console, cap: &CapState) -> Markup {
    let period = period_words(&cap.period);
    if cap.kind == "leads" {
        let (used, limit) = (cap.used.cents() / 100, cap.limit.cents() / 100);
        let text = format!("{used} / {limit} leads {period}");
        view::bar(&format!("leads {period}"), used, limit, &text)
    } else {
        let text = format!(
            "{} / {} spent {period}",
            console.money(cap.used),
            console.money(cap.limit)
        );
        view::bar(
            &format!("spend {period}"),
            cap.used.cents(),
            cap.limit.cents(),
            &text,
        )
    }
}

/// Caps as bars, one a line.
pub(super) fn cap_bars(console: &Console, caps: Option<&Vec<CapState>>) -> Markup {
    html! {
        @match caps {
            Some(caps) if !caps.is_empty() => {
                @for cap in caps { div { (cap_bar(console, cap)) } }
            }
            _ => { span.muted { "no caps" } }
        }
    }
}

/// Caps as a table with each period's start.
pub(super) fn caps_table(console: &Console, caps: &[CapState]) -> Markup {
    html! {
        @if caps.is_empty() {
            p.muted { "No caps: no limit on leads or spend." }
        } @else {
            table {
                thead { tr { th { "Period" } th { "Limit" } th { "Used" } th { "Since" } } }
                tbody {
                    @for cap in caps {
                        tr {
                            td { (cap.period) }
                            td.num {
                                @if cap.kind == "leads" { (cap.limit.cents() / 100) " leads" }
                                @else { (console.money(cap.limit)) " spend" }
                            }
                            td { (cap_bar(console, cap)) }
                            td { (console.time(cap.period_start)) }
                        }
                    }
                }
            }
        }
    }
}

/// A contract's prices in a few words.
fn pricing_summary(console: &Console, pricing: &Pricing) -> String {
    if pricing.kind == "rtb" {
        let host = pricing
            .url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        let mut text = format!("RTB {host}");
        if let Some(max) = pricing.max_bid {
            text.push_str(&format!(", max bid {}", console.money(max)));
        }
        return text;
    }
    let mut parts = Vec::new();
    if let Some(price) = pricing.exclusive {
        parts.push(format!("exclusive {}", console.money(price)));
    }
    if let Some(price) = pricing.shared {
        parts.push(format!("shared {}", console.money(price)));
    }
    if parts.is_empty() {
        "fixed, no price".to_owned()
    } else {
        parts.join(", ")
    }
}

/// A table of contracts (with their caps' bars when `caps` has them).
pub(super) fn contracts_table(
    console: &Console,
    contracts: &[Contract],
    buyers: Option<&HashMap<Uuid, String>>,
    offers: &HashMap<Uuid, String>,
    caps: &HashMap<Uuid, Vec<CapState>>,
) -> Markup {
    html! {
        @if contracts.is_empty() {
            p.muted { "No contracts." }
        } @else {
            table.contracts {
                thead {
                    tr {
                        th { "Contract" }
                        @if buyers.is_some() { th { "Buyer" } }
                        th { "Offer" } th { "Status" } th { "Pricing" } th { "Caps" }
                    }
                }
                tbody {
                    @for contract in contracts {
                        tr {
                            td { a href={ "/console/contracts/" (contract.id) } { (contract.name) } }
                            @if let Some(buyers) = buyers {
                                td {
                                    a href={ "/console/buyers/" (contract.buyer_id) } {
                                        (buyers.get(&contract.buyer_id).map_or("(buyer)", String::as_str))
                                    }
                                }
                            }
                            td { (offers.get(&contract.offer_id).map_or("(offer)", String::as_str)) }
                            td { (status_badge(&contract.status)) }
                            td { (pricing_summary(console, &contract.pricing)) }
                            td { (cap_bars(console, caps.get(&contract.id))) }
                        }
                    }
                }
            }
        }
    }
}

/// The paths of the caps of the contracts that have any.
pub(super) fn caps_paths(contracts: &[Contract]) -> Vec<(Uuid, String)> {
    contracts
        .iter()
        .filter(|c| !c.caps.is_empty())
        .map(|c| (c.id, format!("/v1/admin/contracts/{}/caps", c.id)))
        .collect()
}

// ---- pages ----

async fn list(console: Console) -> Result<Page, ConsoleError> {
    let (contracts, buyers, offers) = tokio::try_join!(
        list_of::<Contract>(&console, "contracts"),
        list_of::<Buyer>(&console, "buyers"),
        list_of::<Offer>(&console, "offers"),
    )?;
    let caps = caps_of(&console, caps_paths(&contracts.items)).await?;
    let buyer_names = names(&buyers.items, |b| (b.id, b.name.clone()));
    let offer_names = names(&offers.items, |o| (o.id, o.name.clone()));
    let body = html! {
        p.hint { "Each contract's caps in their current period; open a contract to pause or resume it." }
        (contracts_table(&console, &contracts.items, Some(&buyer_names), &offer_names, &caps))
        (more_note(&contracts, "contracts"))
    };
    Ok(Page::new(&console, Section::Contracts, "Contracts", body))
}

async fn show(console: Console, Path(id): Path<String>) -> Result<Page, ConsoleError> {
    let id = parse_id(&id)?;
    let (contract_path, caps_path) = (
        format!("/v1/admin/contracts/{id}"),
        format!("/v1/admin/contracts/{id}/caps"),
    );
    let (contract, caps) = tokio::try_join!(
        console.admin.get::<Contract>(&contract_path),
        console.admin.get::<Caps>(&caps_path),
    )?;
    let (buyer_path, offer_path) = (
        format!("/v1/admin/buyers/{}", contract.buyer_id),
        format!("/v1/admin/offers/{}", contract.offer_id),
    );
    let (buyer, offer) = tokio::try_join!(
        console.admin.get::<Buyer>(&buyer_path),
        console.admin.get::<Offer>(&offer_path),
    )?;
    let base = format!("/console/contracts/{id}");
    let body = html! {
        div.panel {
            dl.facts {
                dt { "Status" }
                dd { (status_badge(&contract.status)) " " (status_actions(&console, &base, &contract.status, &base)) }
                dt { "Buyer" }
                dd {
                    a href={ "/console/buyers/" (buyer.id) } { (buyer.name) }
                    " · balance " (console.money(buyer.balance))
                }
                dt { "Offer" } dd { (offer.name) }
                dt { "Priority" } dd { (contract.priority) }
                dt { "Weight" } dd { (contract.weight) }
                dt { "Dedup" } dd { @if contract.dedup_days == 0 { "none" } @else { (contract.dedup_days) " days" } }
                dt { "Id" } dd.id { (contract.id) }
                dt { "Created" } dd { (console.time(contract.created_at)) }
                dt { "Changed" } dd { (console.time(contract.updated_at)) }
            }
        }
        h2 { "Caps" }
        (caps_table(&console, &caps.caps))
        div.grid2 {
            div {
                h2 { "Pricing" }
                (pricing_facts(&console, &contract.pricing))
            }
            div {
                h2 { "Schedule" }
                (schedule_facts(contract.schedule.as_ref()))
            }
            div {
                h2 { "Filters" }
                @if contract.filters.is_empty() {
                    p.muted { "None: the contract buys every lead of the offer." }
                } @else {
                    p.hint { "Every one must hold:" }
                    ul.filters {
                        @for filter in &contract.filters {
                            li { (crate::auction::describe_filter(filter)) }
                        }
                    }
                }
            }
            div {
                h2 { "Returns" }
                (returns_facts(&contract.returns))
            }
        }
    };
    Ok(Page::new(
        &console,
        Section::Contracts,
        format!("Contract {}", contract.name),
        body,
    ))
}

fn pricing_facts(console: &Console, pricing: &Pricing) -> Markup {
    let money = |a: Option<Amount>| a.map_or_else(|| "—".to_owned(), |a| console.money(a));
    html! {
        dl.facts {
            @if pricing.kind == "rtb" {
                dt { "Type" } dd { "RTB: the buyer bids on each ping" }
                dt { "Bid URL" } dd { code { (pricing.url.as_deref().unwrap_or("")) } }
                dt { "Timeout" } dd {
                    @if let Some(ms) = pricing.timeout_ms { (ms) " ms" } @else { "the server's default" }
                }
                dt { "Max bid" } dd { (money(pricing.max_bid)) }
            } @else {
                dt { "Type" } dd { "fixed price" }
                dt { "Exclusive" } dd { (money(pricing.exclusive)) }
                dt { "Shared" } dd { (money(pricing.shared)) }
            }
        }
    }
}

const DAYS: [(&str, &str); 7] = [
    ("mon", "Monday"),
    ("tue", "Tuesday"),
    ("wed", "Wednesday"),
    ("thu", "Thursday"),
    ("fri", "Friday"),
    ("sat", "Saturday"),
    ("sun", "Sunday"),
];

fn schedule_facts(schedule: Option<&Value>) -> Markup {
    let Some(schedule) = schedule.filter(|s| !s.is_null()) else {
        return html! { p { "Always open." } };
    };
    let timezone = schedule
        .get("timezone")
        .and_then(Value::as_str)
        .unwrap_or("the tenant's timezone");
    let hours = |day: &str| -> String {
        let intervals = schedule
            .get("days")
            .and_then(|d| d.get(day))
            .and_then(Value::as_array);
        match intervals {
            Some(list) if !list.is_empty() => list
                .iter()
                .map(|i| {
                    let at = |n: usize| i.get(n).and_then(Value::as_str).unwrap_or("?");
                    format!("{}–{}", at(0), at(1))
                })
                .collect::<Vec<_>>()
                .join(", "),
            _ => "closed".to_owned(),
        }
    };
    html! {
        p.hint { "Open hours, in " (timezone) ":" }
        dl.facts {
            @for (key, day) in DAYS {
                dt { (day) } dd { (hours(key)) }
            }
        }
    }
}

fn returns_facts(returns: &Value) -> Markup {
    let text = |key: &str| match returns.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "—".to_owned(),
        Some(other) => other.to_string(),
    };
    let allowed = returns.get("allowed").and_then(Value::as_bool) == Some(true);
    let reasons: Vec<&str> = returns
        .get("reasons")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    html! {
        @if !allowed {
            p { "Returns are not allowed." }
        } @else {
            dl.facts {
                dt { "Window" } dd { (text("window_days")) " days after the sale" }
                dt { "At most" } dd { (text("max_percent")) " % of the sales of each " (text("period")) }
                dt { "Approval" } dd {
                    @if returns.get("auto_approve").and_then(Value::as_bool) == Some(true) { "automatic" }
                    @else { "by an operator" }
                }
                dt { "Reasons" } dd { (reasons.join(", ")) }
            }
        }
    }
}
