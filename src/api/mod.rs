//! HTTP only: handlers translate requests into calls to the core and the store, and answers
//! (or problem+json errors) back.

pub mod ops;
pub mod problem;

pub use problem::{ErrorCode, FieldError, Problem};
