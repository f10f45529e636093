//! Group execution of the ping's two statements (its state read and its record's write).
//! Every ping waits for its own statement's result, but pings that arrive while another
//! statement of the same kind is running share the next one: under load, one round trip, one
//! commit and one plan serve many pings; when Gavel is idle, a ping's statement runs alone and
//! at once, so grouping never adds a wait.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};

/// A statement that serves many requests at once.
pub trait GroupStatement: Send + Sync + 'static {
    /// The statement's name in the metrics.
    const NAME: &'static str;
    type Request: Send + 'static;
    type Answer: Send + 'static;
    /// Bounds on one statement, so a burst does not build a statement of unbounded size:
    /// at most this many requests, and this much work (`work` summed).
    const MAX_REQUESTS: usize;
    const MAX_WORK: usize;
    /// How much a request adds to the statement (rows written or looked up).
    fn work(request: &Self::Request) -> usize;
    /// Runs the requests as one statement: one answer per request, in order, or one error
    /// for all of them.
    fn run(
        db: &PgPool,
        requests: &[Self::Request],
    ) -> impl Future<Output = Result<Vec<Self::Answer>, sqlx::Error>> + Send;
}

type Reply<S> = oneshot::Sender<Result<<S as GroupStatement>::Answer, sqlx::Error>>;
type Queue<S> = mpsc::UnboundedReceiver<(<S as GroupStatement>::Request, Reply<S>)>;

/// The handle requests go through; clones share the same runners.
pub struct Group<S: GroupStatement> {
    queue: mpsc::UnboundedSender<(S::Request, Reply<S>)>,
    db: PgPool,
    /// Statements of this kind running now, by the runners or by a caller.
    running: Arc<AtomicUsize>,
}

impl<S: GroupStatement> Clone for Group<S> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            db: self.db.clone(),
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

/// Statements of one kind running at once: one collecting while another runs keeps the
/// database busy on a two-core machine without splitting groups into crumbs.
const RUNNERS: usize = 2;

/// Connections the ping's two kinds of grouped statement can hold at once: each kind runs at
/// most its runners' statements and one idle caller's.
pub const MAX_CONNECTIONS: u32 = 2 * (RUNNERS as u32 + 1);

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
        Self { queue, db, running }
    }

    /// Runs one request (in a group, when others are waiting) and returns its answer.
    pub async fn run(&self, request: S::Request) -> Result<S::Answer, sqlx::Error> {
        // Nothing of this kind running: the statement starts at once in a task of its own,
        // rather than being handed to a runner whose answer is handed back (two task wake-ups,
        // often across threads; tokio runs a task spawned from a worker next on that worker).
        // Its own task lets it complete even when the caller is dropped: a client that hangs
        // up must not leave its ping unrecorded. Requests that arrive meanwhile queue for the
        // runners and are grouped as usual.
        if self
            .running
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let running = Running(Arc::clone(&self.running));
            let db = self.db.clone();
            crate::meters::group_statement(S::NAME, 1);
            return tokio::spawn(async move {
                let _running = running;
                run_alone::<S>(&db, request).await
            })
            .await
            .unwrap_or_else(|_| {
                Err(sqlx::Error::Protocol(
                    "a statement's task ended early".to_owned(),
                ))
            });
        }
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((request, reply))
            .map_err(|_| sqlx::Error::PoolClosed)?;
        answer.await.unwrap_or(Err(sqlx::Error::PoolClosed))
    }
}

async fn run_alone<S: GroupStatement>(
    db: &PgPool,
    request: S::Request,
) -> Result<S::Answer, sqlx::Error> {
    S::run(db, std::slice::from_ref(&request))
        .await
        .and_then(|mut answers| {
            answers
                .pop()
                .ok_or_else(|| sqlx::Error::Protocol("a statement lost its answer".to_owned()))
        })
}

async fn run_groups<S: GroupStatement>(
    db: PgPool,
    receiver: Arc<Mutex<Queue<S>>>,
    running: Arc<AtomicUsize>,
) {
    loop {
        // Only the collecting runner holds the queue; the other may be running meanwhile.
        let group = {
            let mut queue = receiver.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            let mut work = S::work(&first.0);
            let mut group = vec![first];
            while group.len() < S::MAX_REQUESTS && work < S::MAX_WORK {
                match queue.try_recv() {
                    Ok(next) => {
                        work += S::work(&next.0);
                        group.push(next);
                    }
                    Err(_) => break,
                }
            }
            group
        };
        let _running = Running::start(&running);
        let (requests, replies): (Vec<S::Request>, Vec<Reply<S>>) = group.into_iter().unzip();
        crate::meters::group_statement(S::NAME, requests.len());
        match S::run(&db, &requests).await {
            Ok(answers) if answers.len() == requests.len() => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(Ok(answer));
                }
            }
            Ok(_) => {
                for reply in replies {
                    let _ = reply.send(Err(sqlx::Error::Protocol(
                        "a grouped statement lost answers".to_owned(),
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
            Err(_) => {
                for (request, reply) in requests.into_iter().zip(replies) {
                    let _ = reply.send(run_alone::<S>(&db, request).await);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Answers each request with its double, recording every statement's requests; a
    /// statement holding a negative request fails whole, as one refused row fails a database
    /// statement.
    struct Double;

    static STATEMENTS: Mutex<Vec<Vec<i64>>> = Mutex::new(Vec::new());

    impl GroupStatement for Double {
        const NAME: &'static str = "double";
        type Request = i64;
        type Answer = i64;
        const MAX_REQUESTS: usize = 64;
        const MAX_WORK: usize = 1_000;

        fn work(_: &i64) -> usize {
            1
        }

        async fn run(_: &PgPool, requests: &[i64]) -> Result<Vec<i64>, sqlx::Error> {
            STATEMENTS.lock().unwrap().push(requests.to_vec());
            tokio::task::yield_now().await;
            if requests.iter().any(|r| *r < 0) {
                return Err(sqlx::Error::RowNotFound);
            }
            Ok(requests.iter().map(|r| r * 2).collect())
        }
    }

    #[tokio::test]
    async fn requests_arriving_together_share_statements_and_fail_alone() {
        // Never connected: the test statement does not use it.
        let db = PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").unwrap();
        let group = Group::<Double>::start(db);

        let requests = (1..=40).map(|i| if i == 7 { -7 } else { i });
        let answers = futures::future::join_all(requests.map(|r| group.run(r))).await;
        for (i, answer) in (1..=40).zip(answers) {
            match i {
                7 => assert!(answer.is_err(), "the refused request fails"),
                _ => assert_eq!(answer.unwrap(), i * 2, "request {i} gets its own answer"),
            }
        }
        let statements = std::mem::take(&mut *STATEMENTS.lock().unwrap());
        assert!(
            statements.iter().any(|s| s.len() > 1 && s.contains(&-7)),
            "the refused request shared a statement with others: {statements:?}"
        );
        assert!(
            statements.contains(&vec![-7]),
            "then ran again alone: {statements:?}"
        );

        assert_eq!(group.run(21).await.unwrap(), 42);
        assert_eq!(
            *STATEMENTS.lock().unwrap(),
            vec![vec![21]],
            "an idle group runs a request at once, alone"
        );
    }
}
