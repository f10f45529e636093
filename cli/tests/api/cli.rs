//! The `gavel` command line, run as a real process.

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::process::Command;

use crate::harness::database_url;

fn gavel() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gavel"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("GAVEL_")) {
        command.env_remove(key);
    }
    command
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn run(command: &mut Command) -> Output {
    let output = command.output().await.unwrap();
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn tenant_create_prints_the_id_and_an_admin_key_stored_only_hashed(
    pool_options: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool: PgPool = pool_options.connect_with(connect.clone()).await.unwrap();
    let out = run(gavel()
        .args([
            "tenant",
            "create",
            "--name",
            "Acme Exchange",
            "--timezone",
            "America/Chicago",
        ])
        .env("GAVEL_DATABASE_URL", database_url(&connect)))
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);

    let printed: serde_json::Value =
        serde_json::from_str(out.stdout.trim()).expect("one JSON object on stdout");
    let tenant_id: uuid::Uuid = printed["tenant_id"].as_str().unwrap().parse().unwrap();
    let admin_key = printed["admin_key"].as_str().unwrap();
    assert!(admin_key.len() >= 35, "a key of at least 128 random bits");

    let (name, timezone, currency): (String, String, String) =
        sqlx::query_as("SELECT name, timezone, currency FROM tenants WHERE id = $1")
            .bind(tenant_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (name.as_str(), timezone.as_str(), currency.as_str()),
        ("Acme Exchange", "America/Chicago", "USD")
    );

    // Only the SHA-256 of the key is stored, and it is there.
    let stored: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT key_hash FROM api_keys WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(stored, vec![gavel::keys::hash(admin_key).to_vec()]);
    let plaintext: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM api_keys WHERE position($1::bytea IN key_hash) > 0",
    )
    .bind(admin_key.as_bytes())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(plaintext, 0);
}

#[sqlx::test(migrator = "gavel::MIGRATOR")]
async fn tenant_create_with_an_unknown_timezone_fails_and_creates_nothing(
    pool_options: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool: PgPool = pool_options.connect_with(connect.clone()).await.unwrap();
    let out = run(gavel()
        .args([
            "tenant",
            "create",
            "--name",
            "Acme",
            "--timezone",
            "America/Gotham",
        ])
        .env("GAVEL_DATABASE_URL", database_url(&connect)))
    .await;
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("unknown timezone \"America/Gotham\""),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "printed a result: {}", out.stdout);
    let tenants: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
        .fetch_one(&pool)
        .await
        .unwrap();
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!((tenants, keys), (0, 0));
}

#[sqlx::test(migrations = false)]
async fn migrate_applies_the_migrations_and_exits(
    pool_options: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let out = run(gavel()
        .arg("migrate")
        .env("GAVEL_DATABASE_URL", database_url(&connect)))
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let pool: PgPool = pool_options.connect_with(connect).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(applied as usize, gavel::MIGRATOR.iter().count());
}

#[tokio::test]
async fn bad_command_lines_and_settings_exit_non_zero_with_a_clear_message() {
    let out = run(gavel().arg("auction-everything")).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("unrecognized subcommand 'auction-everything'"),
        "{}",
        out.stderr
    );

    // A rate of nothing would silently send a ping a second.
    let out = run(gavel().args(["bench", "--rate", "0"])).await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--rate"), "{}", out.stderr);

    let out = run(gavel().args(["serve", "--port", "80"])).await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--port"), "{}", out.stderr);

    let out = run(gavel().arg("serve").env("GAVEL_POOL_SIZE", "lots")).await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("pool_size"), "{}", out.stderr);

    let out = run(gavel().arg("serve").env("GAVEL_RTB_TIMEOUT_MS", "9000")).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("rtb_timeout_ms: must be between 1 and 2000"),
        "{}",
        out.stderr
    );

    let out = run(gavel().args(["--config", "/nonexistent/gavel.toml", "serve"])).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("/nonexistent/gavel.toml"),
        "{}",
        out.stderr
    );
}
