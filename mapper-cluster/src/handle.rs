//! [`ClusterHandle`]: what the server holds — the current snapshot, swapped atomically on
//! change, and readiness.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

use crate::snapshot::Snapshot;

#[derive(Debug)]
struct Shared {
    current: watch::Sender<Arc<Snapshot>>,
    ready: AtomicBool,
}

/// A handle on the cluster state: the current [`Snapshot`] (replaced as a whole when the source
/// changes, so a reader never sees half an update) and whether the source is ready.
#[derive(Debug, Clone)]
pub struct ClusterHandle {
    shared: Arc<Shared>,
}

impl ClusterHandle {
    /// A handle on an empty, not yet ready, cluster.
    pub(crate) fn new() -> Self {
        let (current, _) = watch::channel(Arc::new(Snapshot::default()));
        Self { shared: Arc::new(Shared { current, ready: AtomicBool::new(false) }) }
    }

    /// The current snapshot: cheap (an `Arc` clone); hold it for a batch of resolutions.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.current.borrow().clone()
    }

    /// Whether the source has delivered a complete view (inventory loaded; every reflector
    /// listed).
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Acquire)
    }

    /// A receiver that is told each time a new snapshot is published.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.shared.current.subscribe()
    }

    /// Wait until the source is ready and a snapshot has been published.
    pub async fn wait_ready(&self) {
        let mut rx = self.subscribe();
        while !self.is_ready() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Publish a new snapshot, and readiness with it.
    pub(crate) fn publish(&self, snapshot: Arc<Snapshot>, ready: bool) {
        // Readiness first, so a waiter woken by the new snapshot sees it.
        if ready {
            self.shared.ready.store(true, Ordering::Release);
        }
        self.shared.current.send_replace(snapshot);
    }
}
