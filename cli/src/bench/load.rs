//! Driving the load: pings and posts, in closed or open loop, and their tally.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use super::BenchOptions;

#[derive(Default)]
pub(super) struct Load {
    pub(super) elapsed: Duration,
    /// The posting phase's own time, in `--posts-only` mode.
    pub(super) post_elapsed: Option<Duration>,
    pub(super) pings: u64,
    pub(super) pings_with_bids: u64,
    pub(super) ping_micros: Vec<u64>,
    /// Each answered ping's second of the run (by its planned send time) and latency.
    pub(super) ping_seconds: Vec<(u64, u64)>,
    /// When the measured pings started (wall clock), to line the run up with other logs.
    pub(super) started_at: Option<std::time::SystemTime>,
    /// Pings slower than [`SLOW_PING`]: their planned send time since the start and their
    /// latency, both in microseconds.
    pub(super) slow_pings: Vec<(u64, u64)>,
    /// The server's own count of the measured pings slower than each of its histogram's
    /// bounds from 10 ms (its handler's time, from `/metrics`): a stall inside the server
    /// shows here, one in the harness or between the two does not.
    pub(super) server_pings_over: std::collections::BTreeMap<u32, u64>,
    pub(super) posts: u64,
    pub(super) posts_sold: u64,
    pub(super) post_micros: Vec<u64>,
    /// Pings with bids: their ids and latencies.
    pub(super) pings_with_bids_timed: Vec<(Uuid, u64)>,
    pub(super) errors: std::collections::BTreeMap<u16, u64>,
    pub(super) transport_errors: u64,
}

/// One ping, and its post for a share of those with bids.
struct Outcome {
    /// When the ping was due to leave.
    planned: Instant,
    ping: Result<(u16, u64, bool), ()>,
    /// The id of a ping with bids.
    ping_id: Option<Uuid>,
    post: Option<Result<(u16, u64, bool), ()>>,
}

async fn one_lead(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    post_fraction: f64,
    planned: Instant,
) -> Outcome {
    let (ping, ping_id) = send_ping(client, base, key, planned).await;
    let post = match &ping_id {
        Some(ping_id) if rand::random_bool(post_fraction.clamp(0.0, 1.0)) => {
            Some(send_post(client, base, key, ping_id).await)
        }
        _ => None,
    };
    Outcome {
        planned,
        ping,
        ping_id: ping_id.and_then(|id| id.as_str()?.parse().ok()),
        post,
    }
}

/// A ping: its status, latency (from `planned`) and whether it got bids, and its id if so.
async fn send_ping(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    planned: Instant,
) -> (Result<(u16, u64, bool), ()>, Option<Value>) {
    let sent = client
        .post(format!("{base}/v1/ping"))
        .bearer_auth(key)
        // A new consumer each time (its email's hash, as a seller sends it): the buyers' and the
        // offer's dedup are looked up for every ping and never match.
        .json(&json!({
            "lead": { "state": "TX", "zip": "75001", "age": 42, "homeowner": true, "credit": "good" },
            "dedup": { "email_sha256": hex::encode(gavel::keys::hash(&format!("bench{}@example.com", rand::random::<u64>()))) }
        }))
        .send()
        .await;
    let Ok(response) = sent else {
        return (Err(()), None);
    };
    let status = response.status().as_u16();
    let mut body: Value = response.json().await.unwrap_or(Value::Null);
    let micros = planned.elapsed().as_micros() as u64;
    let bids = status == 200 && body["status"] == "bids";
    let ping_id = bids.then(|| body["ping_id"].take());
    (Ok((status, micros, bids)), ping_id)
}

