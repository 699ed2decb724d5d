use mapper_cluster::Workload;

use std::path::Path;

use super::{compact::COPY_CHUNK, *};

fn wl(name: &str, ns: &str) -> Peer {
    Peer::Workload(Workload::new(name, ns, "Deployment"))
}

fn ab(node: &str, boot_id: &str) -> AgentBoot {
    AgentBoot::new(node, boot_id)
}

fn obs(client: &str, server: &str, side: Side, n: u64, at: i64) -> Observation {
    Observation::tcp(EdgeKey { client: wl(client, "team1"), server: wl(server, "team3") }, side, 8080, n, at)
}

#[test]
fn batches_apply_once_and_survive_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let s = EdgeStore::open(dir.path()).expect("open");
        assert_eq!(
            s.apply(&ab("n1", "b1"), 1, &[obs("a", "ledger", Side::Client, 3, 10)]).expect("apply"),
            Applied::New
        );
        assert_eq!(
            s.apply(&ab("n1", "b1"), 1, &[obs("a", "ledger", Side::Client, 3, 10)]).expect("apply"),
            Applied::Duplicate
        );
        assert_eq!(
            s.apply(&ab("n2", "b9"), 1, &[obs("a", "ledger", Side::Server, 3, 12)]).expect("apply"),
            Applied::New
        );
        let e = s.edges();
        assert_eq!(e.len(), 1, "client and server sides of the same connections are one edge");
        assert_eq!(e[0].1.established(), 3, "both sides count the same 3 connections");
        assert!(e[0].1.seen_by_client() && e[0].1.seen_by_server());
    }
    let s = EdgeStore::open(dir.path()).expect("reopen");
    let e = s.edges();
    assert_eq!(e.len(), 1, "edges lost across a reopen");
    assert_eq!(e[0].1.client_established, 3);
    assert_eq!((e[0].1.first_seen_ms, e[0].1.last_seen_ms), (10, 12));
    // The sequence survives too: a resend after the restart is still a duplicate.
    assert_eq!(
        s.apply(&ab("n1", "b1"), 1, &[obs("a", "ledger", Side::Client, 3, 10)]).expect("apply"),
        Applied::Duplicate
    );
}

#[test]
fn reset_and_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = EdgeStore::open(dir.path()).expect("open");
    s.apply(&ab("n", "b"), 1, &[obs("a", "x", Side::Client, 1, 100), obs("b", "y", Side::Client, 1, 5000)])
        .expect("apply");
    assert_eq!(s.expire(1000).expect("expire"), 1);
    assert_eq!(s.len(), 1);
    assert_eq!(s.reset().expect("reset"), 1);
    assert!(s.is_empty());
    drop(s);
    assert!(EdgeStore::open(dir.path()).expect("reopen").is_empty(), "reset not durable");
}

#[test]
fn a_group_commits_once_and_dedupes_within_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = EdgeStore::open(dir.path()).expect("open");
    let one = Observations::new(vec![obs("a", "ledger", Side::Client, 1, 10)]);
    let two = Observations::new(vec![obs("a", "ledger", Side::Client, 2, 20)]);
    let (n1, n2) = (ab("n1", "b"), ab("n2", "c"));
    let group = [
        Batch { agent: &n1, sequence: 1, observations: &one },
        Batch { agent: &n1, sequence: 1, observations: &one }, // the same batch resent
        Batch { agent: &n2, sequence: 1, observations: &two },
        Batch { agent: &n1, sequence: 2, observations: &two },
    ];
    let got = s.apply_group(&group).expect("apply group");
    assert_eq!(got, vec![Applied::New, Applied::Duplicate, Applied::New, Applied::New]);
    assert_eq!(s.edges()[0].1.client_established, 5, "1 + 2 + 2, the resend not counted");
    drop(s);
    let s = EdgeStore::open(dir.path()).expect("reopen");
    assert_eq!(s.edges()[0].1.client_established, 5, "group not durable");
    let again = s.apply_group(&group).expect("apply again");
    assert!(again.iter().all(|a| *a == Applied::Duplicate), "{again:?}");
}

