//! Integration tests against a real PostgreSQL (one database per test) and real HTTP.

mod harness;

mod admin;
mod cli;
mod demo;
mod fixtures;
mod ops;
mod ping;
mod post;
mod schema;
