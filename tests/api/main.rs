//! Integration tests against a real PostgreSQL (one database per test) and real HTTP.

mod harness;

mod cli;
mod demo;
mod ops;
mod schema;
