use mapper_cluster::Workload;

use super::*;

fn wl(name: &str, ns: &str) -> Peer {
    Peer::Workload(Workload { name: name.into(), namespace: ns.into(), kind: "Deployment".into() })
}

fn obs(client: &str, server: &str, side: Side, n: u64, at: i64) -> Observation {
    Observation {
        key: EdgeKey { client: wl(client, "team1"), server: wl(server, "team3") },
        side,
        port: 8080,
        proto: Proto::Tcp,
        established: n,
        failed: 0,
        first_seen_ms: at,
        last_seen_ms: at,
        dns_names: vec![],
        via_service: None,
    }
}

#[test]
fn batches_apply_once_and_survive_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let s = EdgeStore::open(dir.path()).expect("open");
        assert_eq!(s.apply("n1/b1", 1, &[obs("a", "ledger", Side::Client, 3, 10)]).expect("apply"), Applied::New);
        assert_eq!(s.apply("n1/b1", 1, &[obs("a", "ledger", Side::Client, 3, 10)]).expect("apply"), Applied::Duplicate);
        assert_eq!(s.apply("n2/b9", 1, &[obs("a", "ledger", Side::Server, 3, 12)]).expect("apply"), Applied::New);
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
    assert_eq!(s.apply("n1/b1", 1, &[obs("a", "ledger", Side::Client, 3, 10)]).expect("apply"), Applied::Duplicate);
}

#[test]
fn reset_and_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = EdgeStore::open(dir.path()).expect("open");
    s.apply("n/b", 1, &[obs("a", "x", Side::Client, 1, 100), obs("b", "y", Side::Client, 1, 5000)]).expect("apply");
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
    let one = [obs("a", "ledger", Side::Client, 1, 10)];
    let two = [obs("a", "ledger", Side::Client, 2, 20)];
    let group = [
        Batch { agent: "n1/b", sequence: 1, observations: &one },
        Batch { agent: "n1/b", sequence: 1, observations: &one }, // the same batch resent
        Batch { agent: "n2/c", sequence: 1, observations: &two },
        Batch { agent: "n1/b", sequence: 2, observations: &two },
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
        s.apply("n/b", 1, &[through, direct]).expect("apply");
    }
    let s = EdgeStore::open(dir.path()).expect("reopen");
    let e = s.edges();
    assert_eq!(e.len(), 1, "the same client and server are one edge whichever address was dialled");
    assert_eq!(e[0].1.established(), 3);
    let via: Vec<_> = e[0].1.via_services().collect();
    assert_eq!(via, [("team3", "ledger")]);
    let wire = crate::query::edge_to_pb(&e[0].0, &e[0].1);
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
    assert_eq!(s.apply("n1/old", 1, &o(1)).expect("apply"), Applied::New);
    assert_eq!(s.apply("n1/new", 1, &o(10)).expect("apply"), Applied::New);
    assert_eq!(s.apply("n1/new", 2, &o(20)).expect("apply"), Applied::New);
    assert_eq!(s.apply("n1/old", 1, &o(1)).expect("apply"), Applied::Duplicate, "the one in flight when killed");
    assert_eq!(s.apply("n1/old", 2, &o(100)).expect("apply"), Applied::New);
    assert_eq!(s.apply("n1/old", 3, &o(1000)).expect("apply"), Applied::New);
    assert_eq!(s.apply("n1/new", 3, &o(5)).expect("apply"), Applied::New);
    assert_eq!(s.edges()[0].1.client_established, 1136);
}

#[test]
fn counts_saturate_instead_of_wrapping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = EdgeStore::open(dir.path()).expect("open");
    s.apply("n1/b1", 1, &[obs("a", "ledger", Side::Client, u64::MAX - 1, 10)]).expect("apply");
    s.apply("n1/b1", 2, &[obs("a", "ledger", Side::Client, 5, 11)]).expect("apply");
    assert_eq!(s.edges()[0].1.established(), u64::MAX, "one report must not wipe an edge's count");
}

#[test]
fn a_record_written_when_the_lists_were_sets_reads_the_same() {
    // An edge as stores written with `BTreeSet` ports, names and Services hold it.
    let old = r#"{"ports":[[53,"Udp"],[443,"Tcp"]],"client_established":4,"client_failed":1,
        "server_established":0,"server_failed":0,"first_seen_ms":10,"last_seen_ms":20,
        "dns_names":["api.example.com","cdn.example.com"],"via_services":[["team3","ledger"]]}"#;
    let state: EdgeState = serde_json::from_str(old).expect("an old record decodes");
    assert_eq!(state.ports.as_slice(), [(53, Proto::Udp), (443, Proto::Tcp)]);
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
    s.apply("n/b", 1, &batch).expect("apply");
    let e = s.edges();
    let state = &e[0].1;
    assert_eq!(state.ports.as_slice(), [(53, Proto::Tcp), (80, Proto::Tcp), (443, Proto::Tcp)]);
    let names: Vec<&str> = state.dns_names().collect();
    assert_eq!(names.len(), MAX_DNS_NAMES_PER_EDGE, "names beyond the bound are not kept");
    assert!(names.windows(2).all(|w| w[0] < w[1]), "names sorted and distinct: {names:?}");
    assert_eq!(state.via_services().collect::<Vec<_>>(), [("team3", "books"), ("team3", "ledger")]);
    // Two edges naming the same Service share one copy of its name.
    s.apply(
        "n/b",
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