#[test]
fn the_services_dialled_are_kept_with_the_edge() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let s = EdgeStore::open(dir.path()).expect("open");
        let mut through = obs("a", "ledger", Side::Client, 2, 10);
        through.via_service = Some(("team3".into(), "ledger".into()));
        let direct = obs("a", "ledger", Side::Client, 1, 11);
        s.apply(&ab("n", "b"), 1, &[through, direct]).expect("apply");
    }
    let s = EdgeStore::open(dir.path()).expect("reopen");
    let e = s.edges();
    assert_eq!(e.len(), 1, "the same client and server are one edge whichever address was dialled");
    assert_eq!(e[0].1.established(), 3);
    let via: Vec<_> = e[0].1.via_services().collect();
    assert_eq!(via, [("team3", "ledger")]);
    let wire = crate::query::edge_to_pb(&e[0].0.client, &e[0].0.server, &e[0].1, &mapper_cluster::Snapshot::default());
    assert_eq!((wire.via_services[0].name.as_str(), wire.via_services[0].namespace.as_str()), ("ledger", "team3"));
}

#[test]
fn an_earlier_boots_spooled_batches_count_once_after_a_later_boot_reported() {
    // What a restarted agent does: its new boot reports first, then it resends
    // what the killed agent left in its spool, under the killed agent's boot id
    // (one of them possibly applied already, its acknowledgement lost).
    let dir = tempfile::tempdir().expect("tempdir");
    let s = EdgeStore::open(dir.path()).expect("open");
    let o = |n| [obs("a", "ledger", Side::Client, n, 10)];
    assert_eq!(s.apply(&ab("n1", "old"), 1, &o(1)).expect("apply"), Applied::New);
    assert_eq!(s.apply(&ab("n1", "new"), 1, &o(10)).expect("apply"), Applied::New);
    assert_eq!(s.apply(&ab("n1", "new"), 2, &o(20)).expect("apply"), Applied::New);
    assert_eq!(
        s.apply(&ab("n1", "old"), 1, &o(1)).expect("apply"),
        Applied::Duplicate,
        "the one in flight when killed"
    );
    assert_eq!(s.apply(&ab("n1", "old"), 2, &o(100)).expect("apply"), Applied::New);
    assert_eq!(s.apply(&ab("n1", "old"), 3, &o(1000)).expect("apply"), Applied::New);
    assert_eq!(s.apply(&ab("n1", "new"), 3, &o(5)).expect("apply"), Applied::New);
    assert_eq!(s.edges()[0].1.client_established, 1136);
}

#[test]
fn counts_saturate_instead_of_wrapping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = EdgeStore::open(dir.path()).expect("open");
    s.apply(&ab("n1", "b1"), 1, &[obs("a", "ledger", Side::Client, u64::MAX - 1, 10)]).expect("apply");
    s.apply(&ab("n1", "b1"), 2, &[obs("a", "ledger", Side::Client, 5, 11)]).expect("apply");
    assert_eq!(s.edges()[0].1.established(), u64::MAX, "one report must not wipe an edge's count");
}

#[test]
fn a_record_written_when_the_lists_were_sets_reads_the_same() {
    // An edge as stores written with `BTreeSet` ports, names and Services hold it.
    let old = r#"{"ports":[[53,"Udp"],[443,"Tcp"]],"client_established":4,"client_failed":1,
        "server_established":0,"server_failed":0,"first_seen_ms":10,"last_seen_ms":20,
        "dns_names":["api.example.com","cdn.example.com"],"via_services":[["team3","ledger"]]}"#;
    let state: EdgeState = serde_json::from_str(old).expect("an old record decodes");
    assert_eq!(&*state.ports, [(53, Proto::Udp), (443, Proto::Tcp)]);
    assert_eq!((state.established(), state.failed()), (4, 1));
    assert_eq!(state.dns_names().collect::<Vec<_>>(), ["api.example.com", "cdn.example.com"]);
    assert_eq!(state.via_services().collect::<Vec<_>>(), [("team3", "ledger")]);
    // A record from before DNS names and Services were kept.
    let older = r#"{"ports":[[80,"Tcp"]],"client_established":1,"client_failed":0,
        "server_established":1,"server_failed":0,"first_seen_ms":1,"last_seen_ms":2}"#;
    let state: EdgeState = serde_json::from_str(older).expect("an older record decodes");
    assert_eq!(state.dns_names().len() + state.via_services().len(), 0);
    // What is written now is what the sets wrote: the same JSON arrays.
    let rewritten: serde_json::Value =
        serde_json::to_value(serde_json::from_str::<EdgeState>(old).expect("decode")).expect("encode");
    let expected: serde_json::Value = serde_json::from_str(old).expect("old JSON");
    assert_eq!(rewritten, expected);
}

