//! The console's layout and the small parts every page uses. maud escapes every value it
//! splices, so nothing a buyer, a partner or a lead sent can become markup.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::Console;
use super::admin::{Amount, ApiProblem};

/// A section of the console: its place in the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Today,
    Auctions,
    Contracts,
    Buyers,
    Partners,
    Reports,
}

const SECTIONS: [(Section, &str, &str); 6] = [
    (Section::Today, "Today", "/console/today"),
    (Section::Auctions, "Auctions", "/console/auctions"),
    (Section::Contracts, "Contracts", "/console/contracts"),
    (Section::Buyers, "Buyers", "/console/buyers"),
    (Section::Partners, "Partners", "/console/partners"),
    (Section::Reports, "Reports", "/console/reports"),
];

/// A signed-in page: the layout around `body`, with the session's tenant, the navigation, the
/// sign-out form and the previous action's message.
pub struct Page {
    pub console: Console,
    pub section: Section,
    pub title: String,
    pub body: Markup,
}

impl Page {
    pub fn new(
        console: &Console,
        section: Section,
        title: impl Into<String>,
        body: Markup,
    ) -> Self {
        Page {
            console: console.clone(),
            section,
            title: title.into(),
            body,
        }
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let console = &self.console;
        let markup = html! {
            (DOCTYPE)
            html lang="en" {
                (head(&self.title))
                body {
                    a.skip href="#main" { "Skip to content" }
                    header.top {
                        a.brand href="/console/today" { "Gavel" }
                        span.tenant title="Tenant" { (console.session.tenant_name) }
                        nav aria-label="Sections" {
                            ul {
                                @for (section, label, href) in SECTIONS {
                                    li {
                                        @if section == self.section {
                                            a href=(href) aria-current="page" { (label) }
                                        } @else {
                                            a href=(href) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                        form.sign-out method="post" action="/console/sign-out" {
                            (console.csrf_field())
                            button type="submit" { "Sign out" }
                        }
                    }
                    main #main {
                        @if let Some(message) = &console.flash {
                            p.flash role="status" { (message) }
                        }
                        h1 { (self.title) }
                        (self.body)
                    }
                }
            }
        };
        let mut response = markup.into_response();
        if let Some(clear) = console.clear_flash()
            && let Ok(value) = clear.parse()
        {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        response
    }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            // htmx must not add an inline <style> (the CSP allows none).
            meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false}"#;
            title { (title) " · Gavel" }
            link rel="stylesheet" href="/console/static/console.css";
            script src="/console/static/htmx.min.js" defer {}
        }
    }
}

/// The sign-in page (no session yet).
pub fn sign_in_page(token: &str, next: &str, error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Sign in"))
            body.sign-in {
                main #main {
                    h1 { "Gavel console" }
                    form method="post" action="/console/sign-in" {
                        @if let Some(error) = error {
                            p.error role="alert" { (error) }
                        }
                        input type="hidden" name="csrf" value=(token);
                        input type="hidden" name="next" value=(next);
                        label for="key" { "Admin key" }
                        input #key type="password" name="key" autocomplete="current-password"
                            required autofocus placeholder="ak_…";
                        button type="submit" { "Sign in" }
                    }
                    p.hint { "Sign in with your tenant's admin key (the one the admin API takes)." }
                }
            }
        }
    }
}

/// A page for an error (no navigation: it may have no session).
pub fn error_page(title: &str, detail: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.error-page {
                main #main {
                    h1 { (title) }
                    p { (detail) }
                    p { a href="/console/today" { "Back to the console" } }
                }
            }
        }
    }
}

/// An admin API's refusal in words: its detail, and each field's pointer and code.
pub fn problem_text(problem: &ApiProblem) -> String {
    let mut text = problem
        .detail
        .clone()
        .unwrap_or_else(|| problem.title.clone());
    for error in &problem.errors {
        text.push_str(&format!(" [{}: {}]", error.pointer, error.code));
    }
    text
}

/// An amount in the tenant's currency: `$1,234.50` for USD, `1,234.50 EUR` otherwise.
pub fn money(amount: Amount, currency: &str) -> String {
    let text = amount.to_string();
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.as_str()),
    };
    let (whole, cents) = digits.split_once('.').unwrap_or((digits, "00"));
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if currency == "USD" {
        format!("{sign}${grouped}.{cents}")
    } else {
        format!("{sign}{grouped}.{cents} {currency}")
    }
}

impl Console {
    /// An amount in the tenant's currency.
    pub fn money(&self, amount: Amount) -> String {
        money(amount, &self.session.currency)
    }

    /// A time in the tenant's timezone, to the second, with the zone's abbreviation; the
    /// exact instant (UTC) in the element's `datetime`.
    pub fn time(&self, at: DateTime<Utc>) -> Markup {
        let local = at.with_timezone(&self.timezone);
        html! {
            time datetime=(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)) {
                (local.format("%Y-%m-%d %H:%M:%S %Z"))
            }
        }
    }
}

/// A status as a small label; `kind` picks its colour (`good`, `bad`, `warn`, `muted`).
pub fn badge(text: &str, kind: &str) -> Markup {
    html! { span class={ "badge " (kind) } { (text) } }
}

/// Used against a limit, as a bar with its numbers (no inline style: the CSP allows none).
pub fn bar(label: &str, used: i64, limit: i64, text: &str) -> Markup {
    html! {
        span.bar {
            meter value=(used) min="0" max=(limit.max(1)) high=(limit.max(1) * 9 / 10)
                aria-label=(label) {}
            span.bar-text { (text) }
        }
    }
}

/// A button that POSTs a one-field-less action with the session's CSRF token.
pub fn action_button(console: &Console, action: &str, label: &str, class: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (console.csrf_field())
            button type="submit" class=(class) { (label) }
        }
    }
}

/// Percent-encodes text for a URL's query or a cookie.
pub fn url_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

pub fn url_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Text known to be safe markup (an SVG built by the console).
pub fn trusted(markup: String) -> Markup {
    PreEscaped(markup)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Money;

    #[test]
    fn money_is_grouped_and_signed() {
        let usd = |cents| money(Amount(Money::from_cents(cents)), "USD");
        assert_eq!(usd(0), "$0.00");
        assert_eq!(usd(123_456_789), "$1,234,567.89");
        assert_eq!(usd(-100_050), "-$1,000.50");
        assert_eq!(
            money(Amount(Money::from_cents(99_999)), "EUR"),
            "999.99 EUR"
        );
    }

    #[test]
    fn url_text_round_trips() {
        let text = "Paused «Solar CA» & more/ 100%";
        assert_eq!(url_decode(&url_encode(text)), text);
    }
}
