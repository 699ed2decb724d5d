//! The cluster read from files of Kubernetes objects (as `kubectl get -o yaml` prints them),
//! for running without an API server; reloaded when the files change.

mod parse;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use parse::{InventoryError, InventoryWarning, Location};
use tokio::task::JoinHandle;

use crate::error_chain;
use crate::history::PodHistory;
use crate::identity::{ResolveOptions, duration_ms, now_ms};
use crate::model::ClusterObjects;
use crate::snapshot::{ClusterHandle, Snapshot};

/// Reads one inventory file's text (YAML, or JSON when `path` ends in `.json`) as a load
/// would, keeping nothing: the warnings it would log, or the error that would stop the load.
/// `path` only names the text in messages.
pub fn check_inventory_text(
    path: &std::path::Path,
    text: &str,
    name_annotations: &[&str],
) -> Result<Vec<InventoryWarning>, InventoryError> {
    let mut checks = parse::Checks::default();
    parse::add_text(&mut ClusterObjects::default(), &mut checks, path, text, name_annotations)?;
    Ok(checks.warnings)
}

/// How often [`watch_inventory`] looks at the files by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// An inventory: the objects of the last good load, the IP history across loads, and the
/// snapshot built from them.
///
/// A pod that disappears between two loads is kept (with its IPs closed at the time the load
/// saw it gone, or its deletion deadline if earlier) for [`ResolveOptions::deleted_pod_retention`].
#[derive(Debug)]
pub struct Inventory {
    paths: Vec<PathBuf>,
    options: ResolveOptions,
    objects: ClusterObjects,
    history: PodHistory,
    snapshot: Arc<Snapshot>,
    warnings: Vec<InventoryWarning>,
    warning_count: usize,
}

impl Inventory {
    /// Load the files or directories in `paths`.
    pub fn load(paths: Vec<PathBuf>, options: ResolveOptions) -> Result<Self, InventoryError> {
        Self::load_at(paths, options, now_ms())
    }

    /// [`Inventory::load`] with the time of the load given (Unix milliseconds).
    pub fn load_at(paths: Vec<PathBuf>, options: ResolveOptions, now_ms: i64) -> Result<Self, InventoryError> {
        let mut inventory = Self {
            paths,
            options,
            objects: ClusterObjects::default(),
            history: PodHistory::default(),
            snapshot: Arc::new(Snapshot::default()),
            warnings: Vec::new(),
            warning_count: 0,
        };
        inventory.reload_at(now_ms)?;
        Ok(inventory)
    }

    /// Read the files again. On error nothing changes: the previous snapshot stays current.
    pub fn reload(&mut self) -> Result<Arc<Snapshot>, InventoryError> {
        self.reload_at(now_ms())
    }

    /// [`Inventory::reload`] with the time of the load given (Unix milliseconds). Each warning
    /// of the load (a duplicate pod UID, a pod without one, an unparsable IP) is logged.
    pub fn reload_at(&mut self, now_ms: i64) -> Result<Arc<Snapshot>, InventoryError> {
        let (objects, checks) = parse::load(&self.paths, &self.options.name_annotations())?;
        for warning in &checks.warnings {
            tracing::warn!(warning = %warning, "inventory object ignored or read in part");
        }
        if checks.warning_count > checks.warnings.len() {
            tracing::warn!(
                more = checks.warning_count - checks.warnings.len(),
                "more inventory warnings like the ones above (not logged)"
            );
        }
        (self.warnings, self.warning_count) = (checks.warnings, checks.warning_count);
        let present: std::collections::HashSet<&str> = objects.pods.iter().map(|p| &*p.uid).collect();
        for pod in &self.objects.pods {
            if !present.contains(&*pod.uid) {
                let workload = self.snapshot.workload_of_pod(&pod.uid);
                let release = self.snapshot.release_of_pod(&pod.uid);
                self.history.gone(pod.clone(), workload, release, now_ms);
            }
        }
        for pod in &objects.pods {
            self.history.observe(pod, now_ms);
        }
        self.objects = objects;
        Ok(self.rebuild(now_ms))
    }

    /// Forget pods deleted longer ago than the retention period, rebuilding the snapshot when
    /// any was; returns the new snapshot then.
    pub fn expire_at(&mut self, now_ms: i64) -> Option<Arc<Snapshot>> {
        let retention = duration_ms(self.options.deleted_pod_retention);
        let due = self.history.next_expiry(retention).is_some_and(|t| t < now_ms);
        due.then(|| self.rebuild(now_ms))
    }

