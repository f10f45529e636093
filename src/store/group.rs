//! Group execution of the ping's statements (its state read, its record's write, the declines
//! written behind its answer) and of the post's (`store::sales`, `store::posts`). Every ping
//! waits for its own statement's result, but pings that arrive while another statement of the
//! same kind is running share the next one: under load, one round trip, one commit and one
//! plan serve many pings; when Gavel is idle, a ping's statement runs alone and at once, so
//! grouping never adds a wait. (Writes nobody waits for, a ping's declines written behind its answer, wait
//! for company on purpose: `GroupStatement::LINGER`.)

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use sqlx::Connection;
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres};
use tokio::sync::{Mutex, mpsc, oneshot};

/// A statement that serves many requests at once.
pub trait GroupStatement: Send + Sync + 'static {
    /// The statement's name in the metrics.
    const NAME: &'static str;
    type Request: Send + Sync + 'static;
    type Answer: Send + 'static;
    /// Bounds on one statement, so a burst does not build a statement of unbounded size:
    /// at most this many requests, and this much work (`work` summed).
    const MAX_REQUESTS: usize;
    const MAX_WORK: usize;
    /// How much a request adds to the statement (rows written or looked up).
    fn work(request: &Self::Request) -> usize;
    /// How long the plans PostgreSQL keeps in a kept connection's session (its statements',
    /// and those they run: foreign keys' checks, functions' statements) may serve before
    /// they are made again with the tables as they are then (`None`: for the session's life).
    /// A session's plans are made at its first statements, and those made while a table
    /// was still empty (a new database, a fresh `gavel bench` cluster) may look a row up by
    /// the wrong index until the next `ANALYZE` of the table invalidates them.
    const REPLAN_EVERY: Option<std::time::Duration> = None;
    /// Leave out of its group a request whose caller no longer awaits its answer (a client
    /// that hung up, a request timed out), for a statement whose work only its caller would
    /// carry on: a post's claim that nobody settles leaves its ping claimed and unsold. (A
    /// ping's record is written whoever waits for it.) A request already in a statement runs.
    const DROP_ABANDONED: bool = false;
    /// For writes nobody waits for: a group not full waits this long after its first request
    /// for more (and an idle group's request waits too, rather than run at once), so that a
    /// statement serves many and runs apart from the answers it follows.
    const LINGER: Option<std::time::Duration> = None;
    /// Runs the requests as one statement: one answer per request, in order, or one error
    /// for all of them.
    fn run(
        db: &mut PgConnection,
        requests: &[Self::Request],
    ) -> impl Future<Output = Result<Vec<Self::Answer>, sqlx::Error>> + Send;
}

/// The `REPLAN_EVERY` of the post's statements, whose tables' foreign keys and indexes a
/// young table's plans may look up the wrong way.
pub const REPLAN_EVERY_SECOND: Option<std::time::Duration> =
    Some(std::time::Duration::from_secs(1));

type Reply<S> = oneshot::Sender<Result<<S as GroupStatement>::Answer, sqlx::Error>>;
type Queue<S> = mpsc::UnboundedReceiver<(<S as GroupStatement>::Request, Reply<S>)>;

/// The handle requests go through; clones share the same runners.
pub struct Group<S: GroupStatement> {
    queue: mpsc::UnboundedSender<(S::Request, Reply<S>)>,
    /// The connection of a statement run at once by an idle group's caller (one at a time).
    direct: Arc<Mutex<HeldConnection>>,
    /// Statements of this kind running now, by the runners or by a caller.
    running: Arc<AtomicUsize>,
}

impl<S: GroupStatement> Clone for Group<S> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            direct: Arc::clone(&self.direct),
            running: Arc::clone(&self.running),
        }
    }
}

/// Counts one statement as running until dropped.
struct Running(Arc<AtomicUsize>);

impl Running {
    fn start(running: &Arc<AtomicUsize>) -> Self {
        running.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(running))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runners per kind of statement: one. Requests queue while its statement runs, and it takes
/// them all as the next group (besides the direct caller's statement, below). Two split the
/// groups under load into more, smaller statements: the maximum rate was 9 % lower with two
/// (BENCHMARKS.md). A group the database refuses is re-run request by request meanwhile.
const RUNNERS: usize = 1;

/// Connections one group keeps: one per runner, and the direct caller's.
pub const KEPT_CONNECTIONS: u32 = RUNNERS as u32 + 1;

/// A connection kept from one statement to the next. sqlx's pool tests every connection it
/// is given back with a round trip to the database; a statement's runner that kept its
/// connection would otherwise pay one more round trip (and wake-up of both processes) per
/// statement.
struct HeldConnection {
    db: PgPool,
    connection: Option<PoolConnection<Postgres>>,
    /// When the connection's session last had its plans made anew (`REPLAN_EVERY`).
    planned: Instant,
    /// When the connection last served a statement (`IDLE_CHECK_AFTER`).
    used: Instant,
}

/// A kept connection idle this long is tested (one round trip) before its next statement: the
/// server may have ended its session meanwhile (a restart, a failover, an administrator), and
/// the statement would fail where a new connection succeeds. Under load a kept connection is
/// never idle that long, so the test costs nothing there.
const IDLE_CHECK_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

impl HeldConnection {
    fn new(db: PgPool) -> Self {
        Self {
            db,
            connection: None,
            planned: Instant::now(),
            used: Instant::now(),
        }
    }