/// The post of a ping with bids, for a new consumer: its status, latency and whether it sold.
async fn send_post(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    ping_id: &Value,
) -> Result<(u16, u64, bool), ()> {
    let started = Instant::now();
    let n: u64 = rand::random();
    let response = client
        .post(format!("{base}/v1/post"))
        .bearer_auth(key)
        .json(&json!({
            "ping_id": ping_id,
            "lead": { "state": "TX", "zip": "75001", "age": 42, "homeowner": true, "credit": "good",
                      "first_name": "Ada", "email": format!("bench{n}@example.com"),
                      "phone": format!("214{:07}", n % 10_000_000) },
            "consent": { "text": "I agree" }
        }))
        .send()
        .await
        .map_err(|_| ())?;
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    Ok((
        status,
        started.elapsed().as_micros() as u64,
        answer["status"] == "sold",
    ))
}

/// `--posts-only`: pings for `duration` (recorded as pings), then their posts, `concurrency`
/// at a time, until they are all posted or `duration` has passed again.
async fn drive_posts_only(
    db: &PgPool,
    client: &reqwest::Client,
    base: &str,
    key: &str,
    options: &BenchOptions,
) -> Result<Load> {
    let clients = options.concurrency.max(1);
    let measured = Duration::from_secs(options.duration);
    let pinging_started = Instant::now();
    let mut load = Load {
        started_at: Some(std::time::SystemTime::now()),
        ..Load::default()
    };
    let pinging_until = pinging_started + measured;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (client, base, key) = (client.clone(), base.to_owned(), key.to_owned());
        workers.spawn(async move {
            let mut pinged = Vec::new();
            while Instant::now() < pinging_until {
                let planned = Instant::now();
                let (ping, ping_id) = send_ping(&client, &base, &key, planned).await;
                pinged.push((planned, ping, ping_id));
            }
            pinged
        });
    }
    let mut ping_ids = Vec::new();
    while let Some(pinged) = workers.join_next().await {
        for (planned, ping, ping_id) in pinged? {
            load.add(
                Outcome {
                    planned,
                    ping,
                    ping_id: None,
                    post: None,
                },
                pinging_started,
            );
            ping_ids.extend(ping_id);
        }
    }
    load.elapsed = measured;
    // The posts' tables were written by the warm-up alone; the pings' grew a hundredfold.
    analyze(db).await?;

    let queue = std::sync::Arc::new(std::sync::Mutex::new(ping_ids));
    let started = Instant::now();
    let posting_until = started + measured;
    let mut posters = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (client, base, key, queue) = (
            client.clone(),
            base.to_owned(),
            key.to_owned(),
            queue.clone(),
        );
        posters.spawn(async move {
            let mut posted = Vec::new();
            while Instant::now() < posting_until {
                let next = queue.lock().expect("the queue's lock").pop();
                let Some(ping_id) = next else { break };
                posted.push(send_post(&client, &base, &key, &ping_id).await);
            }
            posted
        });
    }
    while let Some(posted) = posters.join_next().await {
        for post in posted? {
            load.add_post(post);
        }
    }
    load.post_elapsed = Some(started.elapsed());
    Ok(load)
}

impl Load {
    /// Tallies one lead of a run that started at `started`.
    fn add(&mut self, outcome: Outcome, started: Instant) {
        self.pings += 1;
        match outcome.ping {
            Ok((status, micros, bids)) => {
                if status == 200 {
                    self.ping_micros.push(micros);
                    let since_start = outcome.planned.saturating_duration_since(started);
                    self.ping_seconds.push((since_start.as_secs(), micros));
                    if micros > SLOW_PING.as_micros() as u64 {
                        self.slow_pings
                            .push((since_start.as_micros() as u64, micros));
                    }
                    self.pings_with_bids += u64::from(bids);
                    self.pings_with_bids_timed
                        .extend(outcome.ping_id.map(|ping_id| (ping_id, micros)));
                } else {
                    *self.errors.entry(status).or_default() += 1;
                }
            }
            Err(()) => self.transport_errors += 1,
        }
        if let Some(post) = outcome.post {
            self.add_post(post);
        }
    }

    fn add_post(&mut self, post: Result<(u16, u64, bool), ()>) {
        self.posts += 1;
        match post {
            Ok((status, micros, sold)) => {
                if status == 200 {
                    self.post_micros.push(micros);
                    self.posts_sold += u64::from(sold);
                } else {
                    *self.errors.entry(status).or_default() += 1;
                }
            }
            Err(()) => self.transport_errors += 1,
        }
    }
}