#[test]
fn ports_names_and_services_stay_sorted_distinct_and_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = EdgeStore::open(dir.path()).expect("open");
    let mut batch = Vec::new();
    for (i, port) in [443u16, 80, 443, 53].into_iter().enumerate() {
        let mut o = obs("a", "ledger", Side::Client, 1, 10 + i as i64);
        o.port = port;
        o.dns_names = (0..20).map(|n| format!("host{:02}.example.com", (n * 7 + i * 5) % 50)).collect();
        o.via_service = Some(("team3".into(), if i % 2 == 0 { "ledger" } else { "books" }.into()));
        batch.push(o);
    }
    s.apply(&ab("n", "b"), 1, &batch).expect("apply");
    let e = s.edges();
    let state = &e[0].1;
    assert_eq!(&*state.ports, [(53, Proto::Tcp), (80, Proto::Tcp), (443, Proto::Tcp)]);
    let names: Vec<&str> = state.dns_names().collect();
    assert_eq!(names.len(), MAX_DNS_NAMES_PER_EDGE, "names beyond the bound are not kept");
    assert!(names.windows(2).all(|w| w[0] < w[1]), "names sorted and distinct: {names:?}");
    assert_eq!(state.via_services().collect::<Vec<_>>(), [("team3", "books"), ("team3", "ledger")]);
    // Two edges naming the same Service share one copy of its name.
    s.apply(
        &ab("n", "b"),
        2,
        &[{
            let mut o = obs("b", "ledger", Side::Client, 1, 30);
            o.via_service = Some(("team3".into(), "ledger".into()));
            o
        }],
    )
    .expect("apply");
    let e = s.edges();
    let ledger: Vec<&Arc<str>> =
        e.iter().flat_map(|(_, st)| st.via_services.iter().map(|(_, n)| n)).filter(|n| &***n == "ledger").collect();
    assert_eq!(ledger.len(), 2);
    assert!(Arc::ptr_eq(ledger[0], ledger[1]), "the name is shared, not copied per edge");
}

#[test]
fn node_and_boot_id_cannot_collide() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = EdgeStore::open(dir.path()).expect("open");
    assert_eq!(s.apply(&ab("x/y", "z"), 1, &[obs("a", "ledger", Side::Client, 1, 10)]).expect("apply"), Applied::New);
    assert_eq!(
        s.apply(&ab("x", "y/z"), 1, &[obs("a", "ledger", Side::Client, 2, 10)]).expect("apply"),
        Applied::New,
        "another boot: `x/y` + `z` is not `x` + `y/z`"
    );
    assert_eq!(s.edges()[0].1.client_established, 3);
}

#[test]
fn a_sequence_never_applied_is_not_a_duplicate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = ab("n1", "b1");
    {
        let s = EdgeStore::open(dir.path()).expect("open");
        let o = |n| [obs("a", "ledger", Side::Client, n, 10)];
        assert_eq!(s.apply(&b, 1, &o(1)).expect("apply"), Applied::New);
        assert_eq!(s.apply(&b, 5, &o(10)).expect("apply"), Applied::New);
        assert_eq!(s.apply(&b, 4, &o(100)).expect("apply"), Applied::New, "4 after 5: never applied, so applied now");
        assert_eq!(s.apply(&b, 4, &o(100)).expect("apply"), Applied::Duplicate);
        assert_eq!(s.edges()[0].1.client_established, 111);
    }
    // What was applied is remembered across a reopen, and what was not is still open.
    let s = EdgeStore::open(dir.path()).expect("reopen");
    let o = [obs("a", "ledger", Side::Client, 1000, 10)];
    for seq in [1, 4, 5] {
        assert_eq!(s.apply(&b, seq, &o).expect("apply"), Applied::Duplicate, "sequence {seq}");
    }
    assert_eq!(s.apply(&b, 2, &o).expect("apply"), Applied::New);
    assert_eq!(s.apply(&b, 3, &o).expect("apply"), Applied::New);
    assert_eq!(s.edges()[0].1.client_established, 2111);
}

