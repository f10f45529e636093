//! Buyer integrations (docs/buyer-integrations.md): how each outbound call is made and how
//! its answer is read.

pub mod response;
pub mod xml;
