//! The batching writer: group commit for sends.
//!
//! One transaction per message cannot go faster than the database commits (an fsync each);
//! here concurrent sends share commits. Sends queue on a channel; a worker takes everything
//! that is waiting (up to `max_batch`), writes it in one transaction with
//! [`Store::insert_messages`], and answers each send only after that transaction committed,
//! so an acknowledged message is always durable. No timer waits for a batch to fill: while
//! one batch commits, the next one gathers, so batches grow with the load and a lone send
//! goes straight through.
//!
//! `workers` batches may be in flight at once (PostgreSQL: concurrent transactions overlap
//! their round trips; SQLite has one writer connection, so one). The store locks rows in one
//! global order, so concurrent batches, here or on other replicas, never deadlock.

use super::{InsertOutcome, Inserted, NewMessage, Store, StoreError, StoreResult, UnreadCounts};
use prometheus_client::metrics::counter::Counter;
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc, oneshot};

/// What one send got from its batch.
#[derive(Debug, Clone)]
pub struct Written {
    pub outcome: InsertOutcome,
    /// Every participant's unread counts after the batch (for `unread_count_updated`), when the
    /// message was created.
    pub unread: Option<Arc<[UnreadCounts]>>,
    /// Each participant's feed position of its `new_message` (empty unless created).
    pub cursors: super::Cursors,
}

struct Job {
    new: NewMessage,
    reply: oneshot::Sender<StoreResult<Written>>,
    /// Not written once this has passed: its caller has answered `unavailable` by then, and
    /// what was answered `unavailable` must not be stored.
    deadline: tokio::time::Instant,
}

/// A handle to the writer; cheap to clone. The workers stop when every handle is dropped.
#[derive(Clone)]
pub struct BatchWriter {
    jobs: mpsc::Sender<Job>,
}

/// Sends waiting beyond this many make callers wait to enqueue (back-pressure).
const QUEUE: usize = 16_384;

impl BatchWriter {
    /// Starts `workers` workers writing batches of at most `max_batch` messages to `store`,
    /// counting the messages they create in `persisted`.
    pub fn start(
        store: Arc<dyn Store>,
        max_batch: usize,
        workers: usize,
        persisted: Counter,
    ) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        // Workers take turns at gathering: the one holding the queue waits for the first send,
        // takes whatever else is waiting, and lets the next worker gather while it writes.
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..workers.max(1) {
            tokio::spawn(work(
                Arc::clone(&store),
                Arc::clone(&queue),
                max_batch.max(1),
                persisted.clone(),
            ));
        }
        Self { jobs }
    }

    /// Writes one message in the next batch; answers after that batch committed (or failed).
    /// A message still queued when `deadline` passes is not written ([`StoreError::Expired`]);
    /// one already in a batch waits for that batch's outcome.
    pub async fn insert(
        &self,
        new: NewMessage,
        deadline: tokio::time::Instant,
    ) -> StoreResult<Written> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            new,
            reply,
            deadline,
        };
        match tokio::time::timeout_at(deadline, self.jobs.send(job)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(StoreError::WriterStopped),
            Err(_) => return Err(StoreError::Expired),
        }
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }
}

async fn work(
    store: Arc<dyn Store>,
    queue: Arc<Mutex<mpsc::Receiver<Job>>>,
    max_batch: usize,
    persisted: Counter,
) {
    loop {
        let mut jobs = Vec::new();
        {
            let mut queue = queue.lock().await;
            if queue.recv_many(&mut jobs, max_batch).await == 0 {
                return; // every handle dropped: nothing more will come
            }
        }
        write(&*store, jobs, &persisted).await;
    }
}

/// Time a send must have left to join a batch. The batch commits by its earliest deadline
/// or not at all (below): a send about to time out would take every other send of its batch
/// down with it, so it is answered `Expired` at once instead.
const MIN_TIME_LEFT: std::time::Duration = std::time::Duration::from_millis(100);