#[test]
fn a_store_of_the_earlier_format_is_migrated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = EdgeKey { client: wl("a", "team1"), server: wl("ledger", "team3") };
    {
        // The earlier layout: `node/boot_id` → highest sequence, and the same edges table.
        let db = Database::create(dir.path().join("edges.redb")).expect("create");
        let txn = db.begin_write().expect("write");
        {
            let mut agents = txn.open_table(AGENTS_V1).expect("agents");
            agents.insert("n1/b1", 7).expect("insert");
            let mut edges = txn.open_table(EDGES_JSON_V1).expect("edges");
            let state = EdgeState { client_established: 4, last_seen_ms: 10, ..Default::default() };
            edges.insert(encode(&key).as_slice(), encode(&state).as_slice()).expect("insert");
        }
        txn.commit().expect("commit");
    }
    let s = EdgeStore::open(dir.path()).expect("open the earlier store");
    assert_eq!(s.edges()[0].1.client_established, 4, "its edges are read");
    assert_eq!(s.boots().expect("boots"), 1);
    let o = [obs("a", "ledger", Side::Client, 1, 10)];
    assert_eq!(s.apply(&ab("n1", "b1"), 7, &o).expect("apply"), Applied::Duplicate, "its sequences are kept");
    assert_eq!(s.apply(&ab("n1", "b1"), 8, &o).expect("apply"), Applied::New);
    drop(s);
    let s = EdgeStore::open(dir.path()).expect("reopen");
    assert_eq!(s.edges()[0].1.client_established, 5);
}

#[test]
fn edges_in_json_are_migrated_and_two_spellings_of_one_key_merged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = br#"{"client":{"Workload":{"name":"a","namespace":"team1","kind":""}},"server":{"Workload":{"name":"ledger","namespace":"team3","kind":"Deployment"}}}"#;
    let key = EdgeKey { client: Peer::Workload(Workload::without_kind("a", "team1")), server: wl("ledger", "team3") };
    {
        let db = Database::create(dir.path().join("edges.redb")).expect("create");
        let txn = db.begin_write().expect("write");
        {
            let mut edges = txn.open_table(EDGES_JSON_V1).expect("edges");
            let state = EdgeState { client_established: 4, last_seen_ms: 10, ..Default::default() };
            edges.insert(old.as_slice(), encode(&state).as_slice()).expect("insert");
            // The same edge written later, without the empty kind: the two are one edge.
            let state = EdgeState { client_established: 1, last_seen_ms: 20, ..Default::default() };
            edges.insert(encode(&key).as_slice(), encode(&state).as_slice()).expect("insert");
        }
        txn.commit().expect("commit");
    }
    let s = EdgeStore::open(dir.path()).expect("open");
    let edges = s.edges();
    assert_eq!(edges.len(), 1);
    assert_eq!((&edges[0].0, edges[0].1.client_established, edges[0].1.last_seen_ms), (&key, 5, 20));
    drop(s);
    let db = Database::open(dir.path().join("edges.redb")).expect("open the file");
    let read = redb::ReadableDatabase::begin_read(&db).expect("read");
    let table = read.open_table(EDGES).expect("edges");
    let rows: Vec<Vec<u8>> = table.iter().expect("iter").map(|r| r.expect("row").0.value().to_vec()).collect();
    assert_eq!(rows, [edge_bytes(&key)], "one row, in the compact encoding");
    assert!(
        !redb::ReadTransaction::list_tables(&read)
            .expect("tables")
            .any(|t| redb::TableHandle::name(&t) == redb::TableHandle::name(&EDGES_JSON_V1)),
        "the JSON table is gone"
    );
    let json = encode(&key).len() + encode(&edges[0].1).len();
    let compact = edge_bytes(&key).len() + edge_bytes(&edges[0].1).len();
    assert!(compact * 2 < json, "{compact} bytes, {json} in JSON");
}

