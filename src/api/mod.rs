//! HTTP only: handlers translate requests into calls to the core and the store, and answers
//! (or problem+json errors) back.

pub mod admin;
pub mod extract;
pub mod ops;
pub mod partner;
pub mod post;
pub mod problem;
pub mod rate_limit;

pub use problem::{ErrorCode, FieldError, Problem};
