//! Reports: the summary report by offer, partner, buyer or contract over a range of the
//! tenant's dates, and its CSV (docs/console.md). Both are the admin API's
//! `GET /v1/admin/reports/summary` (the CSV with `Accept: text/csv`), one request each.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::Query;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{Datelike, Utc};
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

use crate::app::AppState;
use crate::console::view::{self, Section};
use crate::console::{Amount, Console, ConsoleError, Page};
use crate::money::Money;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/reports", get(reports))
        .route("/console/reports.csv", get(reports_csv))
}

/// The form's fields, as typed (the admin API checks them).
#[derive(Deserialize, Default)]
struct ReportQuery {
    group_by: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

const GROUPS: [(&str, &str); 4] = [
    ("offer", "Offer"),
    ("partner", "Partner"),
    ("buyer", "Buyer"),
    ("contract", "Contract"),
];

/// The range and grouping asked for, the defaults filled in: this month so far, by offer.
struct Asked {
    group_by: String,
    from: String,
    to: String,
}

/// A field given and not blank.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl Asked {
    fn new(console: &Console, query: &ReportQuery) -> Self {
        let today = Utc::now().with_timezone(&console.timezone).date_naive();
        let first = today.with_day(1).unwrap_or(today);
        Asked {
            group_by: given(&query.group_by).unwrap_or("offer").to_owned(),
            from: given(&query.from)
                .map_or_else(|| first.format("%Y-%m-%d").to_string(), str::to_owned),
            to: given(&query.to)
                .map_or_else(|| today.format("%Y-%m-%d").to_string(), str::to_owned),
        }
    }

    fn query(&self) -> String {
        format!(
            "group_by={}&from={}&to={}",
            view::url_encode(&self.group_by),
            view::url_encode(&self.from),
            view::url_encode(&self.to)
        )
    }

    fn group_label(&self) -> &'static str {
        GROUPS
            .iter()
            .find(|(value, _)| *value == self.group_by)
            .map_or("Group", |(_, label)| label)
    }
}

#[derive(Deserialize)]
struct Summary {
    rows: Vec<Row>,
}

#[derive(Deserialize)]
struct Row {
    group_id: Uuid,
    group_name: Option<String>,
    pings: i64,
    pings_with_bids: i64,
    bid_rate: f64,
    posts: i64,
    sales: i64,
    revenue: Amount,
    payout: Amount,
    margin: Amount,
    returns: i64,
    returned_revenue: Amount,
    net_revenue: Amount,
    net_payout: Amount,
    net_margin: Amount,
    declines: BTreeMap<String, i64>,
}

async fn reports(
    console: Console,
    Query(query): Query<ReportQuery>,
) -> Result<Response, ConsoleError> {
    let asked = Asked::new(&console, &query);
    let answer = console
        .admin
        .get::<Summary>(&format!("/v1/admin/reports/summary?{}", asked.query()))
        .await;
    let (summary, refusal) = match answer {
        Ok(summary) => (Some(summary), None),
        // A range the API refuses is said on the page, under the form.
        Err(ConsoleError::Api(problem)) if problem.status < 500 => {
            (None, Some(view::problem_text(&problem)))
        }
        Err(other) => return Err(other),
    };
    let body = html! {
        (form(&asked))
        @if let Some(refusal) = &refusal {
            p.refusal role="alert" { (refusal) }
        }
        @if let Some(summary) = &summary {
            p {
                a.download href={ "/console/reports.csv?" (asked.query()) } download {
                    "Download CSV"
                }
                span.hint { " · the same figures, one row per " (asked.group_label().to_lowercase()) }
            }
            (table(&console, &asked, summary))
        }
    };
    let status = if refusal.is_some() {
        axum::http::StatusCode::BAD_REQUEST
    } else {
        axum::http::StatusCode::OK
    };
    Ok((
        status,
        Page::new(&console, Section::Reports, "Reports", body),
    )
        .into_response())
}