#[test]
fn boots_gone_quiet_are_pruned_and_their_number_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = EdgeStore::open(dir.path()).expect("open");
    let o = [obs("a", "ledger", Side::Client, 1, 10)];
    for i in 0..5 {
        s.apply(&ab("n", &format!("boot{i}")), 1, &o).expect("apply");
    }
    assert_eq!(s.prune_boots(0, 3).expect("prune"), 2, "beyond the bound of 3 the oldest go");
    assert_eq!(s.boots().expect("boots"), 3);
    assert_eq!(s.apply(&ab("n", "boot0"), 1, &o).expect("apply"), Applied::New, "boot0 was forgotten");
    assert_eq!(s.apply(&ab("n", "boot4"), 1, &o).expect("apply"), Applied::Duplicate, "boot4 was kept");
    assert_eq!(s.prune_boots(wall_ms() + 1, 100).expect("prune"), 4, "all older than the cutoff");
    assert_eq!(s.boots().expect("boots"), 0);
}

fn many(n: usize, at: i64) -> Vec<Observation> {
    (0..n).map(|i| obs(&format!("client-{i}"), "ledger", Side::Client, 1, at)).collect()
}

#[test]
fn retention_in_chunks_and_the_file_compacted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 3 * EXPIRE_CHUNK + 17;
    // The survivors sit on pages all through the file, so its end cannot simply be cut off,
    // and only compaction gives the space back.
    let (s, kept) = sparse_store(dir.path(), n);
    let before = s.file_bytes();
    assert!(before >= COMPACT_MIN_FILE_BYTES, "the test must pass the threshold: {before}");
    assert_eq!(s.expire(1000).expect("expire"), n - kept);
    let after = s.file_bytes();
    eprintln!("store file: {before} bytes with {n} edges, {after} after expiring {}", n - kept);
    assert!(after < before / 4, "space not reclaimed: {before} → {after}");
    assert_eq!(s.len(), kept);
    drop(s);
    let s = EdgeStore::open(dir.path()).expect("reopen after compaction");
    assert_eq!(s.len(), kept, "the compacted file holds what was kept");
    assert_eq!(s.apply(&ab("n", "b"), 1, &[]).expect("apply"), Applied::Duplicate, "and the boots");
}

#[test]
fn a_coalesced_batch_changes_the_store_as_its_flows_do() {
    // Flows of few edges, sides, ports and Services, with counts near the top, times in any
    // order and DNS names past an edge's bound: the store must end the same either way.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let batches: Vec<Vec<Observation>> = (0..6)
        .map(|_| {
            (0..400)
                .map(|_| {
                    let side = if next(2) == 0 { Side::Client } else { Side::Server };
                    let mut o = obs(&format!("c{}", next(3)), &format!("s{}", next(3)), side, 1 + next(5), 0);
                    o.port = 8080 + next(2) as u16;
                    o.established = if next(50) == 0 { u64::MAX - next(3) } else { next(9) };
                    o.failed = next(3);
                    o.first_seen_ms = 1_000 + next(1_000) as i64;
                    o.last_seen_ms = o.first_seen_ms + next(1_000) as i64;
                    o.dns_names = (0..next(3)).map(|_| format!("n{}.example.com", next(40))).collect();
                    if next(3) == 0 {
                        o.via_service = Some(("team3".into(), format!("svc{}", next(2)).into()));
                    }
                    o
                })
                .collect()
        })
        .collect();
    let (d1, d2) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let (flows, coalesced) = (EdgeStore::open(d1.path()).expect("open"), EdgeStore::open(d2.path()).expect("open"));
    let mut fewer = 0;
    for (i, b) in batches.into_iter().enumerate() {
        flows.apply(&ab("n", "b"), i as u64 + 1, &b).expect("apply");
        let n = b.len();
        let c = Observations::new(b).coalesce();
        fewer += n - c.len();
        let batch = Batch { agent: &ab("n", "b"), sequence: i as u64 + 1, observations: &c };
        assert_eq!(coalesced.apply_group(&[batch]).expect("apply"), [Applied::New]);
    }
    assert!(fewer > 400, "only {fewer} of 2 400 flows coalesced");
    assert_eq!(flows.edges(), coalesced.edges());
    assert!(flows.edges().iter().any(|(_, e)| e.dns_names.len() == MAX_DNS_NAMES_PER_EDGE), "the bound was reached");
}

