//! A private PostgreSQL cluster that Gavel creates and runs itself when no database URL is
//! configured: `gavel serve`, `gavel demo` and the test suite all use it.
//!
//! The cluster lives in a data directory (created by the system's `initdb` on first use and
//! reused afterwards). It listens on no TCP address at all, only on a Unix socket in a
//! directory that only its owner can enter (the data directory itself, mode 0700): its
//! `pg_hba.conf` trusts local connections, so the directory's permissions are what keep other
//! accounts of the machine out (with TCP, any local user could connect as the superuser).
//! The "port" still names the socket file (`.s.PGSQL.<port>`), chosen free at each start. When
//! Gavel runs as root, `initdb` and `postgres` run as the `postgres` user (they refuse root).
//! The server is a direct child of a thread that lives as long as the process, with a
//! parent-death signal, so it never outlives Gavel even on a crash; [`LocalPostgres::stop`]
//! shuts it down cleanly. It runs in a process group of its own, so that a terminal's Ctrl-C
//! reaches only Gavel, which drains its work before it stops the server.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, Uid, User};

const INSTALL_HINT: &str = "install the PostgreSQL server (Debian/Ubuntu: `apt-get install postgresql`) \
     so that `initdb` and `postgres` are on PATH, or set GAVEL_DATABASE_URL to an existing server";

/// How the private cluster is tuned.
#[derive(Debug, Clone)]
pub struct LocalPgOptions {
    /// Trade durability for speed (fsync off): for throwaway test clusters only.
    pub ephemeral: bool,
    pub max_connections: u32,
    /// The number of the socket file (`.s.PGSQL.<port>`) instead of 5432.
    pub port: Option<u16>,
    /// Further settings (`name=value`), e.g. `shared_buffers=1GB`.
    pub settings: Vec<String>,
}

impl Default for LocalPgOptions {
    fn default() -> Self {
        Self {
            ephemeral: false,
            max_connections: 100,
            port: None,
            settings: Vec::new(),
        }
    }
}

/// A running private cluster. Dropping it without [`LocalPostgres::stop`] leaves the server to
/// the parent-death signal at process exit.
#[derive(Debug)]
pub struct LocalPostgres {
    data_dir: PathBuf,
    port: u16,
    pid: Pid,
    exited: mpsc::Receiver<()>,
    /// False when another process started the server and this one only uses it.
    owned: bool,
}

/// The system user that owns the cluster when Gavel runs as root.
struct RunAs {
    uid: u32,
    gid: u32,
}

impl LocalPostgres {
    /// Creates the cluster under `data_dir` if needed, starts it and waits until it accepts
    /// connections. Blocking: call it before the async runtime or in `spawn_blocking`.
    pub fn start(data_dir: &Path, options: &LocalPgOptions) -> Result<Self> {
        let initdb = find_binary("initdb")?;
        let postgres = find_binary("postgres")?;
        let run_as = run_as()?;

        let mut data_dir = prepare_dir(data_dir, run_as.as_ref())?;
        if let Some(user) = &run_as
            && !is_reachable(&data_dir, user)?
        {
            // A checkout under a root-only folder (such as /root): the postgres user cannot
            // traverse to it, so the cluster lives in a shared place named after it instead.
            let fallback = reachable_home_for(&data_dir);
            tracing::warn!(
                wanted = %data_dir.display(),
                using = %fallback.display(),
                "the postgres user cannot reach the data directory; using another one"
            );
            data_dir = prepare_dir(&fallback, run_as.as_ref())?;
            if !is_reachable(&data_dir, user)? {
                bail!(
                    "the postgres user cannot reach {}; set GAVEL_DATA_DIR to a directory it can reach",
                    data_dir.display()
                );
            }
        }

        if !data_dir.join("PG_VERSION").exists() {
            init_cluster(&initdb, &data_dir, run_as.as_ref())?;
        }
        if let Some(running) = Self::attach(&data_dir) {
            return Ok(running);
        }

        // The port only names the socket file, in a directory of this cluster's own.
        let port = options.port.unwrap_or(DEFAULT_PORT);
        Self::launch(&postgres, &data_dir, port, options, run_as.as_ref())
    }

