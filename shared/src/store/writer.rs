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
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc, oneshot};

/// What one send got from its batch.
#[derive(Debug, Clone)]
pub struct Written {
    pub outcome: InsertOutcome,
    /// Every participant's unread counts after the batch (for `unread_count_updated`), when the
    /// message was created.
    pub unread: Option<Arc<[UnreadCounts]>>,
}

struct Job {
    new: NewMessage,
    reply: oneshot::Sender<StoreResult<Written>>,
}

/// A handle to the writer; cheap to clone. The workers stop when every handle is dropped.
#[derive(Clone)]
pub struct BatchWriter {
    jobs: mpsc::Sender<Job>,
}

/// Sends waiting beyond this many make callers wait to enqueue (back-pressure).
const QUEUE: usize = 16_384;

impl BatchWriter {
    /// Starts `workers` workers writing batches of at most `max_batch` messages to `store`.
    pub fn start(store: Arc<dyn Store>, max_batch: usize, workers: usize) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        // Workers take turns at gathering: the one holding the queue waits for the first send,
        // takes whatever else is waiting, and lets the next worker gather while it writes.
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..workers.max(1) {
            tokio::spawn(work(
                Arc::clone(&store),
                Arc::clone(&queue),
                max_batch.max(1),
            ));
        }
        Self { jobs }
    }

    /// Writes one message in the next batch; answers after that batch committed (or failed).
    pub async fn insert(&self, new: NewMessage) -> StoreResult<Written> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { new, reply })
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }
}

async fn work(store: Arc<dyn Store>, queue: Arc<Mutex<mpsc::Receiver<Job>>>, max_batch: usize) {
    loop {
        let mut jobs = Vec::new();
        {
            let mut queue = queue.lock().await;
            if queue.recv_many(&mut jobs, max_batch).await == 0 {
                return; // every handle dropped: nothing more will come
            }
        }
        write(&*store, jobs).await;
    }
}

/// Writes one batch and answers every job in it.
async fn write(store: &dyn Store, jobs: Vec<Job>) {
    let batch: Vec<NewMessage> = jobs.iter().map(|j| j.new.clone()).collect();
    match store.insert_messages(&batch).await {
        Ok(inserted) => answer(jobs, inserted),
        Err(e) if e.is_unavailable() || jobs.len() == 1 => {
            if jobs.len() > 1 {
                tracing::warn!(error = %e, size = jobs.len(), "batch of sends failed");
            }
            let shared = Arc::new(e);
            for job in jobs {
                let _ = job.reply.send(Err(StoreError::Shared(Arc::clone(&shared))));
            }
        }
        // Something in the batch failed it (a bug, or a value the database refused): write
        // each message on its own so that one bad send does not fail the others.
        Err(e) => {
            tracing::warn!(error = %e, size = jobs.len(), "batch of sends failed: writing them one by one");
            for job in jobs {
                let result = store
                    .insert_messages(std::slice::from_ref(&job.new))
                    .await
                    .and_then(|mut inserted| {
                        let unread = inserted.unread_of(&job.new.conversation_id);
                        inserted
                            .outcomes
                            .pop()
                            .map(|outcome| Written { outcome, unread })
                            .ok_or(StoreError::Sqlx(sqlx::Error::RowNotFound))
                    });
                let _ = job.reply.send(result);
            }
        }
    }
}

fn answer(jobs: Vec<Job>, inserted: Inserted) {
    for (job, outcome) in jobs.into_iter().zip(inserted.outcomes.iter().cloned()) {
        let unread = match outcome {
            InsertOutcome::Created(_) => inserted.unread_of(&job.new.conversation_id),
            _ => None,
        };
        // A send whose caller went away is still committed; nobody is left to tell.
        let _ = job.reply.send(Ok(Written { outcome, unread }));
    }
}
