//! An account's statement (docs/returns.md "Statements"): the opening balance, every entry of
//! the period with the running balance, the closing balance and the totals per kind, in the
//! tenant's timezone, as JSON or CSV (`Accept: text/csv`).

use std::collections::BTreeMap;
use std::str::FromStr;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{parse_id, query_error};
use crate::api::extract::AdminTenant;
use crate::api::{ErrorCode, Problem};
use crate::app::AppState;
use crate::auction::{CapPeriod, period_start};
use crate::money::Money;
use crate::store::admin::books::{Account, LedgerRow};
use crate::store::admin::statements::{self, Period};

/// A statement lists at most this many entries: a longer one asks for a shorter range.
pub const MAX_STATEMENT_ENTRIES: i64 = 100_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(partner_statement))
        .routes(routes!(buyer_statement))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatementQuery {
    /// Start: a date `YYYY-MM-DD` (its start in the tenant's timezone) or an RFC 3339 instant
    /// (inclusive), years 1 to 9999; default: the start of `to`'s month in the tenant's timezone
    /// (of the current month without `to`). At most `report_max_days` before `to` (in the
    /// tenant's calendar days when a bound is a date).
    from: Option<String>,
    /// End: a date `YYYY-MM-DD` (inclusive: up to the end of that day in the tenant's
    /// timezone) or an RFC 3339 instant (exclusive), years 1 to 9999; default: now.
    to: Option<String>,
}

/// One entry of a statement and the balance after it.
#[derive(Serialize, ToSchema)]
pub struct StatementEntry {
    id: Uuid,
    /// In the tenant's timezone.
    at: String,
    kind: String,
    amount: Money,
    balance: Money,
    sale_id: Option<Uuid>,
    return_id: Option<Uuid>,
    note: Option<String>,
}

/// An account's statement: `closing_balance = opening_balance + Σ totals`.
#[derive(Serialize, ToSchema)]
pub struct Statement {
    /// `buyer` or `partner`.
    account: String,
    id: Uuid,
    name: String,
    timezone: String,
    /// The period's start, in the tenant's timezone (inclusive).
    from: String,
    /// The period's end, in the tenant's timezone (exclusive).
    to: String,
    opening_balance: Money,
    closing_balance: Money,
    /// Every kind of entry of the account, zero included.
    totals: BTreeMap<String, Money>,
    /// Oldest first (by time, then id).
    entries: Vec<StatementEntry>,
}

/// The partner's statement: opening balance, every entry with the running balance, closing
/// balance, totals per kind. JSON, or CSV with `Accept: text/csv`.
#[utoipa::path(get, path = "/v1/admin/partners/{id}/statement", tag = "partners",
    params(("id" = Uuid, Path), StatementQuery),
    responses((status = 200, description = "The statement; CSV (`at,kind,amount,balance,sale_id,return_id,note`, \
        with `opening_balance`, `closing_balance` and `total_<kind>` rows) with `Accept: text/csv`",
        content((Statement = "application/json"), (String = "text/csv")))))]
async fn partner_statement(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
    Query(query): Query<StatementQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    statement(&state, tenant, Account::Partner, &id, &query, &headers).await
}

/// The buyer's statement: opening balance, every entry with the running balance, closing
/// balance, totals per kind. JSON, or CSV with `Accept: text/csv`.
#[utoipa::path(get, path = "/v1/admin/buyers/{id}/statement", tag = "buyers",
    params(("id" = Uuid, Path), StatementQuery),
    responses((status = 200, description = "The statement; CSV (`at,kind,amount,balance,sale_id,return_id,note`, \
        with `opening_balance`, `closing_balance` and `total_<kind>` rows) with `Accept: text/csv`",
        content((Statement = "application/json"), (String = "text/csv")))))]
async fn buyer_statement(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
    Query(query): Query<StatementQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    statement(&state, tenant, Account::Buyer, &id, &query, &headers).await
}

