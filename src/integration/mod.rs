//! Buyer integrations (docs/buyer-integrations.md): how an outbound call is made (`request`:
//! method, format, headers, a field map or a text template) for a buyer that does not speak
//! Gavel's own JSON.
//!
//! Text templates use minijinja: a well-kept, sandboxed Jinja2 engine (no file, network or
//! code access; fuel and recursion bounded), so a tenant's template cannot reach past the
//! values it is given.
//!
//! Everything here is pure: compiled once when the configuration loads, rendered per call.

pub mod fields;
pub mod request;
mod template;

pub use request::{
    Call, CallContext, CallNames, Named, RenderError, Rendered, RequestConfig,
    check_contract_requests,
};
