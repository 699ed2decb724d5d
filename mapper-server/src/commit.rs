//! Group commit: one writer thread takes every batch waiting at that moment
//! and applies them in a single store transaction, so many agents reporting at
//! once share one fsync instead of queueing for one each. Each caller still
//! gets its own answer only once its batch is durable.
//!
//! Callers wait for their answer asynchronously (a oneshot channel), so a batch waiting for
//! its group holds no thread.

use std::{
    sync::{Arc, mpsc},
    thread,
};

use tokio::sync::oneshot;

use tracing::debug;

use crate::store::{AgentBoot, Applied, Batch, EdgeStore, Observations, StoreError};

/// Most batches, and most observations, one transaction takes.
pub const MAX_GROUP_BATCHES: usize = 256;
const MAX_GROUP_OBSERVATIONS: usize = 200_000;

struct Job {
    agent: AgentBoot,
    sequence: u64,
    observations: Observations,
    /// The answer, and the observations back: the caller frees them, not the one writer.
    reply: oneshot::Sender<(Result<Applied, CommitError>, Observations)>,
}

/// Why a batch was not stored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    #[error("the commit thread has stopped")]
    Stopped,
    /// The group's transaction failed (shared by every batch of the group).
    #[error(transparent)]
    Store(Arc<StoreError>),
}

/// The writer's inbox.
#[derive(Debug, Clone)]
pub struct Committer {
    tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("agent", &self.agent).field("sequence", &self.sequence).finish_non_exhaustive()
    }
}

impl Committer {
    /// Starts the writer thread for `store`; it ends when every Committer is dropped.
    pub fn start(store: Arc<EdgeStore>) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("mapper-commit".into())
            .spawn(move || run(&store, &rx))
            .map_or_else(|e| tracing::error!(error = %e, "cannot start the commit thread"), |_| ());
        Self { tx }
    }

    /// Applies one batch durably: the answer comes once its group has committed.
    pub async fn apply(
        &self,
        agent: AgentBoot,
        sequence: u64,
        observations: Observations,
    ) -> Result<Applied, CommitError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Job { agent, sequence, observations, reply }).map_err(|_| CommitError::Stopped)?;
        let (result, observations) = answer.await.map_err(|_| CommitError::Stopped)?;
        drop(observations);
        result
    }
}

fn run(store: &EdgeStore, rx: &mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        let mut observations = jobs[0].observations.len();
        while jobs.len() < MAX_GROUP_BATCHES && observations < MAX_GROUP_OBSERVATIONS {
            match rx.try_recv() {
                Ok(j) => {
                    observations += j.observations.len();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        let batches: Vec<Batch<'_>> = jobs
            .iter()
            .map(|j| Batch { agent: &j.agent, sequence: j.sequence, observations: &j.observations })
            .collect();
        let result: Result<Vec<Applied>, StoreError> = store.apply_group(&batches);
        debug!(batches = jobs.len(), observations, "group committed");
        drop(batches);
        let answers: Vec<Result<Applied, CommitError>> = match result {
            Ok(applied) => applied.into_iter().map(Ok).collect(),
            Err(e) => {
                // The store logged the cause chain and marked itself unhealthy.
                let e = Arc::new(e);
                jobs.iter().map(|_| Err(CommitError::Store(e.clone()))).collect()
            }
        };
        for (job, answer) in jobs.into_iter().zip(answers) {
            let _ = job.reply.send((answer, job.observations));
        }
    }
}
