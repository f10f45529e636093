//! The `gavel` command line, run as a real process.

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::process::Command;

use crate::harness::database_url;

/// The `gavel` binary, without this process's `GAVEL_*` settings.
pub fn gavel() -> Command {
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

/// `gavel serve` on its own private PostgreSQL, run in a process group of its own (as a
/// terminal's shell runs it), and its log.
struct Serving {
    child: tokio::process::Child,
    logged: Vec<String>,
    rest: tokio::task::JoinHandle<Vec<String>>,
}

impl Serving {
    /// Starts it on the cluster in `data_dir` and waits until it logs that it serves.
    async fn start(data_dir: &std::path::Path) -> Serving {
        use tokio::io::AsyncBufReadExt;
        let mut child = gavel()
            .arg("serve")
            .env("GAVEL_DATA_DIR", data_dir)
            .env("GAVEL_LISTEN", "127.0.0.1:0")
            .process_group(0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let mut logged = Vec::new();
        let started = tokio::time::timeout(std::time::Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                let serving = line.contains("gavel serving");
                logged.push(line);
                if serving {
                    return;
                }
            }
        })
        .await;
        assert!(started.is_ok(), "never served: {logged:#?}");
        let rest = tokio::spawn(async move {
            let mut rest = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                rest.push(line);
            }
            rest
        });
        Serving {
            child,
            logged,
            rest,
        }
    }

    fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id().unwrap() as i32)
    }

    /// Waits for a successful exit; the whole log.
    async fn exit(mut self) -> Vec<String> {
        let status = tokio::time::timeout(std::time::Duration::from_secs(60), self.child.wait())
            .await
            .expect("gavel did not stop")
            .unwrap();
        self.logged.extend(self.rest.await.unwrap());
        assert!(status.success(), "{status}: {:#?}", self.logged);
        self.logged
    }
}

/// A normal stop says so and nothing alarming: no WARN or ERROR line, a last INFO `stopped`.
fn assert_quiet_stop(logged: &[String]) {
    assert!(
        !logged
            .iter()
            .any(|line| line.contains(" WARN ") || line.contains(" ERROR ")),
        "{logged:#?}"
    );
    let last = logged.last().unwrap();
    assert!(
        last.contains(" INFO ") && last.ends_with("stopped"),
        "{logged:#?}"
    );
}

#[tokio::test]
async fn sigterm_stops_the_server_quietly_and_says_stopped() {
    let dir = tempfile::Builder::new()
        .prefix("gavel-stop-")
        .tempdir_in("/tmp")
        .unwrap();
    let server = Serving::start(&dir.path().join("pg")).await;
    // The server runs without transparent huge pages (their faults stalled pings).
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    assert!(
        status.lines().any(|line| line == "THP_enabled:\t0"),
        "{status}"
    );
    nix::sys::signal::kill(server.pid(), nix::sys::signal::Signal::SIGTERM).unwrap();
    let logged = server.exit().await;
    assert_quiet_stop(&logged);
    // Without pii_keys, the private PostgreSQL's server keeps a generated key, and says so.
    let key_file = dir.path().join("pg").join("pii-keys");
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert!(gavel::pii::PiiKeys::parse(key.trim()).unwrap().is_some());
    assert!(
        logged
            .iter()
            .any(|line| line.contains("pii_keys is not set") && line.contains("pii-keys")),
        "{logged:#?}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "readable by its owner only");
}

#[tokio::test]
async fn ctrl_c_reaches_gavel_alone_which_stops_its_postgres_after_its_own_sessions() {
    use nix::sys::signal::{Signal, kill, killpg};
    use nix::unistd::{Pid, getpgid};
    let dir = tempfile::Builder::new()
        .prefix("gavel-ctrl-c-")
        .tempdir_in("/tmp")
        .unwrap();
    let data_dir = dir.path().join("pg");
    let server = Serving::start(&data_dir).await;
    let pid_file = std::fs::read_to_string(data_dir.join("postmaster.pid")).unwrap();
    let postmaster = Pid::from_raw(pid_file.lines().next().unwrap().trim().parse().unwrap());
    let group = getpgid(Some(server.pid())).unwrap();
    assert_ne!(
        getpgid(Some(postmaster)).unwrap(),
        group,
        "the private PostgreSQL is in Gavel's process group"
    );

    // What a terminal's Ctrl-C does: SIGINT to the foreground process group.
    killpg(group, Signal::SIGINT).unwrap();
    assert_quiet_stop(&server.exit().await);
    assert!(kill(postmaster, None).is_err(), "PostgreSQL still runs");
    let log = std::fs::read_to_string(data_dir.join("postgres.log")).unwrap();
    assert!(log.contains("database system is shut down"), "{log}");
    // Gavel ended its sessions before it stopped the server: none was cut.
    assert!(
        !log.contains("terminating connection due to administrator command"),
        "{log}"
    );
}

/// The names of `Settings`' fields, as serde reads them: every setting there is.
fn setting_names() -> &'static [&'static str] {
    struct FieldNames<'a>(&'a mut &'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for FieldNames<'_> {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: serde::de::Visitor<'de>>(
            self,
            _: V,
        ) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("only the field names are read"))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(serde::de::Error::custom("only the field names are read"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = <gavel::config::Settings as serde::Deserialize>::deserialize(FieldNames(&mut fields));
    fields
}

#[tokio::test]
async fn help_lists_every_setting_as_its_variable_with_its_real_default() {
    let names = setting_names();
    assert!(names.len() > 20, "{names:?}");
    let defaults = format!(
        "{:?}",
        gavel::config::Settings::load_from(None, []).unwrap()
    );
    for command in ["serve", "demo", "bench"] {
        let out = run(gavel().args([command, "--help"])).await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        for name in names {
            let variable = format!("GAVEL_{}", name.to_uppercase());
            let line = out
                .stdout
                .lines()
                .find(|line| line.split_whitespace().next() == Some(variable.as_str()))
                .unwrap_or_else(|| panic!("`gavel {command} --help` lacks {variable}"));
            // The default shown is the default: set to it, the settings are unchanged.
            let shown = line.split_once(" default ").unwrap().1.trim();
            let value = if shown == "(empty)" { "" } else { shown };
            let set = gavel::config::Settings::load_from(None, [(variable.clone(), value.into())])
                .unwrap_or_else(|error| panic!("{variable}={value}: {error}"));
            assert_eq!(
                format!("{set:?}"),
                defaults,
                "{variable}'s default is not {shown}"
            );
        }
    }
}