#[test]
fn a_batch_of_distinct_flows_is_left_as_it_came() {
    let batch: Vec<Observation> =
        (0..50).map(|i| obs(&format!("c{}", i % 7), &format!("s{i}"), Side::Client, 1, 0)).collect();
    let batch = Observations::new(batch);
    assert_eq!(batch.clone().coalesce(), batch);
}

/// A store of `n` edges (names long enough to pass the compaction threshold) of which one in
/// 40 is recent (seen at 5000) and the rest old (100); returns it and how many are recent.
fn sparse_store(dir: &Path, n: usize) -> (EdgeStore, usize) {
    let s = EdgeStore::open(dir).expect("open");
    let b = ab("n", "b");
    let mut kept = 0;
    for (i, chunk) in many(n, 100).chunks(1000).enumerate() {
        let mut chunk = chunk.to_vec();
        for (j, o) in chunk.iter_mut().enumerate() {
            o.dns_names = vec![format!("{}.{}", "x".repeat(200), i)];
            if j % 40 == 0 {
                o.last_seen_ms = 5000;
                kept += 1;
            }
        }
        s.apply(&b, i as u64 + 1, &chunk).expect("apply");
    }
    (s, kept)
}

/// What a store holds, as comparable values: every edge and, per boot, the sequences 1..=50
/// it has applied.
fn contents(s: &EdgeStore, boots: &[AgentBoot]) -> (Vec<(EdgeKey, EdgeState)>, Vec<Vec<u64>>) {
    let w = s.lock_writer();
    let db = w.db.as_ref().expect("open");
    let read = redb::ReadableDatabase::begin_read(db).expect("read");
    let table = read.open_table(BOOTS).expect("boots");
    let applied = boots
        .iter()
        .map(|b| match table.get(open::boot_key(b)).expect("get") {
            Some(r) => {
                let r: BootRecord = serde_json::from_slice(r.value()).expect("record");
                (1..=50).filter(|q| r.applied(*q)).collect()
            }
            None => Vec::new(),
        })
        .collect();
    drop(w);
    (s.edges(), applied)
}

