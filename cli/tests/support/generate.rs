//! A map of any size written straight into a store with mapper-server's `EdgeStore` (ingesting a
//! million distinct edges through the API would take far longer than reading them), for the
//! large-map tests and the query benchmark.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use mapper_cluster::{Peer, Workload};
use mapper_server::store::{EdgeKey, EdgeStore, Observation, Proto, Side};

/// Servers each client calls.
pub const SERVERS_PER_CLIENT: usize = 50;
/// Namespaces the clients are spread over (`team1`…).
pub const NAMESPACES: usize = 4;

/// Client number `c`: `client-NNNNNN` in `team1`…`team4`.
pub fn client(c: usize) -> Workload {
    Workload::new(format!("client-{c:06}"), format!("team{}", c % NAMESPACES + 1), "Deployment")
}

/// The `s`-th server of a client: a workload, or every tenth an address outside the cluster.
pub fn server(c: usize, s: usize) -> Peer {
    if s % 10 == 9 {
        let n = c * SERVERS_PER_CLIENT + s;
        Peer::External { ip: IpAddr::V4(Ipv4Addr::new(198, 18, (n >> 8) as u8, n as u8)) }
    } else {
        Peer::Workload(Workload::new(format!("server-{s:02}"), format!("team{}", s % NAMESPACES + 1), "Deployment"))
    }
}

/// Writes `edges` edges (clients of [`SERVERS_PER_CLIENT`] servers each) into `<data_dir>/db`,
/// last seen at `at_ms`.
pub fn write_store(data_dir: &Path, edges: usize, at_ms: i64) {
    let store = EdgeStore::open(&data_dir.join("db")).unwrap_or_else(|e| panic!("open the store: {e}"));
    let mut batch = Vec::with_capacity(20_000);
    let mut sequence = 0;
    for i in 0..edges {
        let (c, s) = (i / SERVERS_PER_CLIENT, i % SERVERS_PER_CLIENT);
        batch.push(Observation {
            key: EdgeKey { client: Peer::Workload(client(c)), server: server(c, s) },
            side: Side::Client,
            port: 8080 + (s % 3) as u16,
            proto: Proto::Tcp,
            established: 1 + (i % 7) as u64,
            failed: 0,
            first_seen_ms: at_ms - 1_000,
            last_seen_ms: at_ms,
            dns_names: Vec::new(),
            via_service: None,
        });
        if batch.len() == batch.capacity() || i + 1 == edges {
            sequence += 1;
            store
                .apply(&mapper_server::store::AgentBoot::new("generator", "1"), sequence, &batch)
                .unwrap_or_else(|e| panic!("write the store: {e}"));
            batch.clear();
        }
    }
}