async fn statement(
    state: &AppState,
    tenant: Uuid,
    account: Account,
    id: &str,
    query: &StatementQuery,
    headers: &HeaderMap,
) -> Result<Response, Problem> {
    let account_id = parse_id(id)?;
    let (name, timezone) = statements::holder(&state.db, tenant, account, account_id)
        .await?
        .ok_or_else(Problem::not_found)?;
    // Checked when written; an SQL edit that broke it reads as UTC rather than 500.
    let tz = Tz::from_str(&timezone).unwrap_or(Tz::UTC);
    let now = state.clock.now();
    let from_bound = parse_bound("from", query.from.as_deref(), tz, false)?;
    let to_bound = parse_bound("to", query.to.as_deref(), tz, true)?;
    let to = to_bound.map_or(now, |b| b.at);
    // Without `from`: the start of the month of `to`'s last instant (`to` is exclusive).
    let from = from_bound.map_or_else(
        || period_start(CapPeriod::Month, to - Duration::microseconds(1), tz),
        |b| b.at,
    );
    if to <= from {
        return Err(query_error("to", "must be after from"));
    }
    let max_days = state.settings.report_max_days;
    // A range of dates is counted in the tenant's calendar days: a month across a change of
    // DST is its days, not its days ± 1 h.
    let dated = from_bound.is_some_and(|b| b.date) || to_bound.is_some_and(|b| b.date);
    let length = if dated {
        to.with_timezone(&tz).naive_local() - from.with_timezone(&tz).naive_local()
    } else {
        to - from
    };
    if length > Duration::days(i64::from(max_days)) {
        return Err(query_error(
            "from",
            &format!("must be at most {max_days} days before to (setting report_max_days)"),
        ));
    }
    // A statement reads the period's entries and those since `from` (the opening balance): as
    // costly as a report, so it waits for the tenant's running report, then for a process
    // slot, for a third of the request's time at most.
    let within = state.settings.request_timeout() / 3;
    let Some(_slot) = state.report_slots.take(tenant, within).await else {
        return Err(Problem::new(ErrorCode::RateLimited)
            .detail("too many reports and statements are running: retry when they are done")
            .retry_after(1));
    };
    let period = statements::period(
        &state.db,
        tenant,
        account,
        account_id,
        from,
        to,
        MAX_STATEMENT_ENTRIES,
    )
    .await
    .map_err(too_costly)?
    .ok_or_else(Problem::not_found)?;
    let (opening_cents, entries) = match period {
        Period::Entries {
            opening_cents,
            entries,
        } => (opening_cents, entries),
        Period::TooMany(count) => {
            return Err(query_error(
                "from",
                &format!(
                    "gives a range of {count} entries, more than a statement lists \
                     ({MAX_STATEMENT_ENTRIES}): ask for a shorter range"
                ),
            ));
        }
    };
    let statement = Statement::new(
        account,
        account_id,
        name,
        tz,
        (from, to),
        opening_cents,
        entries,
    );
    if wants_csv(headers) {
        return Ok(statement.csv(&format!(
            "statement-{}-{account_id}-{}.csv",
            account.as_str(),
            from.with_timezone(&tz).format("%Y-%m-%d")
        )));
    }
    Ok(Json(statement).into_response())
}

/// A bound of the period: its instant, and whether it was given as a date.
#[derive(Clone, Copy, Debug)]
pub(super) struct Bound {
    pub(super) at: DateTime<Utc>,
    pub(super) date: bool,
}

/// The years a bound may name: PostgreSQL, and the formats, hold them all.
const YEARS: std::ops::RangeInclusive<i32> = 1..=9999;

/// `from` or `to`: a date (its start, or for `to` the start of the next day, in `tz`) or an
/// RFC 3339 instant, years 1 to 9999.
pub(super) fn parse_bound(
    name: &str,
    text: Option<&str>,
    tz: Tz,
    end: bool,
) -> Result<Option<Bound>, Problem> {
    let Some(text) = text else {
        return Ok(None);
    };
    let out_of_range = || query_error(name, "must be in the years 1 to 9999");
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        if !YEARS.contains(&date.year()) {
            return Err(out_of_range());
        }
        let day = if end { date.succ_opt() } else { Some(date) };
        // Noon exists on every day in every timezone: the day's start is the start of the
        // day containing it (a midnight skipped by DST starts at the first instant after).
        let noon = day.and_then(|d| {
            tz.from_local_datetime(&d.and_time(NaiveTime::from_hms_opt(12, 0, 0)?))
                .earliest()
        });
        return match noon {
            Some(noon) => Ok(Some(Bound {
                at: period_start(CapPeriod::Day, noon.with_timezone(&Utc), tz),
                date: true,
            })),
            None => Err(out_of_range()),
        };
    }
    let at = DateTime::parse_from_rfc3339(text)
        .map_err(|_| query_error(name, "must be a date (YYYY-MM-DD) or an RFC 3339 time"))?;
    if !YEARS.contains(&at.year()) || !YEARS.contains(&at.with_timezone(&Utc).year()) {
        return Err(out_of_range());
    }
    Ok(Some(Bound {
        at: at.with_timezone(&Utc),
        date: false,
    }))
}

/// A statement the database could not answer in time (cancelled by the statement timeout,
/// most likely) is the usual 503, with a detail that says what to do.
fn too_costly(error: sqlx::Error) -> Problem {
    let problem = Problem::from(error);
    if problem.code != ErrorCode::Unavailable {
        return problem;
    }
    problem.detail(
        "the database could not answer the statement in time (a query running longer than the \
         statement timeout, statement_timeout_ms, is cancelled): retry, or ask for a shorter range",
    )
}