/// The server's ping-duration histogram: each bucket's upper bound (text, in seconds) and
/// cumulative count. `None` when `/metrics` cannot be read.
async fn server_ping_buckets(client: &reqwest::Client, base: &str) -> Option<Vec<(String, u64)>> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let buckets = text
        .lines()
        .filter_map(|line| line.strip_prefix("gavel_ping_duration_seconds_bucket{le=\""))
        .filter_map(|rest| {
            let (bound, count) = rest.split_once("\"} ")?;
            Some((bound.to_owned(), count.trim().parse().ok()?))
        })
        .collect();
    Some(buckets)
}

/// Per bound from 10 ms, in whole milliseconds: the pings counted between two reads of the
/// histogram that took longer.
fn slower_than(
    before: &[(String, u64)],
    after: &[(String, u64)],
) -> std::collections::BTreeMap<u32, u64> {
    let count = |buckets: &[(String, u64)], bound: &str| {
        buckets
            .iter()
            .find(|(b, _)| b == bound)
            .map_or(0, |(_, count)| *count)
    };
    let total = |buckets: &[(String, u64)]| count(buckets, "+Inf");
    let measured = total(after).saturating_sub(total(before));
    after
        .iter()
        .filter_map(|(bound, _)| {
            let ms = bound.parse::<f64>().ok()? * 1000.0;
            (ms >= 10.0 && ms.is_finite()).then_some((bound, ms))
        })
        .map(|(bound, ms)| {
            let within = count(after, bound).saturating_sub(count(before, bound));
            (ms.round() as u32, measured.saturating_sub(within))
        })
        .collect()
}

/// Statistics of the tables as they are now, as autovacuum keeps them in a database in use
/// (within a minute, and at every tenth more rows). A harness's database is seconds old: the
/// plans its sessions cached in the warm-up, on tables PostgreSQL then believed empty, would
/// otherwise serve the whole run (a post's look-up of its ping scanned the tenant's pings by
/// the campaign's index: 18,000 pages a post by the end of the pings of `--posts-only`).
async fn analyze(db: &PgPool) -> Result<()> {
    sqlx::query("ANALYZE").execute(db).await?;
    Ok(())
}

/// Drives the load: one second of warm-up, then `duration` seconds measured.
pub(super) async fn drive(
    db: &PgPool,
    base: &str,
    key: &str,
    options: &BenchOptions,
) -> Result<Load> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .build()?;
    if options.posts_only {
        let warm_up = Instant::now() + Duration::from_secs(1);
        while Instant::now() < warm_up {
            one_lead(&client, base, key, 1.0, Instant::now()).await;
        }
        analyze(db).await?;
        return drive_posts_only(db, &client, base, key, options).await;
    }
    // The warm-up is the measured load itself, unrecorded: the server's connection pools
    // (to PostgreSQL, from the harness) reach the size this load needs, so the first measured
    // second does not pay for opening connections that steady state keeps open.
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<Outcome>();
    drop(receiver);
    drive_for(&client, base, key, options, Duration::from_secs(1), sender).await?;
    analyze(db).await?;

    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<Outcome>();
    let measured = Duration::from_secs(options.duration);
    let server_before = server_ping_buckets(&client, base).await;
    let (started, started_at) = (Instant::now(), std::time::SystemTime::now());
    drive_for(&client, base, key, options, measured, sender).await?;
    let server_after = server_ping_buckets(&client, base).await;
    let mut load = Load {
        started_at: Some(started_at),
        server_pings_over: server_before
            .zip(server_after)
            .map(|(before, after)| slower_than(&before, &after))
            .unwrap_or_default(),
        ..Load::default()
    };
    while let Some(outcome) = receiver.recv().await {
        load.add(outcome, started);
    }
    load.elapsed = started.elapsed().max(measured);
    Ok(load)
}

