//! The console's partners section (docs/console.md): each partner's status and balance (what
//! the exchange owes it) with pause/resume; a partner's page with its campaigns (pause/resume,
//! rotate the posting key: confirmed first, the new key shown once on the answer page and
//! nowhere else) and its ledger.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Query};
use axum::http::Method;

use axum::routing::get;
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

use super::buyers::{LedgerEntry, LedgerQuery, ledger_table};
use super::contracts::{
    List, Offer, list_of, more_note, names, parse_id, status_actions, status_badge, status_routes,
};
use crate::app::AppState;
use crate::console::view::Section;
use crate::console::{Amount, Console, ConsoleError, CsrfForm, Page};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/partners", get(list))
        .route("/console/partners/{id}", get(show))
        .merge(status_routes("partners", "Partner"))
        .merge(status_routes("campaigns", "Campaign"))
        .route(
            "/console/campaigns/{id}/rotate-key",
            get(confirm_rotation).post(rotate),
        )
}

#[derive(Deserialize)]
struct Partner {
    id: Uuid,
    name: String,
    status: String,
    balance: Amount,
}

#[derive(Deserialize)]
struct Campaign {
    id: Uuid,
    partner_id: Uuid,
    offer_id: Uuid,
    status: String,
    payout: Payout,
    min_payout: Amount,
    ping_rate_per_second: Option<i32>,
}

/// `{"type":"revshare","percent":70}`, `{"type":"margin","amount":3.00}`,
/// `{"type":"fixed","amount":8.00}`.
#[derive(Deserialize)]
struct Payout {
    #[serde(rename = "type")]
    kind: String,
    /// Written like an amount: `70.00` (%).
    percent: Option<Amount>,
    amount: Option<Amount>,
}

/// The answer of a rotation: the campaign and its new key (shown once).
#[derive(Deserialize)]
struct Rotated {
    partner_id: Uuid,
    offer_id: Uuid,
    posting_key: String,
}

fn payout_words(console: &Console, payout: &Payout) -> String {
    let amount = payout.amount.map(|a| console.money(a)).unwrap_or_default();
    match payout.kind.as_str() {
        "revshare" => format!(
            "{} % of the price",
            payout
                .percent
                .as_ref()
                .map(percent_text)
                .unwrap_or_default()
        ),
        "margin" => format!("the price less {amount}"),
        "fixed" => format!("{amount} a lead"),
        other => other.to_owned(),
    }
}

