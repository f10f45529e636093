//! The Gavel server under load, a child process.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A Gavel server run as a child process (so that its memory is its own).
pub(super) struct ServerProcess {
    child: tokio::process::Child,
    pub(super) base: String,
}

impl ServerProcess {
    /// Starts `binary`'s server (this executable's when `None`).
    pub(super) async fn start(
        url: &str,
        max_in_flight: usize,
        binary: Option<&std::path::Path>,
    ) -> Result<ServerProcess> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let exe: PathBuf = match binary {
            Some(binary) => binary.to_owned(),
            None => std::env::current_exe()?,
        };
        let mut command = tokio::process::Command::new(exe);
        command
            .arg("serve")
            .env("GAVEL_DATABASE_URL", url)
            .env("GAVEL_LISTEN", format!("127.0.0.1:{port}"))
            .env("GAVEL_LOG_LEVEL", "warn")
            .env("GAVEL_MAX_IN_FLIGHT_AUCTIONS", max_in_flight.to_string())
            // The harness's buyers run on this machine.
            .env("GAVEL_OUTBOUND_ALLOW", "127.0.0.1/32")
            .env_remove("GAVEL_CONFIG")
            .stdout(Stdio::null())
            .kill_on_drop(true);
        // The harness's leads are throwaway: without a configured key, one for this run.
        if std::env::var_os("GAVEL_PII_KEYS").is_none() {
            command.env("GAVEL_PII_KEYS", gavel::pii::PiiKeys::generate("bench"));
        }
        let child = command.spawn().context("cannot start the Gavel server")?;
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = client.get(format!("{base}/readyz")).send().await
                && response.status().is_success()
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("the Gavel server did not become ready");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(ServerProcess { child, base })
    }

    /// The server's peak resident memory (Linux: VmHWM).
    pub(super) fn peak_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }

    /// The server's CPU time so far (user and system, all threads; Linux: `/proc/<pid>/stat`).
    pub(super) fn cpu_time(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()?)).ok()?;
        // The fields after the command's name, which is in parentheses and may hold spaces:
        // utime and stime are the 14th and 15th fields, the 12th and 13th after it.
        let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
        let user: u64 = fields.next()?.parse().ok()?;
        let system: u64 = fields.next()?.parse().ok()?;
        // In clock ticks of USER_HZ, which Linux fixes at 100 a second for user space.
        Some(Duration::from_millis((user + system) * 10))
    }

    pub(super) async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
    }
}
