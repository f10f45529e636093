//! Gavel: a multi-tenant ping/post lead auction server.

pub mod api;
pub mod app;
pub mod auction;
pub mod buyers;
pub mod clock;
pub mod config;
pub mod error;
pub mod evaluate;
pub mod exact_json;
pub mod keys;
pub mod meters;
pub mod money;
pub mod post;
pub mod store;
pub mod telemetry;

pub use error::Error;

/// The schema migrations, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();