    fn launch(
        postgres: &Path,
        data_dir: &Path,
        port: u16,
        options: &LocalPgOptions,
        run_as: Option<&RunAs>,
    ) -> Result<Self> {
        let log_path = data_dir.join("postgres.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);

        write_access_rules(data_dir, run_as)?;
        let socket_dir = socket_dir_for(data_dir, run_as)?;
        let mut command = Command::new(postgres);
        command
            .arg("-D")
            .arg(data_dir)
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses="])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", socket_dir.display()))
            .args(["-c", "unix_socket_permissions=0700"])
            .args([
                "-c",
                &format!("max_connections={}", options.max_connections),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if options.ephemeral {
            for setting in [
                "fsync=off",
                "synchronous_commit=off",
                "full_page_writes=off",
            ] {
                command.args(["-c", setting]);
            }
        }
        for setting in &options.settings {
            command.args(["-c", setting]);
        }
        if let Some(user) = run_as {
            command.uid(user.uid).gid(user.gid);
        }
        // A process group of its own: a terminal's Ctrl-C goes to Gavel alone, which stops
        // the server itself once its in-flight work is done ([`LocalPostgres::stop`]).
        command.process_group(0);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGINT).map_err(std::io::Error::from)
            });
        }

        let (pid, exited) = spawn_on_keeper_thread(command)
            .with_context(|| format!("cannot start {}", postgres.display()))?;
        let server = Self {
            data_dir: data_dir.to_owned(),
            port,
            pid,
            exited,
            owned: true,
        };

        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if server.exited.try_recv().is_ok() {
                bail!(
                    "the private PostgreSQL in {} stopped at start-up:\n{}",
                    data_dir.display(),
                    read_log_from(&log_path, log_start)
                );
            }
            if is_ready(data_dir, port) {
                return Ok(server);
            }
            if Instant::now() > deadline {
                let _ = server.signal(Signal::SIGQUIT);
                bail!(
                    "the private PostgreSQL in {} did not start within 60 s",
                    data_dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The cluster when another process (an earlier `gavel serve`, say) already runs it, so that
    /// `gavel tenant create` works beside a running server.
    fn attach(data_dir: &Path) -> Option<Self> {
        let pid_file = fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
        let lines: Vec<&str> = pid_file.lines().map(str::trim).collect();
        let pid = Pid::from_raw(lines.first()?.parse().ok()?);
        let port: u16 = lines.get(3)?.parse().ok()?;
        kill(pid, None).ok()?;
        if !is_ready(data_dir, port) {
            return None;
        }
        let (_, exited) = mpsc::channel();
        Some(Self {
            data_dir: data_dir.to_owned(),
            port,
            pid,
            exited,
            owned: false,
        })
    }

    /// A superuser URL for `database` on this cluster: its Unix socket, in the form both sqlx
    /// and libpq (pgbench) read (`host` names the socket's directory).
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@localhost:{}/{database}?host={}",
            self.port,
            socket_dir_path(&self.data_dir).display()
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Fast shutdown (open sessions are cut, committed work is safe), waiting for the exit.
    /// Does nothing to a cluster another process started.
    pub fn stop(self) -> Result<()> {
        if !self.owned {
            return Ok(());
        }
        self.signal(Signal::SIGINT)?;
        self.exited
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| anyhow!("postgres did not stop within 60 s"))
    }

    /// Smart shutdown: the server refuses new sessions and exits once the open ones have
    /// ended (a session whose client has left finishes its statement first), and after
    /// `patience` falls back to [`LocalPostgres::stop`]. For Gavel's own stop, after it has
    /// closed its pools: no session is cut. Does nothing to a cluster another process started.
    pub fn stop_when_idle(self, patience: Duration) -> Result<()> {
        if !self.owned {
            return Ok(());
        }
        self.signal(Signal::SIGTERM)?;
        if self.exited.recv_timeout(patience).is_ok() {
            return Ok(());
        }
        self.stop()
    }

    fn signal(&self, signal: Signal) -> Result<()> {
        match kill(self.pid, signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(error) => Err(error).context("cannot signal postgres"),
        }
    }
}

/// Creates `database` on the cluster at `admin_url` (a URL to its `postgres` database) if it
/// does not exist yet.
pub async fn ensure_database(admin_url: &str, database: &str) -> Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(database)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        let create = format!("CREATE DATABASE \"{}\"", database.replace('"', "\"\""));
        sqlx::query(sqlx::AssertSqlSafe(create))
            .execute(&mut conn)
            .await?;
    }
    conn.close().await?;
    Ok(())
}

