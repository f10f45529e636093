//! Gavel: a multi-tenant ping/post lead auction server.

/// An enum of stable snake_case codes, as stored and sent: `as_str`, `Display` and `FromStr`
/// (strum) and `Serialize` (serde) all give the same text.
macro_rules! text_codes {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$variant_meta:meta])* $variant:ident,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
        #[derive(strum::IntoStaticStr, strum::EnumString, strum::Display)]
        #[serde(rename_all = "snake_case")]
        #[strum(serialize_all = "snake_case")]
        pub enum $name {
            $($(#[$variant_meta])* $variant,)+
        }

        impl $name {
            /// The stable text.
            pub fn as_str(self) -> &'static str {
                self.into()
            }
        }
    };
}

pub mod api;
pub mod app;
pub mod auction;
pub mod buyers;
pub mod clock;
pub mod config;
pub mod console;
pub mod error;
pub mod evaluate;
pub mod exact_json;
pub mod integration;
pub mod keys;
pub mod meters;
pub mod money;
pub mod notices;
pub mod pending_pings;
pub mod pii;
pub mod post;
pub mod resources;
pub mod returns;
pub mod store;
pub mod suppression;
pub mod telemetry;
pub mod validation_mx;
pub mod verification;

pub use error::Error;

/// The schema migrations, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();
