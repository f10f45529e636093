//! The console's sections, one module each; each adds its routes here.

mod auctions;
mod buyers;
mod contracts;
mod partners;
mod reports;
mod today;

use axum::Router;

use crate::app::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(today::routes())
        .merge(auctions::routes())
        .merge(contracts::routes())
        .merge(buyers::routes())
        .merge(partners::routes())
        .merge(reports::routes())
}