/// A ping slower than this is listed on its own in the report (with its time), so that a
/// stall can be lined up with the database's or the machine's logs.
const SLOW_PING: Duration = Duration::from_millis(20);

/// How long before its planned time an open-loop request's task starts (and then waits).
const SEND_AHEAD: Duration = Duration::from_micros(100);

/// Sends the load for `length` (open or closed loop, per the options); every lead's outcome
/// goes to `sender`. Returns when the last request is answered.
async fn drive_for(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    options: &BenchOptions,
    length: Duration,
    sender: tokio::sync::mpsc::UnboundedSender<Outcome>,
) -> Result<()> {
    let end = Instant::now() + length;
    match options.rate {
        Some(rate) => {
            // Open loop: a request every 1/rate seconds, each on its own task. The schedule
            // is kept by an OS thread, not by tokio's timer, whose millisecond ticks would send
            // each request up to 1 ms late and count that lateness as the server's. The task
            // starts a little ahead of its time and waits for it awake: waking a sleeping
            // thread takes tens of microseconds here, which the server would be charged.
            let period = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
            let (runtime, client, base, key) = (
                tokio::runtime::Handle::current(),
                client.clone(),
                base.to_owned(),
                key.to_owned(),
            );
            let fraction = options.post_fraction;
            let tasks = tokio::task::spawn_blocking(move || {
                // Without this, Linux lets a sleeping thread wake up to 50 µs late.
                let _ = nix::sys::prctl::set_timerslack(1);
                let mut tasks = Vec::new();
                // Not when requests leave closer together than a few times that: the waits
                // would hold the harness's workers.
                let ahead = if period > 5 * SEND_AHEAD {
                    SEND_AHEAD
                } else {
                    Duration::ZERO
                };
                let mut next = Instant::now();
                while next < end {
                    let wake = next.checked_sub(ahead).unwrap_or(next);
                    let now = Instant::now();
                    if wake > now {
                        std::thread::sleep(wake - now);
                    }
                    let (client, base, key, sender) =
                        (client.clone(), base.clone(), key.clone(), sender.clone());
                    let planned = next;
                    tasks.push(runtime.spawn(async move {
                        while Instant::now() < planned {
                            std::hint::spin_loop();
                        }
                        let _ =
                            sender.send(one_lead(&client, &base, &key, fraction, planned).await);
                    }));
                    next += period;
                }
                tasks
            })
            .await?;
            for task in tasks {
                task.await?;
            }
        }
        None => {
            let mut workers = Vec::new();
            for _ in 0..options.concurrency.max(1) {
                let (client, base, key, sender) = (
                    client.clone(),
                    base.to_owned(),
                    key.to_owned(),
                    sender.clone(),
                );
                let fraction = options.post_fraction;
                workers.push(tokio::spawn(async move {
                    while Instant::now() < end {
                        let _ = sender
                            .send(one_lead(&client, &base, &key, fraction, Instant::now()).await);
                    }
                }));
            }
            for worker in workers {
                worker.await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(counts: &[(&str, u64)]) -> Vec<(String, u64)> {
        counts.iter().map(|(b, c)| (b.to_string(), *c)).collect()
    }

    #[test]
    fn the_servers_slow_pings_are_counted_between_two_reads_of_its_histogram() {
        // Before the measured run: 10 pings of the warm-up, one of them over 50 ms.
        let before = buckets(&[("0.005", 8), ("0.01", 9), ("0.05", 9), ("+Inf", 10)]);
        // After: 100 more, 3 of them between 10 and 50 ms and 2 over 50 ms.
        let after = buckets(&[("0.005", 100), ("0.01", 104), ("0.05", 107), ("+Inf", 110)]);
        let over = slower_than(&before, &after);
        assert_eq!(over.get(&10), Some(&5));
        assert_eq!(over.get(&50), Some(&2));
        // Bounds under 10 ms, and the infinite one, are left out.
        assert_eq!(over.len(), 2, "{over:?}");
    }
}