fn form(asked: &Asked) -> Markup {
    html! {
        form.filters method="get" action="/console/reports" {
            label {
                "Group by"
                select name="group_by" {
                    @for (value, label) in GROUPS {
                        option value=(value) selected[asked.group_by == value] { (label) }
                    }
                }
            }
            label { "From" input type="date" name="from" value=(asked.from); }
            label { "To (inclusive)" input type="date" name="to" value=(asked.to); }
            button type="submit" { "Show" }
        }
    }
}

fn table(console: &Console, asked: &Asked, summary: &Summary) -> Markup {
    let sum = |f: fn(&Row) -> Amount| {
        Amount(Money::from_cents(
            summary.rows.iter().map(|r| f(r).cents()).sum(),
        ))
    };
    let total = |f: fn(&Row) -> i64| summary.rows.iter().map(f).sum::<i64>();
    html! {
        @if summary.rows.is_empty() {
            p.hint { "Nothing in this range." }
        } @else {
            div.panel {
                table #summary {
                    thead {
                        tr {
                            th { (asked.group_label()) }
                            th.num { "Pings" } th.num { "Bid rate" } th.num { "Posts" }
                            th.num { "Sales" } th.num { "Revenue" } th.num { "Payout" }
                            th.num { "Margin" } th.num { "Returns" } th.num { "Net revenue" }
                            th.num { "Net payout" } th.num { "Net margin" } th { "Top declines" }
                        }
                    }
                    tbody {
                        @for r in &summary.rows {
                            tr data-group=(r.group_id) {
                                td {
                                    (r.group_name.as_deref().unwrap_or("(unnamed)"))
                                    br;
                                    span.id { (r.group_id) }
                                }
                                td.num { (r.pings) }
                                td.num title={ (r.pings_with_bids) " with bids" } {
                                    (format!("{:.1}%", r.bid_rate * 100.0))
                                }
                                td.num { (r.posts) }
                                td.num { (r.sales) }
                                td.num { (console.money(r.revenue)) }
                                td.num { (console.money(r.payout)) }
                                td.num { (console.money(r.margin)) }
                                td.num title={ (console.money(r.returned_revenue)) " refunded" } {
                                    (r.returns)
                                }
                                td.num { (console.money(r.net_revenue)) }
                                td.num { (console.money(r.net_payout)) }
                                td.num { (console.money(r.net_margin)) }
                                td { (top_declines(&r.declines)) }
                            }
                        }
                    }
                    tfoot {
                        tr {
                            th { "Total" }
                            td.num { (total(|r| r.pings)) }
                            td.num {}
                            td.num { (total(|r| r.posts)) }
                            td.num { (total(|r| r.sales)) }
                            td.num { (console.money(sum(|r| r.revenue))) }
                            td.num { (console.money(sum(|r| r.payout))) }
                            td.num { (console.money(sum(|r| r.margin))) }
                            td.num { (total(|r| r.returns)) }
                            td.num { (console.money(sum(|r| r.net_revenue))) }
                            td.num { (console.money(sum(|r| r.net_payout))) }
                            td.num { (console.money(sum(|r| r.net_margin))) }
                            td {}
                        }
                    }
                }
            }
        }
    }
}

/// The three most frequent decline reasons, with their counts.
fn top_declines(declines: &BTreeMap<String, i64>) -> Markup {
    let mut top: Vec<(&String, &i64)> = declines.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    html! {
        @for (reason, count) in top.into_iter().take(3) {
            span.decline { code { (reason) } " " (count) } " "
        }
    }
}

/// The CSV of the same report: the admin API's answer to `Accept: text/csv`, as it is, as a
/// download.
async fn reports_csv(
    console: Console,
    Query(query): Query<ReportQuery>,
) -> Result<Response, ConsoleError> {
    let asked = Asked::new(&console, &query);
    let raw = console
        .admin
        .get_raw(
            &format!("/v1/admin/reports/summary?{}", asked.query()),
            "text/csv",
        )
        .await?;
    let disposition = raw
        .content_disposition
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
        .unwrap_or_else(|| HeaderValue::from_static("attachment; filename=\"summary.csv\""));
    let content_type = HeaderValue::from_str(&raw.content_type)
        .unwrap_or_else(|_| HeaderValue::from_static("text/csv; charset=utf-8"));
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        raw.body,
    )
        .into_response())
}
