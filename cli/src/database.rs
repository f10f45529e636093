//! Where the database comes from: the configured URL, or else the private PostgreSQL.

use std::time::Duration;

use anyhow::{Context, Result};
use gavel::config::Settings;

use crate::local_pg::{self, LocalPgOptions, LocalPostgres};

/// Name of the database Gavel uses in its private cluster.
pub const LOCAL_DATABASE: &str = "gavel";

/// The database Gavel talks to: the configured URL, or a private cluster it runs itself.
pub struct Database {
    pub url: String,
    local: Option<LocalPostgres>,
}

impl Database {
    /// Uses `database_url` when set; otherwise starts (creating it on first use) the private
    /// cluster in `data_dir`, or attaches to it when another Gavel process already runs it.
    pub async fn open(settings: &Settings) -> Result<Self> {
        if let Some(url) = &settings.database_url {
            return Ok(Self {
                url: url.clone(),
                local: None,
            });
        }
        let data_dir = settings.data_dir.clone();
        let local = tokio::task::spawn_blocking(move || {
            LocalPostgres::start(&data_dir, &LocalPgOptions::default())
        })
        .await??;
        tracing::info!(
            data_dir = %local.data_dir().display(),
            port = local.port(),
            "private PostgreSQL running"
        );
        local_pg::ensure_database(&local.url("postgres"), LOCAL_DATABASE)
            .await
            .context("cannot create the gavel database in the private PostgreSQL")?;
        Ok(Self {
            url: local.url(LOCAL_DATABASE),
            local: Some(local),
        })
    }

    /// Stops the private cluster if this process started it, once the sessions left (the
    /// pools are closed first) have ended.
    pub async fn close(self) -> Result<()> {
        if let Some(local) = self.local {
            tokio::task::spawn_blocking(move || local.stop_when_idle(Duration::from_secs(5)))
                .await??;
        }
        Ok(())
    }
}
