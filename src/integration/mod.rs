//! Buyer integrations (docs/buyer-integrations.md): how an outbound call is made (`request`:
//! method, format, headers, a field map or a text template) and how its answer is read
//! (`response`: JSON pointers, XML element paths, regexes, status rules), for a buyer that does
//! not speak Gavel's own JSON.
//!
//! Text templates use minijinja: a well-kept, sandboxed Jinja2 engine (no file, network or
//! code access; fuel and recursion bounded), so a tenant's template cannot reach past the
//! values it is given. XML answers are read with roxmltree (a read-only tree in one pass,
//! no DTDs).
//!
//! Everything here is pure: compiled once when the configuration loads, used per call.

pub mod fields;
pub mod request;
pub mod response;
mod template;
pub mod transforms;
pub mod xml;

pub use request::{
    Call, CallContext, CallNames, Named, RenderError, Rendered, RequestConfig,
    check_contract_requests,
};
pub use template::{NOTICE_VARIABLES, UrlTemplate};