/// A percent as written by people: `70`, `70.5` (not `70.00`).
fn percent_text(percent: &Amount) -> String {
    let text = percent.to_string();
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

async fn list(console: Console) -> Result<Page, ConsoleError> {
    let (partners, campaigns) = tokio::try_join!(
        list_of::<Partner>(&console, "partners"),
        list_of::<Campaign>(&console, "campaigns"),
    )?;
    let mut counts: HashMap<Uuid, usize> = HashMap::new();
    for campaign in campaigns.items.iter().filter(|c| c.status != "archived") {
        *counts.entry(campaign.partner_id).or_default() += 1;
    }
    let back = "/console/partners";
    let body = html! {
        @if partners.items.is_empty() {
            p.muted { "No partners." }
        } @else {
            table.partners {
                thead {
                    tr {
                        th { "Partner" } th { "Status" } th.num { "Balance (owed)" }
                        th.num { "Campaigns" } th { "" }
                    }
                }
                tbody {
                    @for partner in &partners.items {
                        @let base = format!("/console/partners/{}", partner.id);
                        tr {
                            td { a href=(base) { (partner.name) } }
                            td { (status_badge(&partner.status)) }
                            td.num { (console.money(partner.balance)) }
                            td.num { (counts.get(&partner.id).copied().unwrap_or(0)) }
                            td { (status_actions(&console, &base, &partner.status, back)) }
                        }
                    }
                }
            }
        }
        (more_note(&partners, "partners"))
    };
    Ok(Page::new(&console, Section::Partners, "Partners", body))
}

async fn show(
    console: Console,
    Path(id): Path<String>,
    Query(query): Query<LedgerQuery>,
) -> Result<Page, ConsoleError> {
    let id = parse_id(&id)?;
    let account = format!("/v1/admin/partners/{id}");
    let ledger_path = query.path(&account);
    let (partner, ledger, campaigns, offers) = tokio::try_join!(
        console.admin.get::<Partner>(&account),
        console.admin.get::<List<LedgerEntry>>(&ledger_path),
        list_of::<Campaign>(&console, "campaigns"),
        list_of::<Offer>(&console, "offers"),
    )?;
    let offer_names = names(&offers.items, |o| (o.id, o.name.clone()));
    let page = format!("/console/partners/{id}");
    let campaigns: Vec<&Campaign> = campaigns
        .items
        .iter()
        .filter(|c| c.partner_id == id)
        .collect();
    let body = html! {
        div.cards {
            div.card {
                div.label { "Balance" }
                div.value { (console.money(partner.balance)) }
                div.sub { "what the exchange owes " (partner.name) }
            }
            div.card {
                div.label { "Status" }
                div.value { (status_badge(&partner.status)) }
                div.sub { (status_actions(&console, &page, &partner.status, &page)) }
            }
        }
        h2 { "Campaigns" }
        (campaigns_table(&console, &campaigns, &offer_names, &page))
        h2 { "Ledger" }
        p.hint { "Newest first; the balance is the sum of every entry." }
        (ledger_table(&console, &ledger, &page, |_| None))
    };
    Ok(Page::new(
        &console,
        Section::Partners,
        partner.name.clone(),
        body,
    ))
}

fn campaigns_table(
    console: &Console,
    campaigns: &[&Campaign],
    offers: &HashMap<Uuid, String>,
    back: &str,
) -> Markup {
    html! {
        @if campaigns.is_empty() {
            p.muted { "No campaigns." }
        } @else {
            table.campaigns {
                thead {
                    tr {
                        th { "Offer" } th { "Payout" } th.num { "Min payout" } th.num { "Pings/s" }
                        th { "Status" } th { "" } th { "Posting key" }
                    }
                }
                tbody {
                    @for campaign in campaigns {
                        @let base = format!("/console/campaigns/{}", campaign.id);
                        tr {
                            td {
                                (offers.get(&campaign.offer_id).map_or("(offer)", String::as_str))
                                br; span.id { (campaign.id) }
                            }
                            td { (payout_words(console, &campaign.payout)) }
                            td.num { (console.money(campaign.min_payout)) }
                            td.num {
                                @match campaign.ping_rate_per_second {
                                    Some(rate) => { (rate) }
                                    None => { span.muted { "no limit" } }
                                }
                            }
                            td { (status_badge(&campaign.status)) }
                            td { (status_actions(console, &base, &campaign.status, back)) }
                            td {
                                @if campaign.status != "archived" {
                                    a href={ (base) "/rotate-key" } { "Rotate posting key" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The campaign's name as the sales list writes it: its partner's and its offer's.
async fn campaign_name(
    console: &Console,
    partner_id: Uuid,
    offer_id: Uuid,
) -> Result<String, ConsoleError> {
    let (partner_path, offer_path) = (
        format!("/v1/admin/partners/{partner_id}"),
        format!("/v1/admin/offers/{offer_id}"),
    );
    let (partner, offer) = tokio::try_join!(
        console.admin.get::<Partner>(&partner_path),
        console.admin.get::<Offer>(&offer_path),
    )?;
    Ok(format!("{} → {}", partner.name, offer.name))
}

async fn confirm_rotation(console: Console, Path(id): Path<String>) -> Result<Page, ConsoleError> {
    let id = parse_id(&id)?;
    let campaign: Campaign = console
        .admin
        .get(&format!("/v1/admin/campaigns/{id}"))
        .await?;
    let name = campaign_name(&console, campaign.partner_id, campaign.offer_id).await?;
    let body = html! {
        div.panel.confirm {
            p.question { strong { "Rotate the posting key of " (name) "?" } }
            p {
                "A new key is made and shown once. The current key stops working within a second: "
                "the partner's pings and posts with it are refused until they use the new one."
            }
            form.inline method="post" action={ "/console/campaigns/" (id) "/rotate-key" } {
                (console.csrf_field())
                button.danger type="submit" { "Rotate key" }
            }
            " "
            a href={ "/console/partners/" (campaign.partner_id) } { "Cancel" }
        }
    };
    Ok(Page::new(
        &console,
        Section::Partners,
        "Rotate posting key?",
        body,
    ))
}

#[derive(Deserialize)]
struct RotateForm {}

/// Rotates the key and shows the new one on this answer only (never in a cookie or a flash;
/// the page is `no-store`).
async fn rotate(
    Path(id): Path<String>,
    CsrfForm { console, .. }: CsrfForm<RotateForm>,
) -> Result<Page, ConsoleError> {
    let id = parse_id(&id)?;
    let rotated: Rotated = console
        .admin
        .send(
            Method::POST,
            &format!("/v1/admin/campaigns/{id}/rotate-key"),
            None,
            None,
        )
        .await?;
    // The key is rotated: nothing may now keep it from being shown (a name not read is the id).
    let name = campaign_name(&console, rotated.partner_id, rotated.offer_id)
        .await
        .unwrap_or_else(|_| format!("campaign {id}"));
    let body = html! {
        p.flash role="status" { "The posting key of " (name) " was rotated." }
        p { "The new posting key:" }
        p.secret { code #posting-key { (rotated.posting_key) } }
        p {
            strong { "Copy it now: it is shown only this once" }
            " (Gavel keeps only its hash). The old key has stopped working: give the partner the new one."
        }
        p { a href={ "/console/partners/" (rotated.partner_id) } { "Back to the partner" } }
    };
    Ok(Page::new(
        &console,
        Section::Partners,
        "New posting key",
        body,
    ))
}
