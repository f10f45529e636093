//! Today: the tenant's traffic and money today and over the last 7 days (docs/console.md).

use axum::Router;
use axum::routing::get;
use maud::html;

use crate::app::AppState;
use crate::console::view::Section;
use crate::console::{Console, Page};

pub fn routes() -> Router<AppState> {
    Router::new().route("/console/today", get(today))
}

async fn today(console: Console) -> Page {
    let body = html! { p { "Welcome." } };
    Page::new(&console, Section::Today, "Today", body)
}