#[test]
fn compaction_copies_while_batches_land_and_keeps_every_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, kept) = sparse_store(dir.path(), 3 * COPY_CHUNK + 500);
    let old = s.remove_expired(1000).expect("expire");
    assert!(old > 0 && s.len() == kept);
    let before = s.file_bytes();
    // Between the copy's chunks, with the writer free: new edges (more than a chunk of them in
    // one go, so a round copies them again before the switch), a kept edge seen again, an
    // edge removed, a boot applying batches and one forgotten.
    let (busy, quiet) = (ab("n", "busy"), ab("n", "b"));
    let mut step = 0u64;
    let mut between = |st: &EdgeStore| {
        step += 1;
        match step {
            1 => {
                // Another sweep's compaction meanwhile does not start, nor touch this one's copy.
                let other = st.copy_and_switch(&compact::compacting_path(st.path()), &mut |_| {});
                assert!(matches!(other, Ok(None)), "a second compaction started during the first");
                let fresh: Vec<Observation> =
                    (0..COPY_CHUNK + 300).map(|i| obs(&format!("new-{i}"), "ledger", Side::Server, 2, 6000)).collect();
                assert_eq!(st.apply(&busy, 1, &fresh).expect("apply"), Applied::New);
            }
            2 => {
                let again = obs("client-0", "ledger", Side::Client, 7, 7000);
                assert_eq!(st.apply(&busy, 3, &[again]).expect("apply"), Applied::New);
                assert_eq!(st.remove_expired(5500).expect("expire"), kept - 1, "the recent ones but client-0, now old");
            }
            3 => {
                assert_eq!(st.prune_boots(wall_ms() + 1, 100).expect("prune"), 2, "both boots forgotten");
                let last = obs("last", "ledger", Side::Client, 1, 8000);
                assert_eq!(st.apply(&busy, 2, &[last]).expect("apply"), Applied::New);
            }
            _ => {}
        }
    };
    let tmp = compact::compacting_path(s.path());
    let done = s.copy_and_switch(&tmp, &mut between).ok().flatten().expect("compacted");
    assert!(step >= 3, "the copy took {step} chunks");
    assert!(done.rows_at_switch <= COPY_CHUNK, "{done:?}: the rounds copied what changed before the switch");
    assert!(done.rows_copied > COPY_CHUNK, "{done:?}");
    assert!(!tmp.exists(), "the copy took the store's name");
    assert!(s.file_bytes() < before / 2, "{before} → {}", s.file_bytes());
    let boots = [busy.clone(), quiet.clone()];
    let live = contents(&s, &boots);
    assert_eq!(live.0.len(), COPY_CHUNK + 300 + 2, "the new edges, the re-seen one and the last");
    assert_eq!(live.1, [vec![2], vec![]], "busy's batch 2 after it was forgotten; b forgotten");
    // Batches keep landing in the new file, and it holds exactly what memory does.
    assert_eq!(s.apply(&busy, 2, &[]).expect("apply"), Applied::Duplicate);
    s.apply(&busy, 4, &[obs("after", "ledger", Side::Client, 1, 9000)]).expect("apply");
    let live = contents(&s, &boots);
    drop(s);
    let s = EdgeStore::open(dir.path()).expect("reopen the compacted store");
    assert_eq!(contents(&s, &boots), live, "the compacted file holds every change made during the copy");
}

#[test]
fn a_reset_or_a_failed_write_during_the_copy_gives_the_compaction_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, kept) = sparse_store(dir.path(), 2 * COPY_CHUNK + 100);
    s.remove_expired(1000).expect("expire");
    let tmp = compact::compacting_path(s.path());
    let file = s.file_bytes();
    let mut between = |st: &EdgeStore| {
        let _ = st.reset();
    };
    assert!(matches!(s.copy_and_switch(&tmp, &mut between), Err(compact::Stop::Abandoned)));
    assert!(s.lock_writer().compacting.is_none());
    assert_eq!(s.file_bytes(), file, "the store's file stays");
    s.apply(&ab("n", "b2"), 1, &[obs("a", "x", Side::Client, 1, 100)]).expect("apply after");
    drop(s);
    let s = EdgeStore::open(dir.path()).expect("reopen");
    assert_eq!(s.len(), 1, "the reset and the batch after it, nothing of the copy ({kept} were kept before)");
    assert!(!tmp.exists(), "a partial copy is removed at the next open");
    // A partial copy left by a process that ended mid-way is removed when the store opens.
    drop(s);
    std::fs::write(&tmp, b"partial").expect("write");
    let s = EdgeStore::open(dir.path()).expect("reopen");
    assert!(!tmp.exists());
    assert_eq!(s.len(), 1);
}

#[test]
fn a_stored_key_is_written_and_ordered_as_the_edge_key() {
    let keys = [
        EdgeKey { client: wl("a", "team1"), server: wl("ledger", "team3") },
        EdgeKey { client: wl("a", "team1"), server: Peer::External { ip: "192.0.2.1".parse().expect("ip") } },
        EdgeKey { client: Peer::Node { name: "n1".into() }, server: Peer::ApiServer },
    ];
    let mut shared = Shared::default();
    for k in &keys {
        let stored = shared.key(k);
        assert_eq!(edge_bytes(&stored), edge_bytes(k), "{k:?}");
        assert_eq!(&stored.to_key(), k);
        assert_eq!(StoredKey::probe(k), stored);
    }
    for a in &keys {
        for b in &keys {
            assert_eq!(shared.key(a).cmp(&shared.key(b)), a.cmp(b), "{a:?} against {b:?}");
        }
    }
}