    async fn run<S: GroupStatement>(
        &mut self,
        requests: &[S::Request],
    ) -> Result<Vec<S::Answer>, sqlx::Error> {
        let replan = S::REPLAN_EVERY.is_some_and(|every| self.planned.elapsed() >= every);
        let idle = self.used.elapsed() >= IDLE_CHECK_AFTER;
        if let Some(connection) = &mut self.connection
            && (replan || idle)
        {
            // The plans' renewal, when due, is the idle connection's test too: one round trip.
            // A connection that fails it is let go before the statement, which then runs on a
            // new one (a session the server ended fails no request).
            let tested = if replan {
                // Prepared statements stay; their plans are made again at their next use.
                sqlx::raw_sql("DISCARD PLANS")
                    .execute(&mut **connection)
                    .await
                    .map(drop)
            } else {
                connection.ping().await
            };
            match tested {
                Ok(()) if replan => self.planned = Instant::now(),
                Ok(()) => {}
                Err(_) => self.connection = None,
            }
        }
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => {
                self.planned = Instant::now();
                self.connection.insert(self.db.acquire().await?)
            }
        };
        let result = S::run(connection, requests).await;
        self.used = Instant::now();
        // The database refusing a statement leaves the connection sound; any other failure
        // (I/O, protocol, the session ended by the server) may not: it goes back to the pool,
        // which tests it, and the next statement takes another.
        if let Err(error) = &result
            && !refused_by_a_sound_session(error)
        {
            self.connection = None;
        }
        result
    }

    async fn run_alone<S: GroupStatement>(
        &mut self,
        request: S::Request,
    ) -> Result<S::Answer, sqlx::Error> {
        self.run::<S>(std::slice::from_ref(&request))
            .await
            .and_then(|mut answers| {
                answers
                    .pop()
                    .ok_or_else(|| super::errors::fault("a statement lost its answer"))
            })
    }
}

impl<S: GroupStatement> Group<S> {
    /// Starts the runners; they stop when the last handle is dropped. The queue needs no
    /// bound of its own: requests come from auctions, which the load-shedding bound limits.
    pub fn start(db: PgPool) -> Self {
        let (queue, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        let running = Arc::new(AtomicUsize::new(0));
        for _ in 0..RUNNERS {
            tokio::spawn(run_groups::<S>(
                db.clone(),
                Arc::clone(&receiver),
                Arc::clone(&running),
            ));
        }
        // A kept connection is never given back on its own: when the pool closes, the direct
        // caller's goes back (the runners give theirs back themselves), so that the pool's
        // close completes and the database is let go.
        let direct = Arc::new(Mutex::new(HeldConnection::new(db.clone())));
        let (closed, keeper) = (db.close_event(), Arc::clone(&direct));
        tokio::spawn(async move {
            closed.await;
            keeper.lock().await.connection = None;
        });
        Self {
            queue,
            direct,
            running,
        }
    }

    /// Runs one request (in a group, when others are waiting) and returns its answer.
    pub async fn run(&self, request: S::Request) -> Result<S::Answer, sqlx::Error> {
        self.run_in(request, Detach::Yes).await
    }

    /// [`Group::run`] for a caller that is a task of its own already, which nobody drops
    /// midway: an idle group's statement runs right here, without a task (and a wake-up) more.
    pub async fn run_in_this_task(&self, request: S::Request) -> Result<S::Answer, sqlx::Error> {
        self.run_in(request, Detach::No).await
    }

    async fn run_in(&self, request: S::Request, detach: Detach) -> Result<S::Answer, sqlx::Error> {
        // Nothing of this kind running: the statement starts at once in a task of its own,
        // rather than being handed to a runner whose answer is handed back (two task wake-ups,
        // often across threads; tokio runs a task spawned from a worker next on that worker).
        // Its own task (`Detach::Yes`) lets it complete even when the caller is dropped: a
        // client that hangs up must not leave its ping unrecorded. Requests that arrive
        // meanwhile queue for the runners and are grouped as usual.
        if S::LINGER.is_none()
            && self
                .running
                .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            let running = Running(Arc::clone(&self.running));
            let direct = Arc::clone(&self.direct);
            crate::meters::group_statement(S::NAME, 1);
            let statement = async move {
                let _running = running;
                direct.lock().await.run_alone::<S>(request).await
            };
            return match detach {
                Detach::No => statement.await,
                Detach::Yes => tokio::spawn(statement).await.unwrap_or_else(|_| {
                    Err(super::errors::fault("a statement's task ended early"))
                }),
            };
        }
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((request, reply))
            .map_err(|_| sqlx::Error::PoolClosed)?;
        answer.await.unwrap_or(Err(sqlx::Error::PoolClosed))
    }
}

