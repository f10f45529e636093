//! Group commit for ping records. Every ping waits until its record is committed before it
//! answers (a post may follow at once and must find it), but pings that finish while another
//! write is in flight share the next statement: under load, one round trip, one commit and
//! one statement's planning serve many pings; when Gavel is idle, a ping is written alone and
//! at once, so batching never adds a wait.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::pings::{self, PingWrite};

/// Writes in flight at once: one filling while another commits keeps the database busy on a
/// two-core machine without splitting batches into crumbs.
const WRITERS: usize = 2;
/// Bounds on one statement, so a burst does not build a statement of unbounded size.
const MAX_PINGS: usize = 64;
const MAX_ROWS: usize = 4_000;

type Reply = oneshot::Sender<Result<(), sqlx::Error>>;

/// The handle pings record through; clones share the same writers.
#[derive(Clone)]
pub struct PingWriter {
    queue: mpsc::UnboundedSender<(PingWrite, Reply)>,
}

impl PingWriter {
    /// Starts the writers; they stop when the last handle is dropped.
    pub fn start(db: PgPool) -> Self {
        let (queue, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..WRITERS {
            tokio::spawn(write_batches(db.clone(), Arc::clone(&receiver)));
        }
        Self { queue }
    }

    /// Records one ping and its contracts' outcomes; returns once they are committed.
    pub async fn record(&self, write: PingWrite) -> Result<(), sqlx::Error> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((write, reply))
            .map_err(|_| sqlx::Error::PoolClosed)?;
        answer.await.unwrap_or(Err(sqlx::Error::PoolClosed))
    }
}

async fn write_batches(
    db: PgPool,
    receiver: Arc<Mutex<mpsc::UnboundedReceiver<(PingWrite, Reply)>>>,
) {
    loop {
        // Only the collecting writer holds the queue; the other may be committing meanwhile.
        let batch = {
            let mut queue = receiver.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            let mut rows = first.0.rows.len();
            let mut batch = vec![first];
            while batch.len() < MAX_PINGS && rows < MAX_ROWS {
                match queue.try_recv() {
                    Ok(next) => {
                        rows += next.0.rows.len();
                        batch.push(next);
                    }
                    Err(_) => break,
                }
            }
            batch
        };
        let (writes, replies): (Vec<PingWrite>, Vec<Reply>) = batch.into_iter().unzip();
        crate::meters::ping_write_batch(writes.len());
        match pings::record_pings(&db, &writes).await {
            Ok(()) => {
                for reply in replies {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(error) if writes.len() == 1 => {
                let _ = replies
                    .into_iter()
                    .next()
                    .map(|reply| reply.send(Err(error)));
            }
            // Nothing of the batch was written (one statement): write each ping alone, so a
            // ping that cannot be written fails alone, with its own error.
            Err(_) => {
                for (write, reply) in writes.into_iter().zip(replies) {
                    let result = pings::record_pings(&db, std::slice::from_ref(&write)).await;
                    let _ = reply.send(result);
                }
            }
        }
    }
}