/// Whether the client prefers CSV to JSON (RFC 9110 `Accept`): each type's weight is the `q`
/// of the most specific range that matches it (`text/csv`, then `text/*`, then `*/*`); CSV
/// only with a weight above 0 and above JSON's (a tie, or no `Accept`, is JSON).
pub(super) fn wants_csv(headers: &HeaderMap) -> bool {
    let ranges: Vec<(String, String, f32)> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(media_range)
        .collect();
    let weight = |kind: &str, subtype: &str| -> f32 {
        ranges
            .iter()
            .filter_map(|(k, s, q)| {
                let specificity = match (k.as_str(), s.as_str()) {
                    (k, s) if k == kind && s == subtype => 3,
                    (k, "*") if k == kind => 2,
                    ("*", "*") => 1,
                    _ => return None,
                };
                Some((specificity, *q))
            })
            // The most specific range decides; among equals, the highest weight.
            .max_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)))
            .map_or(0.0, |(_, q)| q)
    };
    let csv = weight("text", "csv");
    csv > 0.0 && csv > weight("application", "json")
}

/// One media range of an `Accept` header: its type, subtype (lowercase) and weight (`q`,
/// default 1; a malformed `q` is 0, a range is not guessed).
fn media_range(text: &str) -> Option<(String, String, f32)> {
    let mut parts = text.split(';');
    let (kind, subtype) = parts.next()?.trim().split_once('/')?;
    let mut q = 1.0;
    for param in parts {
        if let Some((key, value)) = param.split_once('=')
            && key.trim().eq_ignore_ascii_case("q")
        {
            q = value
                .trim()
                .parse::<f32>()
                .ok()
                .filter(|q| (0.0..=1.0).contains(q))
                .unwrap_or(0.0);
        }
    }
    Some((
        kind.trim().to_ascii_lowercase(),
        subtype.trim().to_ascii_lowercase(),
        q,
    ))
}

fn local(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz)
        .to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

impl Statement {
    fn new(
        account: Account,
        id: Uuid,
        name: String,
        tz: Tz,
        (from, to): (DateTime<Utc>, DateTime<Utc>),
        opening_cents: i64,
        rows: Vec<LedgerRow>,
    ) -> Statement {
        let mut totals: BTreeMap<String, i64> = account
            .kinds()
            .iter()
            .map(|kind| ((*kind).to_owned(), 0))
            .collect();
        let mut balance = opening_cents;
        let entries = rows
            .into_iter()
            .map(|row| {
                balance += row.amount_cents;
                *totals.entry(row.kind.clone()).or_insert(0) += row.amount_cents;
                StatementEntry {
                    id: row.id,
                    at: local(row.created_at, tz),
                    kind: row.kind,
                    amount: Money::from_cents(row.amount_cents),
                    balance: Money::from_cents(balance),
                    sale_id: row.sale_id,
                    return_id: row.return_id,
                    note: row.note,
                }
            })
            .collect();
        Statement {
            account: account.as_str().to_owned(),
            id,
            name,
            timezone: tz.name().to_owned(),
            from: local(from, tz),
            to: local(to, tz),
            opening_balance: Money::from_cents(opening_cents),
            closing_balance: Money::from_cents(balance),
            totals: totals
                .into_iter()
                .map(|(kind, cents)| (kind, Money::from_cents(cents)))
                .collect(),
            entries,
        }
    }

    /// The statement as CSV: the header, `opening_balance`, the entries, `closing_balance`,
    /// then `total_<kind>` per kind.
    fn csv(&self, filename: &str) -> Response {
        let mut rows: Vec<[String; 7]> = Vec::with_capacity(self.entries.len() + 8);
        let text = |v: Option<&Uuid>| v.map(Uuid::to_string).unwrap_or_default();
        rows.push(
            [
                "at",
                "kind",
                "amount",
                "balance",
                "sale_id",
                "return_id",
                "note",
            ]
            .map(str::to_owned),
        );
        rows.push(summary_row(
            &self.from,
            "opening_balance",
            "",
            &self.opening_balance.to_string(),
        ));
        for e in &self.entries {
            rows.push([
                e.at.clone(),
                e.kind.clone(),
                e.amount.to_string(),
                e.balance.to_string(),
                text(e.sale_id.as_ref()),
                text(e.return_id.as_ref()),
                e.note.as_deref().map(no_formula).unwrap_or_default(),
            ]);
        }
        rows.push(summary_row(
            &self.to,
            "closing_balance",
            "",
            &self.closing_balance.to_string(),
        ));
        for (kind, total) in &self.totals {
            rows.push(summary_row(
                "",
                &format!("total_{kind}"),
                &total.to_string(),
                "",
            ));
        }
        csv_response(&rows, filename)
    }
}

