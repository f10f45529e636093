//! The test harness: a private PostgreSQL for the whole test binary when `DATABASE_URL` is
//! unset (so `cargo test` works on a fresh machine), and `spawn_app` to run Gavel on port 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;

use gavel::app::{AppState, Server};
use gavel::config::Settings;
use gavel_cli::local_pg::{LocalPgOptions, LocalPostgres};
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use tokio::sync::oneshot;

static TEST_CLUSTER: Mutex<Option<(LocalPostgres, PathBuf)>> = Mutex::new(None);

/// Before `main`: `#[sqlx::test]` reads `DATABASE_URL` to create one database per test.
#[ctor::ctor]
unsafe fn start_test_postgres() {
    if std::env::var_os("DATABASE_URL").is_some() {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("gavel-test-pg-")
        .tempdir_in("/tmp")
        .expect("cannot create a temporary directory")
        .keep();
    let options = LocalPgOptions {
        ephemeral: true,
        max_connections: 300,
        port: None,
        settings: Vec::new(),
    };
    let cluster = LocalPostgres::start(&dir, &options).unwrap_or_else(|error| {
        eprintln!("cannot start the test PostgreSQL: {error:#}");
        std::process::exit(1)
    });
    // SAFETY: before main, no other thread reads the environment.
    unsafe { std::env::set_var("DATABASE_URL", cluster.url("postgres")) };
    *TEST_CLUSTER.lock().unwrap() = Some((cluster, dir));
}

#[ctor::dtor]
unsafe fn stop_test_postgres() {
    if let Some((cluster, dir)) = TEST_CLUSTER.lock().ok().and_then(|mut c| c.take()) {
        let _ = cluster.stop();
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The key the tests seal posted leads' PII with (generated once per test process, as the
/// tests' settings have none configured).
pub fn test_pii_keys() -> gavel::pii::PiiKeys {
    static KEYS: std::sync::LazyLock<gavel::pii::PiiKeys> = std::sync::LazyLock::new(|| {
        gavel::pii::PiiKeys::parse(&gavel::pii::PiiKeys::generate("test"))
            .unwrap()
            .unwrap()
    });
    KEYS.clone()
}

/// Settings for a test server: defaults, port 0, no environment; the test buyers on 127.0.0.1
/// allowed by the outbound address policy; a generated key for PII at rest.
pub fn test_settings() -> Settings {
    let mut settings = Settings::load_from(None, Vec::new()).expect("default settings load");
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.shutdown_grace_seconds = 5;
    settings.outbound_allow = vec!["127.0.0.1/32".to_owned()];
    settings.pii_keys = Some(test_pii_keys());
    // Tests read a ping's records right after its answer: every ping waits for its record
    // here, whatever the load of the machine running the tests (durability.rs tests the bound).
    settings.ping_record_max_wait_ms = 0;
    settings
}

/// A URL for the database behind `options` (a `#[sqlx::test]` database), for child processes.
pub fn database_url(options: &PgConnectOptions) -> String {
    let url = format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("postgres")
    );
    match options.get_socket() {
        Some(dir) => format!("{url}?host={}", dir.display()),
        None => url,
    }
}

pub struct TestApp {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Sends the shutdown signal (as SIGTERM would) and waits for the server to finish.
    pub async fn shut_down(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.server.take().unwrap().await?
    }

    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Runs Gavel on 127.0.0.1:0 against `pool`, with `extra` routes merged in.
pub async fn spawn_app_with(
    pool: PgPool,
    settings: Settings,
    extra: axum::Router<AppState>,
) -> TestApp {
    spawn_app_with_clock(
        pool,
        settings,
        extra,
        std::sync::Arc::new(gavel::clock::SystemClock),
    )
    .await
}

/// Runs Gavel with its clock under the test's control.
pub async fn spawn_app_with_clock(
    pool: PgPool,
    mut settings: Settings,
    extra: axum::Router<AppState>,
    clock: std::sync::Arc<dyn gavel::clock::Clock>,
) -> TestApp {
    let listener = gavel::app::bind_listener(&mut settings).await.unwrap();
    let state = AppState::build_with_clock(pool, settings, clock)
        .await
        .unwrap();
    let server = Server::new(listener, state, extra);
    let address = server.local_addr();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(server.run_until(async move {
        let _ = rx.await;
    }));
    TestApp {
        address,
        client: reqwest::Client::new(),
        shutdown: Some(tx),
        server: Some(server),
    }
}

pub async fn spawn_app(pool: PgPool) -> TestApp {
    spawn_app_with(pool, test_settings(), axum::Router::new()).await
}

/// The standard output of a child process that must have succeeded (else its outputs, shown).
pub fn successful_stdout(output: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
