//! The `gavel` command's own parts, kept out of the server library: the demo, the load
//! harness, and the private PostgreSQL Gavel runs when no database URL is configured.

pub mod bench;
pub mod database;
pub mod demo;
pub mod local_pg;
pub mod pii_keys;
pub mod settings_help;