/// CSV rows as a download: a UTF-8 byte order mark first, `text/csv`, an attachment named
/// `filename`. The caller defuses formulas in free text (`no_formula`).
pub(super) fn csv_response<R: AsRef<[String]>>(rows: &[R], filename: &str) -> Response {
    let mut out = csv::Writer::from_writer(Vec::new());
    for row in rows {
        // Writing to a Vec fails only on memory exhaustion.
        let _ = out.write_record(row.as_ref());
    }
    // A UTF-8 byte order mark first: Excel reads the file as UTF-8 (not the locale's code
    // page) only with it; CSV readers skip it.
    let mut body = "\u{feff}".as_bytes().to_vec();
    body.extend(out.into_inner().unwrap_or_default());
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}

fn summary_row(at: &str, kind: &str, amount: &str, balance: &str) -> [String; 7] {
    [at, kind, amount, balance, "", "", ""].map(str::to_owned)
}

/// A text a spreadsheet would read as a formula (`=`, `+`, `-`, `@`, or a tab or carriage
/// return first) is prefixed with `'`.
pub(super) fn no_formula(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_formula_is_defused_and_a_text_kept() {
        assert_eq!(no_formula("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(no_formula("-2+3"), "'-2+3");
        assert_eq!(no_formula("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(no_formula("+1"), "'+1");
        assert_eq!(no_formula("\t=1+1"), "'\t=1+1");
        assert_eq!(no_formula("\r=1+1"), "'\r=1+1");
        assert_eq!(no_formula("wire 2291"), "wire 2291");
        assert_eq!(no_formula("wire\t2291 = paid"), "wire\t2291 = paid");
    }

    #[test]
    fn a_date_is_a_day_in_the_tenant_timezone() {
        let tz = Tz::America__New_York;
        let from = parse_bound("from", Some("2026-11-01"), tz, false).unwrap();
        let to = parse_bound("to", Some("2026-11-30"), tz, true).unwrap();
        assert_eq!(from.unwrap().at.to_rfc3339(), "2026-11-01T04:00:00+00:00");
        assert_eq!(to.unwrap().at.to_rfc3339(), "2026-12-01T05:00:00+00:00");
        assert!(from.unwrap().date && to.unwrap().date);
        let instant = parse_bound("to", Some("2026-11-03T10:00:00Z"), tz, true).unwrap();
        assert_eq!(
            instant.unwrap().at.to_rfc3339(),
            "2026-11-03T10:00:00+00:00"
        );
        assert!(!instant.unwrap().date);
        assert!(parse_bound("from", Some("2026-13-01"), tz, false).is_err());
    }

    #[test]
    fn a_skipped_midnight_starts_the_day_at_the_gap() {
        // America/Havana skips from 00:00 to 01:00 on 2026-03-08.
        let tz = Tz::America__Havana;
        let from = parse_bound("from", Some("2026-03-08"), tz, false).unwrap();
        assert_eq!(local(from.unwrap().at, tz), "2026-03-08T01:00:00-04:00");
    }

    #[test]
    fn a_bound_is_in_the_years_1_to_9999() {
        let tz = Tz::America__New_York;
        for text in [
            "0000-12-31",
            "10000-01-01",
            "+10000-01-01",
            "-0001-01-01",
            "0000-12-31T23:00:00Z",
            "10000-01-01T00:00:00Z",
            "0001-01-01T00:30:00+01:00",
            "9999-12-31T23:30:00-01:00",
        ] {
            let problem = parse_bound("from", Some(text), tz, false).unwrap_err();
            assert_eq!(problem.code, ErrorCode::InvalidField, "{text}");
        }
        for text in ["0001-01-01", "9999-12-31", "9999-12-31T23:59:59Z"] {
            assert!(parse_bound("to", Some(text), tz, true).is_ok(), "{text}");
            assert!(parse_bound("from", Some(text), tz, false).is_ok(), "{text}");
        }
    }

    fn accept(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn csv_is_chosen_by_its_weight_against_json() {
        for (values, csv) in [
            (&[][..], false),
            (&["text/csv"][..], true),
            (&["TEXT/CSV; charset=utf-8"][..], true),
            (&["text/csv;q=0"][..], false),
            (&["text/csv; q=0.0, */*"][..], false),
            (&["*/*"][..], false),
            (&["text/*"][..], true),
            (&["application/json, text/csv"][..], false),
            (&["application/json;q=0.5, text/csv"][..], true),
            (&["text/csv;q=0.4, application/json;q=0.5"][..], false),
            (&["application/json;q=0", "text/csv;q=0.1"][..], true),
            (&["text/*;q=0.9, text/csv;q=0"][..], false),
            (&["text/csv;q=oops"][..], false),
            (&["application/xml"][..], false),
        ] {
            assert_eq!(wants_csv(&accept(values)), csv, "{values:?}");
        }
    }
}
