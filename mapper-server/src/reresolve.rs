//! A second look at edges with an in-cluster end that nobody was known to hold.
//!
//! A flow can arrive before the cluster state has the pod it went to (a pod seconds old, a
//! reload still under way): its address is in one of the cluster's ranges, so the end is
//! stored as unresolved (`unknown_cluster_ip`, or `no_pod_at_time` for an address whose known
//! holders came and went around that moment), never as a destination outside the cluster.
//! Each time a new cluster snapshot is published, the edges with such an end last seen within
//! the hold window are resolved again at the time they were last seen; an end that now names
//! a workload (or a Service, the API server, a node) moves the edge's counts to the edge
//! between the resolved ends, in one transaction.

use std::{sync::Arc, time::Duration};

use mapper_cluster::{ClusterHandle, Peer, Snapshot, UnresolvedReason};
use tracing::{debug, info, warn};

use crate::{
    metrics::Metrics,
    server::now_ms,
    store::{EdgeKey, EdgeState, EdgeStore},
};

/// How long after it was last seen an edge's unresolved end is looked at again, by default.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(600);

/// An end that a later cluster state may resolve: an in-cluster address nobody was known to
/// hold at the flow's time.
fn held(p: &Peer) -> bool {
    matches!(p, Peer::Unresolved { reason: UnresolvedReason::UnknownClusterIp | UnresolvedReason::NoPodAtTime, .. })
}

/// An end worth moving an edge to: one that names something in the cluster.
fn resolved(p: &Peer) -> bool {
    matches!(p, Peer::Workload(_) | Peer::Service { .. } | Peer::ApiServer | Peer::Node { .. })
}

/// The key an edge with a held end has under `snap`, when one of those ends now resolves.
pub fn reresolve(snap: &Snapshot, key: &EdgeKey, state: &EdgeState) -> Option<EdgeKey> {
    let at = state.last_seen_ms;
    let again = |p: &Peer, port: u16| match p {
        Peer::Unresolved { ip, .. } if held(p) => Some(snap.resolve_remote(*ip, port, at)).filter(resolved),
        _ => None,
    };
    // The server end was counted on the ports it served; the first names a Service's port.
    let port = state.ports.iter().next().map_or(0, |(p, _)| *p);
    let client = again(&key.client, 0);
    let server = again(&key.server, port);
    if client.is_none() && server.is_none() {
        return None;
    }
    Some(EdgeKey {
        client: client.unwrap_or_else(|| key.client.clone()),
        server: server.unwrap_or_else(|| key.server.clone()),
    })
}

/// Resolves the held ends of edges last seen at or after `since_ms` against `snap`, and moves
/// the edges whose ends now resolve. Returns how many moved.
pub fn sweep(store: &EdgeStore, snap: &Snapshot, since_ms: i64) -> Result<usize, crate::store::StoreError> {
    let candidates = store.edges_where(|k, s| s.last_seen_ms >= since_ms && (held(&k.client) || held(&k.server)));
    let moves: Vec<(EdgeKey, EdgeKey)> =
        candidates.iter().filter_map(|(key, state)| reresolve(snap, key, state).map(|to| (key.clone(), to))).collect();
    if moves.is_empty() {
        return Ok(0);
    }
    store.rekey(&moves)
}

/// Snapshots published within this of each other are swept once, with the newest: a sweep
/// scans the whole map, and the API source can publish several times a second.
const SWEEP_GAP: Duration = Duration::from_secs(2);

/// Runs [`sweep`] after published snapshots (at most once per [`SWEEP_GAP`], with the newest),
/// for the life of the server.
pub async fn run(store: Arc<EdgeStore>, cluster: ClusterHandle, metrics: Arc<Metrics>, hold: Duration) {
    let mut snapshots = cluster.subscribe();
    let hold_ms = i64::try_from(hold.as_millis()).unwrap_or(i64::MAX);
    while snapshots.changed().await.is_ok() {
        tokio::time::sleep(SWEEP_GAP).await;
        let snap = snapshots.borrow_and_update().clone();
        let since = now_ms().saturating_sub(hold_ms);
        let (s, sn) = (store.clone(), snap.clone());
        match tokio::task::spawn_blocking(move || sweep(&s, &sn, since)).await {
            Ok(Ok(0)) => debug!("no held edge resolves with the new cluster state"),
            Ok(Ok(n)) => {
                info!(edges = n, "edges with an end unknown when seen were resolved with the new cluster state");
                metrics.edges_reresolved.inc_by(n as u64);
                metrics.edges.set(store.len() as i64);
            }
            Ok(Err(e)) => warn!(error = %mapper_cluster::error_chain(&e), "cannot move edges resolved again"),
            Err(e) => warn!(error = %e, "the task resolving edges again failed"),
        }
    }
}

#[cfg(test)]
mod tests;
