//! Outbound HTTP to buyers: real-time bid requests during the ping, deliveries during the post.
//! Every call goes through the one shared `reqwest::Client` (pooled connections) and carries its
//! own timeout, so a slow or broken buyer costs only its own time.

pub mod delivery;
pub mod rtb;