/// Writes one batch and answers every job in it.
async fn write(store: &dyn Store, jobs: Vec<Job>, persisted: &Counter) {
    let now = tokio::time::Instant::now();
    let (jobs, expired): (Vec<Job>, Vec<Job>) = jobs
        .into_iter()
        .partition(|j| j.deadline > now + MIN_TIME_LEFT);
    for job in expired {
        let _ = job.reply.send(Err(StoreError::Expired));
    }
    if jobs.is_empty() {
        return;
    }
    // The batch must commit before its earliest deadline: a caller past it has answered
    // `unavailable`, and what was answered `unavailable` must not be stored. Past it, the
    // transaction is dropped uncommitted (rolled back) and every send of the batch answers
    // `unavailable`; only a COMMIT already on its way when that happens may still land, and a
    // retry with the same clientMessageId then finds it.
    let deadline = jobs.iter().map(|j| j.deadline).min().unwrap_or(now);
    // The messages move into the batch; only the answer channels stay beside them.
    let (batch, replies): (Vec<NewMessage>, Vec<_>) =
        jobs.into_iter().map(|job| (job.new, job.reply)).unzip();
    let Ok(result) = tokio::time::timeout_at(deadline, store.insert_messages(&batch)).await else {
        tracing::warn!(
            size = batch.len(),
            "batch of sends not committed in time: rolled back"
        );
        for reply in replies {
            let _ = reply.send(Err(StoreError::Expired));
        }
        return;
    };
    match result {
        Ok(inserted) => {
            persisted.inc_by(created(&inserted));
            answer(&batch, replies, &inserted);
        }
        Err(e) if e.is_unavailable() || batch.len() == 1 => {
            if batch.len() > 1 {
                tracing::warn!(error = %e, size = batch.len(), "batch of sends failed");
            }
            let shared = Arc::new(e);
            for reply in replies {
                let _ = reply.send(Err(StoreError::Shared(Arc::clone(&shared))));
            }
        }
        // Something in the batch failed it (a bug, or a value the database refused): write
        // each message on its own so that one bad send does not fail the others.
        Err(e) => {
            tracing::warn!(error = %e, size = batch.len(), "batch of sends failed: writing them one by one");
            for (new, reply) in batch.iter().zip(replies) {
                let one = store.insert_messages(std::slice::from_ref(new));
                let result = match tokio::time::timeout_at(deadline, one).await {
                    Err(_) => Err(StoreError::Expired),
                    Ok(inserted) => inserted.and_then(|inserted| {
                        persisted.inc_by(created(&inserted));
                        written(new, &inserted, 0).ok_or(StoreError::Sqlx(sqlx::Error::RowNotFound))
                    }),
                };
                let _ = reply.send(result);
            }
        }
    }
}

/// How many messages a batch created (not retries, not blocked).
fn created(inserted: &Inserted) -> u64 {
    let n = inserted
        .outcomes
        .iter()
        .filter(|o| matches!(o, InsertOutcome::Created(_)))
        .count();
    n as u64
}

/// What message `index` of a batch got.
fn written(new: &NewMessage, inserted: &Inserted, index: usize) -> Option<Written> {
    let outcome = inserted.outcomes.get(index)?.clone();
    let unread = match outcome {
        InsertOutcome::Created(_) => inserted.unread_of(&new.conversation_id),
        _ => None,
    };
    let cursors = inserted.cursors.get(index).cloned().unwrap_or_default();
    Some(Written {
        outcome,
        unread,
        cursors,
    })
}

fn answer(
    batch: &[NewMessage],
    replies: Vec<oneshot::Sender<StoreResult<Written>>>,
    inserted: &Inserted,
) {
    for (index, (new, reply)) in batch.iter().zip(replies).enumerate() {
        // A send whose caller went away is still committed; nobody is left to tell. A missing
        // outcome (never expected) drops the channel: the caller gets `WriterStopped`.
        if let Some(result) = written(new, inserted, index) {
            let _ = reply.send(Ok(result));
        }
    }
}