#[test]
fn edges_share_their_ends_and_lists_until_none_holds_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = EdgeStore::open(dir.path()).expect("open");
    // 200 edges: 20 clients × 10 servers, all on one port, every one dialled through one Service.
    let o: Vec<Observation> = (0..200)
        .map(|i| {
            let mut o = obs(&format!("c{}", i % 20), &format!("s{}", i / 20), Side::Client, 1, 100);
            o.via_service = Some(("team3".into(), "api".into()));
            o
        })
        .collect();
    s.apply(&ab("n", "b"), 1, &o).expect("apply");
    assert_eq!(s.len(), 200);
    let counts = || s.writer.lock().expect("writer").shared.counts();
    let (peers, ports, names) = counts();
    assert_eq!((peers, ports), (30, 1), "20 clients and 10 servers; one list of ports");
    // c0…c19, s0…s9, team1, team3, Deployment, api.
    assert_eq!(names, 34);
    {
        let map = s.read();
        let mut it = map.iter();
        let (k0, s0) = it.next().expect("an edge");
        for (k, st) in it {
            assert!(Arc::ptr_eq(&st.ports, &s0.ports) && Arc::ptr_eq(&st.via_services, &s0.via_services));
            if k.client == k0.client {
                assert!(Arc::ptr_eq(&k.client, &k0.client), "one copy of each end");
            }
        }
    }
    // Reopened, the edges share again.
    drop(s);
    let s = EdgeStore::open(dir.path()).expect("reopen");
    assert_eq!(s.writer.lock().expect("writer").shared.counts(), (30, 1, 34));
    // Gone, they are forgotten.
    assert_eq!(s.expire(1000).expect("expire"), 200);
    assert_eq!(s.writer.lock().expect("writer").shared.counts(), (0, 0, 0));
}

mod damage;
mod full;

#[test]
fn a_batch_keeps_each_borrowed_end_once_and_equal_ends_still_make_one_edge() {
    use mapper_cluster::End;
    let (a, ledger) = (Workload::new("a", "team1", "Deployment"), Workload::new("ledger", "team3", "Deployment"));
    // Equal to `ledger`, at another address (as a deleted pod's remembered workload is).
    let ledger_again = ledger.clone();
    let (namespace, name): (Arc<str>, Arc<str>) = ("team3".into(), "ledger".into());
    let item = |client, server, via_service| Item {
        client,
        server,
        side: Side::Client,
        port: 8080,
        proto: Proto::Tcp,
        established: 2,
        failed: 0,
        first_seen_ms: 10,
        last_seen_ms: 10,
        dns_names: Vec::new(),
        via_service,
    };
    let mut b = Builder::default();
    for _ in 0..3 {
        let (client, server) = (b.end(End::Workload(&a)), b.end(End::Workload(&ledger)));
        let via = b.shared_service(&namespace, &name);
        b.push(item(client, server, Some(via)));
    }
    let (client, server) = (b.end(End::Workload(&a)), b.end(End::Workload(&ledger_again)));
    b.push(item(client, server, None));
    let external = b.end(End::Peer(Peer::External { ip: "192.0.2.1".parse().expect("ip") }));
    assert_eq!(external, b.end(End::Peer(Peer::External { ip: "192.0.2.1".parse().expect("ip") })));
    let batch = b.finish();
    assert_eq!(batch.ends.len(), 4, "a, ledger, ledger at its other address, the external address");
    assert_eq!(batch.services.len(), 1);
    let batch = batch.coalesce();
    assert_eq!(batch.len(), 2, "the three flows through the Service made one; the fourth left apart");
    assert_eq!(batch.items[0].established, 6);
    let dir = tempfile::tempdir().expect("tempdir");
    let s = EdgeStore::open(dir.path()).expect("open");
    let group = [Batch { agent: &ab("n", "b"), sequence: 1, observations: &batch }];
    assert_eq!(s.apply_group(&group).expect("apply"), [Applied::New]);
    let edges = s.edges();
    assert_eq!(edges.len(), 1, "equal ends at two places are one edge: {edges:?}");
    assert_eq!(edges[0].1.client_established, 8);
    assert_eq!(edges[0].1.via_services().collect::<Vec<_>>(), [("team3", "ledger")]);
}
