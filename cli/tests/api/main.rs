//! Integration tests against a real PostgreSQL (one database per test) and real HTTP.

mod harness;

mod admin;
mod bench;
mod breaker;
mod buyer_caps;
mod cascade;
mod cli;
mod deadline;
mod decimals;
mod demo;
mod durability;
mod failures;
mod fair;
mod fixtures;
mod forms;
mod fuzz;
mod group;
mod hygiene;
mod idempotency;
mod metrics;
mod notices;
mod ops;
mod outbound;
mod partner_ledger;
mod ping;
mod post;
mod responses;
mod routing;
mod schema;
mod secrets;
mod settle;
mod snapshots;
mod statements;
mod templates;
mod trial;