/// Whether an idle group's statement runs in a task of its own, so that it completes even when
/// its caller is dropped.
#[derive(Clone, Copy)]
enum Detach {
    Yes,
    No,
}

async fn run_groups<S: GroupStatement>(
    db: PgPool,
    receiver: Arc<Mutex<Queue<S>>>,
    running: Arc<AtomicUsize>,
) {
    let mut closed = std::pin::pin!(db.close_event());
    let mut held = HeldConnection::new(db);
    loop {
        // Waiting for requests, the runner gives its connection back (by ending) when the
        // pool closes; requests still queued then fail as the closed pool would fail them.
        let group = tokio::select! {
            biased;
            () = &mut closed => return,
            group = collect::<S>(&receiver) => group,
        };
        let Some(group) = group else { return };
        if group.is_empty() {
            continue;
        }
        let _running = Running::start(&running);
        let (requests, replies): (Vec<S::Request>, Vec<Reply<S>>) = group.into_iter().unzip();
        crate::meters::group_statement(S::NAME, requests.len());
        match held.run::<S>(&requests).await {
            Ok(answers) if answers.len() == requests.len() => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(Ok(answer));
                }
            }
            Ok(_) => {
                for reply in replies {
                    let _ = reply.send(Err(super::errors::fault(
                        "a grouped statement lost answers",
                    )));
                }
            }
            Err(error) if requests.len() == 1 => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(error));
                }
            }
            // Nothing of the group was done (one statement): run each request alone, so a
            // request the database refuses fails alone, with its own error.
            Err(error) if refused_by_a_sound_session(&error) => {
                let mut unreachable: Option<sqlx::Error> = None;
                for (request, reply) in requests.into_iter().zip(replies) {
                    let answer = match &unreachable {
                        Some(error) => Err(super::errors::same_class(error)),
                        None => held.run_alone::<S>(request).await,
                    };
                    if let Err(error) = &answer
                        && !matches!(error, sqlx::Error::Database(_))
                    {
                        unreachable = Some(super::errors::same_class(error));
                    }
                    let _ = reply.send(answer);
                }
            }
            // The database could not be reached (no connection free in time, I/O): running
            // each request alone would only wait that long again, once per request.
            Err(error) => {
                for reply in replies {
                    let _ = reply.send(Err(super::errors::same_class(&error)));
                }
            }
        }
    }
}

/// The next group: everything queued (within the bounds), once there is something. Only the
/// collecting runner holds the queue (should there be more than one).
async fn collect<S: GroupStatement>(
    receiver: &Mutex<Queue<S>>,
) -> Option<Vec<(S::Request, Reply<S>)>> {
    let mut queue = receiver.lock().await;
    let first = queue.recv().await?;
    let mut work = S::work(&first.0);
    let mut group = vec![first];
    let full = |group: &Vec<_>, work| group.len() >= S::MAX_REQUESTS || work >= S::MAX_WORK;
    // A lingering group that is full already runs at once; one that is not waits its linger
    // once (even should it fill meanwhile: the next group then is full at once).
    for linger in [S::LINGER, None] {
        while !full(&group, work) {
            match queue.try_recv() {
                Ok(next) => {
                    work += S::work(&next.0);
                    group.push(next);
                }
                Err(_) => break,
            }
        }
        match linger {
            Some(linger) if !full(&group, work) => tokio::time::sleep(linger).await,
            _ => break,
        }
    }
    if S::DROP_ABANDONED {
        group.retain(|(_, reply)| !reply.is_closed());
    }
    Some(group)
}

/// One bound array of a grouped statement: `value` of each request.
pub fn column<'a, T, U>(items: &'a [T], value: impl Fn(&'a T) -> U) -> Vec<U> {
    items.iter().map(value).collect()
}

/// The answers of `requests` requests, from the rows a grouped statement returned for some of
/// them, each naming its request by its 1-based ordinal (`WITH ORDINALITY`); `None` for a
/// request no row named.
pub fn by_ordinal<A>(requests: usize, rows: impl IntoIterator<Item = (i64, A)>) -> Vec<Option<A>> {
    let mut answers: Vec<Option<A>> = std::iter::repeat_with(|| None).take(requests).collect();
    for (ordinal, answer) in rows {
        if let Some(slot) = usize::try_from(ordinal - 1)
            .ok()
            .and_then(|i| answers.get_mut(i))
        {
            *slot = Some(answer);
        }
    }
    answers
}

/// The database refused the statement (a constraint, a bad value) and the session goes on;
/// not a FATAL error, which ends the session (an administrator's shutdown, a timeout).
fn refused_by_a_sound_session(error: &sqlx::Error) -> bool {
    use sqlx::postgres::{PgDatabaseError, PgSeverity};
    match error {
        sqlx::Error::Database(error) => error
            .try_downcast_ref::<PgDatabaseError>()
            .is_none_or(|error| !matches!(error.severity(), PgSeverity::Fatal | PgSeverity::Panic)),
        _ => false,
    }
}
