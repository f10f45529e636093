//! The console's buyers section (docs/console.md): each buyer's balance and caps; a buyer's
//! page with its contracts, its ledger and **Add funds**, confirmed first: the confirmation
//! carries a fresh idempotency key, so a second submit of it moves no more money.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

use super::contracts::{
    Buyer, Caps, Contract, List, Offer, cap_bars, caps_of, caps_paths, caps_table, contracts_table,
    list_of, more_note, names, parse_id, status_actions, status_badge, status_routes,
};
use crate::app::AppState;
use crate::console::view::{self, Section};
use crate::console::{Amount, Console, ConsoleError, CsrfForm, Page};
use crate::money::Money;

/// Ledger entries a page shows.
const LEDGER_PAGE: usize = 100;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/buyers", get(list))
        .route("/console/buyers/{id}", get(show))
        .merge(status_routes("buyers", "Buyer"))
        .route(
            "/console/buyers/{id}/funds",
            get(funds_form).post(confirm_funds),
        )
        .route("/console/buyers/{id}/funds/add", post(add_funds))
}

/// One entry of a ledger (a buyer's or a partner's), newest first.
#[derive(Deserialize)]
pub(super) struct LedgerEntry {
    pub kind: String,
    pub amount: Amount,
    pub sale_id: Option<Uuid>,
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A sale of the buyer's, for a ledger entry's link to its auction.
#[derive(Deserialize)]
struct Sale {
    id: Uuid,
    ping_id: Uuid,
}

#[derive(Deserialize)]
struct Receipt {
    entry: LedgerEntry,
    balance: Amount,
}

/// A ledger's page: `?cursor=` (an entry's id) for older entries.
#[derive(Deserialize)]
pub(super) struct LedgerQuery {
    cursor: Option<String>,
}

impl LedgerQuery {
    /// The admin API's ledger path for the account at `account` (`/v1/admin/buyers/{id}`).
    pub(super) fn path(&self, account: &str) -> String {
        let mut path = format!("{account}/ledger?limit={LEDGER_PAGE}");
        if let Some(cursor) = self.cursor.as_deref().and_then(|c| Uuid::parse_str(c).ok()) {
            path.push_str(&format!("&cursor={cursor}"));
        }
        path
    }
}

/// A ledger as a table; `sale_link` gives a sale's page when there is one.
pub(super) fn ledger_table(
    console: &Console,
    ledger: &List<LedgerEntry>,
    page: &str,
    sale_link: impl Fn(Uuid) -> Option<String>,
) -> Markup {
    html! {
        @if ledger.items.is_empty() {
            p.muted { "No entries." }
        } @else {
            table.ledger {
                thead { tr { th { "Time" } th { "Kind" } th.num { "Amount" } th { "Sale" } th { "Note" } } }
                tbody {
                    @for entry in &ledger.items {
                        tr {
                            td { (console.time(entry.created_at)) }
                            td { (entry.kind) }
                            td.num { (console.money(entry.amount)) }
                            td {
                                @if let Some(sale) = entry.sale_id {
                                    @if let Some(href) = sale_link(sale) {
                                        a.id href=(href) { (short(sale)) }
                                    } @else {
                                        span.id title=(sale) { (short(sale)) }
                                    }
                                }
                            }
                            td { (entry.note.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
            @if let Some(cursor) = &ledger.next_cursor {
                p { a href={ (page) "?cursor=" (view::url_encode(cursor)) } { "Older entries" } }
            }
        }
    }
}

/// The first part of an id, enough to tell it apart on a page.
pub(super) fn short(id: Uuid) -> String {
    id.simple().to_string()[..8].to_owned()
}

async fn list(console: Console) -> Result<Page, ConsoleError> {
    let (buyers, contracts) = tokio::try_join!(
        list_of::<Buyer>(&console, "buyers"),
        list_of::<Contract>(&console, "contracts"),
    )?;
    let paths = buyers
        .items
        .iter()
        .filter(|b| !b.caps.is_empty())
        .map(|b| (b.id, format!("/v1/admin/buyers/{}/caps", b.id)))
        .collect();
    let caps = caps_of(&console, paths).await?;
    let mut counts: HashMap<Uuid, usize> = HashMap::new();
    for contract in contracts.items.iter().filter(|c| c.status != "archived") {
        *counts.entry(contract.buyer_id).or_default() += 1;
    }
    let body = html! {
        @if buyers.items.is_empty() {
            p.muted { "No buyers." }
        } @else {
            table.buyers {
                thead {
                    tr {
                        th { "Buyer" } th { "Status" } th.num { "Balance" } th.num { "Credit limit" }
                        th.num { "Contracts" } th { "Caps" }
                    }
                }
                tbody {
                    @for buyer in &buyers.items {
                        tr {
                            td { a href={ "/console/buyers/" (buyer.id) } { (buyer.name) } }
                            td { (status_badge(&buyer.status)) }
                            td.num { (console.money(buyer.balance)) }
                            td.num { (console.money(buyer.credit_limit)) }
                            td.num { (counts.get(&buyer.id).copied().unwrap_or(0)) }
                            td { (cap_bars(&console, caps.get(&buyer.id))) }
                        }
                    }
                }
            }
        }
        (more_note(&buyers, "buyers"))
    };
    Ok(Page::new(&console, Section::Buyers, "Buyers", body))
}

async fn show(
    console: Console,
    Path(id): Path<String>,
    Query(query): Query<LedgerQuery>,
) -> Result<Page, ConsoleError> {
    let id = parse_id(&id)?;
    let account = format!("/v1/admin/buyers/{id}");
    let caps_path = format!("{account}/caps");
    let ledger_path = query.path(&account);
    let sales_path = format!("/v1/admin/sales?buyer_id={id}&limit={LEDGER_PAGE}");
    let (buyer, caps, ledger, contracts, offers, sales) = tokio::try_join!(
        console.admin.get::<Buyer>(&account),
        console.admin.get::<Caps>(&caps_path),
        console.admin.get::<List<LedgerEntry>>(&ledger_path),
        list_of::<Contract>(&console, "contracts"),
        list_of::<Offer>(&console, "offers"),
        console.admin.get::<List<Sale>>(&sales_path),
    )?;
    let contracts: Vec<Contract> = contracts
        .items
        .into_iter()
        .filter(|c| c.buyer_id == id)
        .collect();
    let contract_caps = caps_of(&console, caps_paths(&contracts)).await?;
    let offer_names = names(&offers.items, |o| (o.id, o.name.clone()));
    let pings: HashMap<Uuid, Uuid> = sales.items.iter().map(|s| (s.id, s.ping_id)).collect();
    let page = format!("/console/buyers/{id}");
    let body = html! {
        div.cards {
            div.card {
                div.label { "Balance" }
                div.value { (console.money(buyer.balance)) }
                div.sub { "credit limit " (console.money(buyer.credit_limit)) }
            }
            div.card {
                div.label { "Status" }
                div.value { (status_badge(&buyer.status)) }
                div.sub { (status_actions(&console, &page, &buyer.status, &page)) }
            }
        }
        div.grid2 {
            div {
                h2 { "Add funds" }
                (funds_fields(&console, &buyer, "", "", None))
            }
            div {
                h2 { "Caps over all its contracts" }
                (caps_table(&console, &caps.caps))
            }
        }
        h2 { "Contracts" }
        (contracts_table(&console, &contracts, None, &offer_names, &contract_caps))
        h2 { "Ledger" }
        p.hint { "Newest first; the balance is the sum of every entry." }
        (ledger_table(&console, &ledger, &page, |sale| {
            pings.get(&sale).map(|ping| format!("/console/auctions/{ping}"))
        }))
    };
    Ok(Page::new(
        &console,
        Section::Buyers,
        buyer.name.clone(),
        body,
    ))
}

/// The add-funds form (amount and note), with a refusal's words when there is one.
fn funds_fields(
    console: &Console,
    buyer: &Buyer,
    amount: &str,
    note: &str,
    refusal: Option<&str>,
) -> Markup {
    html! {
        form.stack.funds method="post" action={ "/console/buyers/" (buyer.id) "/funds" } {
            (console.csrf_field())
            @if let Some(refusal) = refusal {
                p.refusal role="alert" { (refusal) }
            }
            label {
                "Amount (negative to remove)"
                input name="amount" value=(amount) inputmode="decimal" required placeholder="500.00";
            }
            label {
                "Note"
                input name="note" value=(note) maxlength="500" placeholder="wire 1123";
            }
            button type="submit" { "Add funds" }
        }
    }
}

/// The form again, with the refusal in words (422).
fn funds_page(console: &Console, buyer: &Buyer, form: &FundsForm, refusal: &str) -> Response {
    let body = html! {
        p { "Balance " (console.money(buyer.balance)) ". " a href={ "/console/buyers/" (buyer.id) } { "Back to " (buyer.name) } }
        (funds_fields(console, buyer, &form.amount, form.note.as_deref().unwrap_or(""), Some(refusal)))
    };
    let page = Page::new(
        console,
        Section::Buyers,
        format!("Add funds to {}", buyer.name),
        body,
    );
    (StatusCode::UNPROCESSABLE_ENTITY, page).into_response()
}

async fn funds_form(console: Console, Path(id): Path<String>) -> Result<Page, ConsoleError> {
    let id = parse_id(&id)?;
    let buyer: Buyer = console.admin.get(&format!("/v1/admin/buyers/{id}")).await?;
    let body = html! {
        p { "Balance " (console.money(buyer.balance)) ". " a href={ "/console/buyers/" (buyer.id) } { "Back to " (buyer.name) } }
        (funds_fields(&console, &buyer, "", "", None))
    };
    Ok(Page::new(
        &console,
        Section::Buyers,
        format!("Add funds to {}", buyer.name),
        body,
    ))
}

#[derive(Deserialize)]
struct FundsForm {
    amount: String,
    note: Option<String>,
}

/// The amount as the admin API reads it (`api::admin::input::read_money`, the same words),
/// not zero; the operator may write a leading `$`.
fn read_amount(text: &str) -> Result<Money, String> {
    let text = text.trim();
    let text = text.strip_prefix('$').unwrap_or(text).trim();
    // Read as the admin API reads a body's number: its exact text, never through a float.
    let value = match crate::exact_json::from_slice(text.as_bytes()) {
        Ok(value @ (serde_json::Value::Number(_) | serde_json::Value::String(_))) => value,
        _ => serde_json::Value::String(text.to_owned()),
    };
    match crate::api::admin::input::read_money(&value) {
        Ok(amount) if amount == Money::ZERO => Err("/amount: must not be zero".to_owned()),
        Ok(amount) => Ok(amount),
        Err(message) => Err(format!("/amount: {message}")),
    }
}

/// The confirmation: what will be added and the balance after it; its Confirm button carries
/// the amount, the note and a fresh idempotency key.
async fn confirm_funds(
    Path(id): Path<String>,
    CsrfForm { console, form }: CsrfForm<FundsForm>,
) -> Result<Response, ConsoleError> {
    let id = parse_id(&id)?;
    let buyer: Buyer = console.admin.get(&format!("/v1/admin/buyers/{id}")).await?;
    let amount = match read_amount(&form.amount) {
        Ok(amount) => amount,
        Err(refusal) => return Ok(funds_page(&console, &buyer, &form, &refusal)),
    };
    let after = Amount(Money::from_cents(
        buyer.balance.cents().saturating_add(amount.cents()),
    ));
    let note = form.note.as_deref().map(str::trim).unwrap_or("");
    let key = format!("console-funds-{}", Uuid::new_v4());
    let (verb, shown) = if amount.is_negative() {
        ("Remove", Amount(Money::from_cents(-amount.cents())))
    } else {
        ("Add", Amount(amount))
    };
    let question = if amount.is_negative() {
        format!("{verb} {} from {}?", console.money(shown), buyer.name)
    } else {
        format!("{verb} {} to {}?", console.money(shown), buyer.name)
    };
    let body = html! {
        div.panel.confirm {
            p.question { strong { (question) } }
            p { "New balance will be " strong { (console.money(after)) } " (now " (console.money(buyer.balance)) ")." }
            @if !note.is_empty() { p { "Note: " (note) } }
            form.inline method="post" action={ "/console/buyers/" (id) "/funds/add" } {
                (console.csrf_field())
                input type="hidden" name="amount" value=(amount.to_string());
                input type="hidden" name="note" value=(note);
                input type="hidden" name="key" value=(key);
                button type="submit" { "Confirm" }
            }
            " "
            a href={ "/console/buyers/" (id) } { "Cancel" }
        }
    };
    Ok(Page::new(&console, Section::Buyers, "Add funds?", body).into_response())
}

#[derive(Deserialize)]
struct AddFunds {
    amount: String,
    note: Option<String>,
    key: String,
}

/// Adds the confirmed funds through the admin API, once per idempotency key (a second submit
/// of the same confirmation replays the first answer and moves no money).
async fn add_funds(
    Path(id): Path<String>,
    CsrfForm { console, form }: CsrfForm<AddFunds>,
) -> Result<Response, ConsoleError> {
    let id = parse_id(&id)?;
    let account = format!("/v1/admin/buyers/{id}");
    let amount = match read_amount(&form.amount) {
        Ok(amount) => amount,
        Err(refusal) => return refused(&console, &account, form, &refusal).await,
    };
    // The amount's exact text as a JSON number (quoted only when an f64 would change it,
    // which the admin API reads exactly).
    let mut body = crate::exact_json::from_slice(format!("{{\"amount\":{amount}}}").as_bytes())
        .map_err(|_| ConsoleError::Internal)?;
    let note = form.note.as_deref().map(str::trim).unwrap_or("");
    if !note.is_empty() {
        body["note"] = serde_json::Value::String(note.to_owned());
    }
    let sent = console
        .admin
        .send::<Receipt>(
            Method::POST,
            &format!("/v1/admin/buyers/{id}/funds"),
            Some(body),
            Some(&form.key),
        )
        .await;
    match sent {
        Ok(receipt) => {
            let verb = if receipt.entry.amount.cents() < 0 {
                "Removed"
            } else {
                "Added"
            };
            let shown = Amount(Money::from_cents(receipt.entry.amount.cents().abs()));
            let message = format!(
                "{verb} {}: the balance is {}",
                console.money(shown),
                console.money(receipt.balance)
            );
            Ok(console.done(&format!("/console/buyers/{id}"), &message))
        }
        Err(ConsoleError::Api(problem)) if problem.status == 422 || problem.status == 409 => {
            refused(&console, &account, form, &view::problem_text(&problem)).await
        }
        Err(error) => Err(error),
    }
}

/// The form again after a refusal, with the buyer's balance as it is now.
async fn refused(
    console: &Console,
    account: &str,
    form: AddFunds,
    refusal: &str,
) -> Result<Response, ConsoleError> {
    let buyer: Buyer = console.admin.get(account).await?;
    let form = FundsForm {
        amount: form.amount,
        note: form.note,
    };
    Ok(funds_page(console, &buyer, &form, refusal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_amount_is_read_as_the_admin_api_reads_it() {
        assert_eq!(read_amount("500").unwrap().cents(), 50_000);
        assert_eq!(read_amount(" $12.50 ").unwrap().cents(), 1_250);
        assert_eq!(read_amount("-3.1").unwrap().cents(), -310);
        assert!(read_amount("abc").unwrap_err().contains("must be a number"));
        assert!(
            read_amount("1.234")
                .unwrap_err()
                .contains("at most 2 decimals")
        );
        assert!(read_amount("0").unwrap_err().contains("not be zero"));
        assert!(read_amount("1e3").is_ok());
        assert!(read_amount("").is_err());
    }
}
