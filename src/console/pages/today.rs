//! Today: the tenant's traffic and money today and over the last 7 days (docs/console.md),
//! from one admin API request (`GET /v1/admin/reports/overview`): figures as cards, a chart
//! per hour of today and per day (SVG drawn here), the pings' latency over the last hour and
//! today's top decline reasons.

use axum::Router;
use axum::routing::get;
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use crate::app::AppState;
use crate::console::view::Section;
use crate::console::{Amount, Console, ConsoleError, Page};

pub fn routes() -> Router<AppState> {
    Router::new().route("/console/today", get(today))
}

/// What the page reads of the overview's answer.
#[derive(Deserialize)]
struct Overview {
    timezone: String,
    today: Figures,
    last_7_days: Figures,
    hours: Vec<Bucket>,
    days: Vec<Bucket>,
    latency_last_hour: Latency,
    top_declines: Vec<Decline>,
}

#[derive(Deserialize)]
struct Figures {
    pings: i64,
    pings_with_bids: i64,
    bid_rate: f64,
    posts: i64,
    sales: i64,
    revenue: Amount,
    payout: Amount,
    margin: Amount,
}

#[derive(Deserialize)]
struct Bucket {
    start: DateTime<Utc>,
    pings: i64,
    pings_with_bids: i64,
    posts: i64,
    sales: i64,
    revenue: Amount,
    payout: Amount,
}

#[derive(Deserialize)]
struct Latency {
    pings: i64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
}

#[derive(Deserialize)]
struct Decline {
    reason: String,
    count: i64,
}

async fn today(console: Console) -> Result<Page, ConsoleError> {
    let overview: Overview = console.admin.get("/v1/admin/reports/overview").await?;
    let body = html! {
        p.hint { "Times in " (overview.timezone) ". Test traffic is left out." }
        (cards(&console, &overview))
        div.grid2 {
            section.panel aria-labelledby="hours-title" {
                h2 #hours-title { "Today, per hour" }
                (chart(&console, &overview.hours, "%H", "Pings and sales per hour today"))
                (legend())
            }
            section.panel aria-labelledby="days-title" {
                h2 #days-title { "Last 7 days, per day" }
                (chart(&console, &overview.days, "%a %d", "Pings and sales per day, last 7 days"))
                (legend())
            }
        }
        div.grid2 {
            section.panel aria-labelledby="latency-title" {
                h2 #latency-title { "Ping latency, last hour" }
                (latency(&overview.latency_last_hour))
            }
            section.panel aria-labelledby="declines-title" {
                h2 #declines-title { "Top decline reasons today" }
                (declines(&overview.top_declines))
            }
        }
        details.panel {
            summary { "Today's hours as a table" }
            (table(&console, &overview.hours, "%H:%M", "Hour"))
        }
        details.panel {
            summary { "The last 7 days as a table" }
            (table(&console, &overview.days, "%a %Y-%m-%d", "Day"))
        }
    };
    Ok(Page::new(&console, Section::Today, "Today", body))
}

fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn percent(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

fn cards(console: &Console, o: &Overview) -> Markup {
    let (t, w) = (&o.today, &o.last_7_days);
    let rows: [(&str, &str, String, String); 7] = [
        ("pings", "Pings", count(t.pings), count(w.pings)),
        (
            "bid-rate",
            "Bid rate",
            percent(t.bid_rate),
            percent(w.bid_rate),
        ),
        ("posts", "Posts", count(t.posts), count(w.posts)),
        ("sales", "Sales", count(t.sales), count(w.sales)),
        (
            "revenue",
            "Revenue",
            console.money(t.revenue),
            console.money(w.revenue),
        ),
        (
            "payout",
            "Partner payout",
            console.money(t.payout),
            console.money(w.payout),
        ),
        (
            "margin",
            "Margin",
            console.money(t.margin),
            console.money(w.margin),
        ),
    ];
    html! {
        div.cards {
            @for (id, label, today, week) in rows {
                div.card #{ "card-" (id) } {
                    div.label { (label) " today" }
                    div.value data-figure=(id) { (today) }
                    div.sub { "Last 7 days: " span data-week=(id) { (week) } }
                }
            }
        }
        p.hint {
            (count(t.pings_with_bids)) " of today's pings had bids; "
            (count(w.pings_with_bids)) " over the last 7 days."
        }
    }
}