    /// The snapshot of the last good load.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.clone()
    }

    /// The warnings of the last good load (the first hundred), and how many there were.
    pub fn warnings(&self) -> (&[InventoryWarning], usize) {
        (&self.warnings, self.warning_count)
    }

    /// The files and directories this inventory reads.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// The files under [`Inventory::paths`] a load reads, as it finds them now (the same walk:
    /// extensions, depth, hidden entries).
    pub fn files(&self) -> Result<Vec<PathBuf>, InventoryError> {
        parse::discover(&self.paths)
    }

    /// The files a load of `paths` would read (files as given; directories walked as a load
    /// walks them), for readers of other objects of the same files.
    pub fn files_of(paths: &[PathBuf]) -> Result<Vec<PathBuf>, InventoryError> {
        parse::discover(paths)
    }

    fn rebuild(&mut self, now_ms: i64) -> Arc<Snapshot> {
        self.history.expire(now_ms, duration_ms(self.options.deleted_pod_retention));
        self.snapshot = Arc::new(Snapshot::build(&self.objects, &self.history, &self.options, now_ms));
        self.snapshot.clone()
    }
}

/// Load the inventory at `paths` and keep it current: every `interval` the files' names,
/// modification times and sizes are compared with the last look, and on a change the inventory
/// is reloaded and the new snapshot swapped in. A reload that fails is logged (`warn`) and the
/// previous state kept.
///
/// The first load must succeed. Call from within a Tokio runtime; the returned task runs until
/// aborted.
pub fn watch_inventory(
    paths: Vec<PathBuf>,
    options: ResolveOptions,
    interval: Duration,
) -> Result<(ClusterHandle, JoinHandle<()>), InventoryError> {
    // Taken before the load, so a change made during it is seen at the next look.
    let seen = parse::fingerprint(&paths).ok();
    let loaded_at = now_ms();
    let inventory = Inventory::load(paths, options)?;
    let handle = ClusterHandle::new();
    handle.publish(inventory.snapshot(), true);
    handle.mark_synced(loaded_at);
    tracing::info!(paths = ?inventory.paths(), pods = inventory.snapshot().pod_count(), "inventory loaded");
    let task = tokio::spawn(poll(inventory, seen, handle.clone(), interval));
    Ok((handle, task))
}

/// What one look at the files found.
enum Look {
    Unchanged,
    Reloaded(Arc<Snapshot>),
    Failed(InventoryError),
}

async fn poll(
    mut inventory: Inventory,
    mut seen: Option<parse::Fingerprint>,
    handle: ClusterHandle,
    interval: Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate; the files were just loaded
    let mut broken = false;
    loop {
        ticker.tick().await;
        let previous = seen.clone();
        // File reads and parsing block: they run off the async workers.
        let joined = tokio::task::spawn_blocking(move || {
            let now = now_ms();
            let current = parse::fingerprint(inventory.paths());
            let look = match &current {
                Ok(fp) if Some(fp) == previous.as_ref() => match inventory.expire_at(now) {
                    Some(snapshot) => Look::Reloaded(snapshot),
                    None => Look::Unchanged,
                },
                Ok(_) => match inventory.reload_at(now) {
                    Ok(snapshot) => Look::Reloaded(snapshot),
                    Err(e) => Look::Failed(e),
                },
                Err(_) if previous.is_none() => Look::Unchanged, // still unreadable: warned already
                Err(_) => match inventory.reload_at(now) {
                    Ok(snapshot) => Look::Reloaded(snapshot),
                    Err(e) => Look::Failed(e),
                },
            };
            (inventory, current.ok(), look, now)
        })
        .await;
        let (look, looked_at);
        (inventory, seen, look, looked_at) = match joined {
            Ok(result) => result,
            Err(e) => {
                tracing::error!(error = %e, "inventory reload task failed; no more reloads");
                return;
            }
        };
        match look {
            // Files left broken since a failed reload are not reflected: not current.
            Look::Unchanged if !broken => handle.mark_synced(looked_at),
            Look::Unchanged => {}
            Look::Reloaded(snapshot) => {
                tracing::info!(pods = snapshot.pod_count(), "inventory reloaded");
                // The snapshot first: whoever reads the time and then the snapshot gets one
                // at least that current.
                handle.publish(snapshot, true);
                handle.mark_synced(looked_at);
                broken = false;
            }
            Look::Failed(e) => {
                broken = true;
                tracing::warn!(error = %error_chain(&e), "inventory reload failed; keeping the previous state");
            }
        }
    }
}