/// Runs the server from a thread that lives until the process exits: the parent-death signal
/// fires when the *thread* that forked the child ends, not the process.
fn spawn_on_keeper_thread(mut command: Command) -> Result<(Pid, mpsc::Receiver<()>)> {
    let (spawned_tx, spawned_rx) = mpsc::channel::<std::io::Result<u32>>();
    let (exited_tx, exited_rx) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("gavel-postgres".into())
        .spawn(move || {
            let mut child: Child = match command.spawn() {
                Ok(child) => child,
                Err(error) => {
                    let _ = spawned_tx.send(Err(error));
                    return;
                }
            };
            let _ = spawned_tx.send(Ok(child.id()));
            let _ = child.wait();
            let _ = exited_tx.send(());
            // Stay alive: if this thread ended while a restarted server it forked was running,
            // that server would get the parent-death signal.
            loop {
                std::thread::park();
            }
        })?;
    let pid = spawned_rx
        .recv()
        .map_err(|_| anyhow!("the postgres keeper thread died"))??;
    Ok((Pid::from_raw(pid as i32), exited_rx))
}

fn init_cluster(initdb: &Path, data_dir: &Path, run_as: Option<&RunAs>) -> Result<()> {
    let mut command = Command::new(initdb);
    command
        .arg("-D")
        .arg(data_dir)
        .args([
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "-N",
        ])
        .stdin(Stdio::null());
    if let Some(user) = run_as {
        command.uid(user.uid).gid(user.gid);
    }
    let output = command
        .output()
        .with_context(|| format!("cannot run {}", initdb.display()))?;
    if !output.status.success() {
        bail!(
            "initdb failed for {}:\n{}{}",
            data_dir.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// A PostgreSQL program (`initdb`, `postgres`, `psql`…) on PATH or in Debian's own place.
pub fn find_binary(name: &str) -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .collect()
        })
        .unwrap_or_default();
    // Debian and Ubuntu keep the server binaries off PATH.
    if let Ok(versions) = fs::read_dir("/usr/lib/postgresql") {
        let mut dirs: Vec<PathBuf> = versions.flatten().map(|e| e.path().join("bin")).collect();
        dirs.sort();
        candidates.extend(dirs.into_iter().rev().map(|dir| dir.join(name)));
    }
    candidates
        .into_iter()
        .find(|path| {
            path.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
        .ok_or_else(|| anyhow!("`{name}` was not found: {INSTALL_HINT}"))
}

fn run_as() -> Result<Option<RunAs>> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    let user = User::from_name("postgres")?.ok_or_else(|| {
        anyhow!("Gavel runs as root and PostgreSQL refuses to; there is no `postgres` user to run it as: {INSTALL_HINT}")
    })?;
    Ok(Some(RunAs {
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    }))
}

fn chown_tree(dir: &Path, user: &RunAs) -> Result<()> {
    std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid))
        .with_context(|| format!("cannot hand {} to the postgres user", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// Creates `dir`, resolves it, and hands it to the postgres user when running as root.
fn prepare_dir(dir: &Path, run_as: Option<&RunAs>) -> Result<PathBuf> {
    fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    if let Some(user) = run_as {
        chown_tree(&dir, user)?;
    }
    Ok(dir)
}

/// Whether the postgres user can traverse every parent of `dir` and write in it.
fn is_reachable(dir: &Path, user: &RunAs) -> Result<bool> {
    let status = Command::new("test")
        .arg("-w")
        .arg(dir)
        .uid(user.uid)
        .gid(user.gid)
        .status()
        .context("cannot run `test` as the postgres user")?;
    Ok(status.success())
}

/// A stable place for the cluster of an unreachable `dir`: one per original path, so that
/// every checkout keeps its own cluster across runs (and reboots: not under /tmp).
fn reachable_home_for(dir: &Path) -> PathBuf {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(dir.as_os_str().as_encoded_bytes());
    PathBuf::from("/var/tmp").join(format!("gavel-pg-{}", &hex::encode(digest)[..16]))
}

/// The socket file's number when none is asked for: each cluster has a socket directory of
/// its own, so no two clusters can collide on it.
const DEFAULT_PORT: u16 = 5432;

/// The longest socket path the kernel takes (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Where the cluster's socket lives: its data directory (only its owner may enter it), or,
/// when that path is too long for a socket, a private directory under /tmp named after it.
fn socket_dir_path(data_dir: &Path) -> PathBuf {
    // `/.s.PGSQL.65535`: the socket's own name at its longest.
    if data_dir.as_os_str().len() + 16 <= MAX_SOCKET_PATH {
        return data_dir.to_owned();
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
    PathBuf::from("/tmp").join(format!("gavel-pg-socket-{}", &hex::encode(digest)[..16]))
}

/// The socket directory, made (or checked) private to the cluster's owner.
fn socket_dir_for(data_dir: &Path, run_as: Option<&RunAs>) -> Result<PathBuf> {
    let dir = socket_dir_path(data_dir);
    if dir == data_dir {
        return Ok(dir);
    }
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        // Only a directory this call made is handed over: chown follows symbolic links, and
        // the name is predictable, so anyone could have planted one there beforehand.
        Ok(()) => {
            if let Some(user) = run_as {
                std::os::unix::fs::lchown(&dir, Some(user.uid), Some(user.gid))?;
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(error) => {
            return Err(error).with_context(|| format!("cannot create {}", dir.display()));
        }
    }
    // A directory (or link) someone else made in /tmp must not be trusted with the socket.
    let metadata = fs::symlink_metadata(&dir)?;
    let owner = run_as.map_or_else(|| Uid::effective().as_raw(), |user| user.uid);
    if !metadata.is_dir() || metadata.uid() != owner || metadata.mode() & 0o077 != 0 {
        bail!(
            "{} (the private PostgreSQL's socket directory) is not a private directory of the cluster's owner; remove it or set GAVEL_DATA_DIR to a shorter path",
            dir.display()
        );
    }
    Ok(dir)
}

/// Only local (Unix socket) connections, trusted: the socket's directory admits only the
/// cluster's owner (and root). Rewritten at every start, so clusters made by earlier releases,
/// whose rules trusted every TCP connection from 127.0.0.1, are closed too.
fn write_access_rules(data_dir: &Path, run_as: Option<&RunAs>) -> Result<()> {
    let path = data_dir.join("pg_hba.conf");
    fs::write(
        &path,
        "# Written by Gavel at every start: local connections only, through a socket in a\n\
         # directory that only the cluster's owner can enter. No TCP rule: the server listens\n\
         # on no TCP address.\n\
         local all all trust\n",
    )
    .with_context(|| format!("cannot write {}", path.display()))?;
    if let Some(user) = run_as {
        std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid))?;
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// The postmaster writes its state on the 8th line of `postmaster.pid`: `ready` once it
/// accepts connections (after crash recovery, if any).
fn is_ready(data_dir: &Path, port: u16) -> bool {
    let Ok(pid_file) = fs::read_to_string(data_dir.join("postmaster.pid")) else {
        return false;
    };
    let lines: Vec<&str> = pid_file.lines().map(str::trim).collect();
    lines.get(3) == Some(&port.to_string().as_str()) && lines.get(7) == Some(&"ready")
}

fn read_log_from(path: &Path, offset: u64) -> String {
    let text = fs::read(path).unwrap_or_default();
    let start = (offset as usize).min(text.len());
    String::from_utf8_lossy(&text[start..]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_directory_planted_beforehand_is_refused_and_left_alone() {
        let base = tempfile::tempdir().unwrap();
        // Too long for a socket in the data directory itself: the socket goes under /tmp.
        let data_dir = base.path().join("d".repeat(100));
        let planned = socket_dir_path(&data_dir);
        assert_ne!(planned, data_dir);
        // Another account plants a link there, to a directory of its choosing.
        let target = tempfile::tempdir().unwrap();
        let _ = fs::remove_file(&planned);
        std::os::unix::fs::symlink(target.path(), &planned).unwrap();
        let before = fs::metadata(target.path()).unwrap();

        let refused = socket_dir_for(&data_dir, run_as().unwrap().as_ref());
        fs::remove_file(&planned).unwrap();
        assert!(refused.is_err(), "a planted link was trusted");
        let after = fs::metadata(target.path()).unwrap();
        assert_eq!(
            (after.uid(), after.mode()),
            (before.uid(), before.mode()),
            "the link's target was handed over"
        );

        // Made by Gavel itself, it is private to the cluster's owner.
        let dir = socket_dir_for(&data_dir, run_as().unwrap().as_ref()).unwrap();
        let made = fs::symlink_metadata(&dir).unwrap();
        assert!(made.is_dir() && made.mode() & 0o077 == 0);
        fs::remove_dir(&dir).unwrap();
    }
}