/// Pings per bucket as bars, sales over them (same scale), each bar titled with its figures.
fn chart(console: &Console, buckets: &[Bucket], label: &str, title: &str) -> Markup {
    const WIDTH: f64 = 600.0;
    const HEIGHT: f64 = 180.0;
    const BOTTOM: f64 = 20.0;
    const LEFT: f64 = 44.0;
    let max = buckets
        .iter()
        .map(|b| b.pings.max(b.sales))
        .max()
        .unwrap_or(0);
    let scale = if max > 0 {
        (HEIGHT - BOTTOM - 8.0) / max as f64
    } else {
        0.0
    };
    let n = buckets.len().max(1) as f64;
    let slot = (WIDTH - LEFT) / n;
    let base = HEIGHT - BOTTOM;
    // A label under every bar when they fit, else every third.
    let every = if n > 12.0 { 3 } else { 1 };
    let fmt = |v: f64| format!("{v:.1}");
    html! {
        div.chart {
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label=(title) {
                title { (title) }
                line.axis x1=(LEFT) y1=(fmt(base)) x2=(WIDTH) y2=(fmt(base)) {}
                text x="0" y="12" { (count(max)) }
                text x="0" y=(fmt(base)) { "0" }
                @for (i, b) in buckets.iter().enumerate() {
                    @let x = LEFT + i as f64 * slot;
                    @let h = b.pings as f64 * scale;
                    @let s = b.sales as f64 * scale;
                    @let local = b.start.with_timezone(&console.timezone);
                    g.bucket {
                        title {
                            (local.format(label)) ": " (count(b.pings)) " pings, "
                            (count(b.sales)) " sales, " (console.money(b.revenue))
                        }
                        rect.series-a x=(fmt(x + slot * 0.1)) y=(fmt(base - h))
                            width=(fmt(slot * 0.8)) height=(fmt(h)) {}
                        rect.series-b x=(fmt(x + slot * 0.3)) y=(fmt(base - s))
                            width=(fmt(slot * 0.4)) height=(fmt(s)) {}
                        @if i % every == 0 {
                            text x=(fmt(x + slot * 0.5)) y=(fmt(HEIGHT - 4.0)) text-anchor="middle" {
                                (local.format(label))
                            }
                        }
                    }
                }
            }
        }
    }
}

fn legend() -> Markup {
    html! {
        p.legend.hint {
            span.swatch.series-a aria-hidden="true" {} " pings "
            span.swatch.series-b aria-hidden="true" {} " sales (same scale)"
        }
    }
}

fn latency(l: &Latency) -> Markup {
    let ms = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), |v| format!("{v:.1} ms"));
    html! {
        div.cards {
            div.card #latency-p50 {
                div.label { "p50" }
                div.value { (ms(l.p50_ms)) }
            }
            div.card #latency-p99 {
                div.label { "p99" }
                div.value { (ms(l.p99_ms)) }
            }
            div.card #latency-pings {
                div.label { "Pings" }
                div.value { (count(l.pings)) }
            }
        }
        @if l.pings == 0 {
            p.hint { "No pings in the last hour." }
        }
    }
}

fn declines(list: &[Decline]) -> Markup {
    let max = list.iter().map(|d| d.count).max().unwrap_or(0);
    html! {
        @if list.is_empty() {
            p.hint { "No declines today." }
        } @else {
            table #top-declines {
                thead { tr { th { "Reason" } th.num { "Contracts declined" } th { span.sr-only { "Share" } } } }
                tbody {
                    @for d in list {
                        tr {
                            td { code { (d.reason) } " " span.muted { (words(&d.reason)) } }
                            td.num { (count(d.count)) }
                            td {
                                meter value=(d.count) min="0" max=(max.max(1))
                                    aria-label={ (d.reason) " count" } {}
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A decline reason in a few words.
fn words(reason: &str) -> &'static str {
    match reason {
        "filtered" => "a filter of the contract failed",
        "outbid" => "bid and lost",
        "below_floor" => "bid below the floor",
        "cap_reached" => "a cap was reached",
        "insufficient_funds" => "the buyer's funds ran short",
        "contract_paused" => "the contract is paused",
        "buyer_paused" => "the buyer is paused",
        "outside_schedule" => "outside the contract's schedule",
        "duplicate" => "the buyer had this lead",
        "rtb_no_bid" => "the buyer did not bid",
        "rtb_invalid" => "the buyer's bid could not be read",
        "no_price_for_sale_type" => "no price for the sale type",
        "rtb_timeout" => "the buyer's bid came too late",
        "rtb_error" => "the buyer's bid request failed",
        "rtb_limit" => "too many bid requests at once",
        "buyer_unavailable" => "the buyer is failing (breaker open)",
        _ => "",
    }
}

fn table(console: &Console, buckets: &[Bucket], label: &str, head: &str) -> Markup {
    html! {
        table {
            thead {
                tr {
                    th { (head) } th.num { "Pings" } th.num { "With bids" } th.num { "Posts" }
                    th.num { "Sales" } th.num { "Revenue" } th.num { "Payout" }
                }
            }
            tbody {
                @for b in buckets {
                    tr {
                        td { (b.start.with_timezone(&console.timezone).format(label)) }
                        td.num { (count(b.pings)) }
                        td.num { (count(b.pings_with_bids)) }
                        td.num { (count(b.posts)) }
                        td.num { (count(b.sales)) }
                        td.num { (console.money(b.revenue)) }
                        td.num { (console.money(b.payout)) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn counts_are_grouped() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(-1_234_567), "-1,234,567");
    }
}
