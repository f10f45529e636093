//! The `gavel` command: serve, migrate, tenant create, demo.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use gavel::app::{self, AppState, Server};
use gavel::config::Settings;
use gavel::store;
use gavel::telemetry;
use gavel_cli::database::Database;
use gavel_cli::{bench, demo, pii_keys, settings_help};

/// Turns transparent huge pages off for this process and its children (Linux's
/// `PR_SET_THP_DISABLE`), before the runtime's threads start. mimalloc advises huge pages for
/// its segments, and a fault on a fresh 2 MB page stalled every ping in flight: at 500 pings/s
/// one to four seconds in five minutes had a p99 of 50–190 ms, fsync on or off; without huge
/// pages none had more than 17 ms (BENCHMARKS.md, "Durable performance", session 17).
fn without_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(error) = nix::sys::prctl::set_thp_disable(true) {
        eprintln!("gavel: cannot turn transparent huge pages off: {error}");
    }
}

// glibc's allocator showed 12 % of the server's CPU under load, with its arenas' lock
// contended between the runtime's threads; mimalloc keeps per-thread heaps.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "gavel",
    version,
    about = "Gavel: a multi-tenant ping/post lead auction server"
)]
struct Cli {
    /// A TOML file of settings, applied over the defaults (environment variables win over it).
    #[arg(long, global = true, env = "GAVEL_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (migrates the database first).
    #[command(after_help = settings_help::help())]
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Manage tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Run the server with a demo tenant seeded, and print commands to try it.
    #[command(after_help = settings_help::help())]
    Demo,
    /// The load harness: seed a benchmark tenant, run a server, drive pings and posts, compare
    /// with pgbench on the same PostgreSQL.
    #[command(after_help = settings_help::help())]
    Bench(bench::BenchOptions),
    /// Posted leads' PII at rest (docs/pii.md): make a key, seal stored leads under the
    /// active one.
    Pii {
        #[command(subcommand)]
        command: PiiCommand,
    },
}

#[derive(Subcommand)]
enum PiiCommand {
    /// Print a new random key as `pii_keys` lists it (`id:` and 64 hex digits).
    NewKey {
        /// The key's id, stored beside each row it seals (default: k and today's date).
        #[arg(long)]
        id: Option<String>,
    },
    /// Seal every stored lead not under the active key (the first of `pii_keys`) under it:
    /// rows sealed under an older key, and rows stored before PII was sealed. Prints the
    /// counts as JSON. Keep the older keys listed until it has run.
    Rotate,
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant; prints {"tenant_id", "admin_key"} (the key is shown this once).
    Create {
        #[arg(long)]
        name: String,
        /// IANA timezone in which cap periods and schedules roll, e.g. America/New_York.
        #[arg(long)]
        timezone: String,
    },
}

fn main() -> ExitCode {
    without_transparent_huge_pages();
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("gavel: {error}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&settings);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("gavel: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gavel: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> Result<()> {
    // The harness runs its own database and server.
    if let Command::Bench(options) = command {
        return bench::run(settings, options).await;
    }
    if let Command::Pii {
        command: PiiCommand::NewKey { id },
    } = command
    {
        let id = id.unwrap_or_else(gavel::pii::PiiKeys::dated_id);
        let key = gavel::pii::PiiKeys::generate(&id);
        gavel::pii::PiiKeys::parse(&key).map_err(|error| anyhow::anyhow!("--id: {error}"))?;
        println!("{key}");
        return Ok(());
    }
    // A server on a configured database must be given its keys: refused before it starts.
    if matches!(command, Command::Serve)
        && settings.database_url.is_some()
        && settings.pii_keys.is_none()
    {
        anyhow::bail!(gavel::pii::NO_KEYS);
    }
    let database = Database::open(&settings).await?;
    let serving = matches!(command, Command::Serve | Command::Demo);
    let result = run_with(command, settings, &database.url).await;
    database
        .close()
        .await
        .context("cannot stop the private PostgreSQL")?;
    if serving && result.is_ok() {
        tracing::info!("stopped");
    }
    result
}

async fn run_with(command: Command, mut settings: Settings, url: &str) -> Result<()> {
    // Without pii_keys, the demo and the private PostgreSQL keep a generated key.
    let private = settings.database_url.is_none();
    let pool = store::connect_and_migrate(url, &settings).await?;
    match command {
        Command::Migrate => {
            pool.close().await;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Tenant {
            command: TenantCommand::Create { name, timezone },
        } => {
            let tenant = store::tenants::create(&pool, &name, &timezone).await;
            pool.close().await;
            println!("{}", serde_json::to_string(&tenant?)?);
            Ok(())
        }
        Command::Serve => {
            pii_keys::fill_in(&mut settings, private)?;
            let stop = app::shutdown_signal();
            let listener = app::bind_listener(&mut settings).await?;
            let state = AppState::build(pool, settings).await?;
            let server = Server::new(listener, state.clone(), axum::Router::new());
            tracing::info!(address = %server.local_addr(), "gavel serving");
            serve(server, state, stop).await
        }
        Command::Bench(_)
        | Command::Pii {
            command: PiiCommand::NewKey { .. },
        } => unreachable!("handled before the database is opened"),
        Command::Pii {
            command: PiiCommand::Rotate,
        } => {
            pii_keys::fill_in(&mut settings, private)?;
            let keys = settings.pii_keys.as_ref().context(
                "pii_keys is not set: list the new key first, then the older ones (docs/pii.md)",
            )?;
            let rotated = store::pii::rotate(&pool, keys).await;
            pool.close().await;
            let rotated = rotated.context("cannot seal the stored leads")?;
            println!(
                "{}",
                serde_json::json!({ "key_id": keys.active_id(), "resealed": rotated.resealed,
                                    "sealed": rotated.sealed, "unreadable": rotated.unreadable })
            );
            Ok(())
        }
        Command::Demo => {
            pii_keys::fill_in(&mut settings, true)?;
            let stop = app::shutdown_signal();
            let listener = app::bind_listener(&mut settings).await?;
            demo::allow_buyer_endpoints(&mut settings, listener.local_addr()?);
            let state = AppState::build(pool.clone(), settings).await?;
            let server = Server::new(listener, state.clone(), demo::buyer_endpoints());
            let seeded = demo::seed(&pool, server.local_addr()).await?;
            println!("{}", demo::instructions(&seeded));
            serve(server, state, stop).await
        }
    }
}

/// Serves until `stop` (SIGTERM or SIGINT), then lets in-flight work finish and closes the pools (the
/// private PostgreSQL, if any, is stopped after this).
async fn serve(
    server: Server,
    state: AppState,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let served = server.run_until(stop).await;
    // Requests still in flight after the grace period keep their connections: not waited for.
    if tokio::time::timeout(CLOSE_WAIT, state.close())
        .await
        .is_err()
    {
        tracing::warn!("database connections still in use at exit");
    }
    served
}

const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
