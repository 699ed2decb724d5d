//! What a broken inventory loads with: duplicate pod UIDs, pods without one, unparsable IPs
//! (warnings naming file, document and pod), and texts no load may take long over (errors).

use std::path::Path;

use mapper_cluster::{Inventory, InventoryWarning, ResolveOptions, check_inventory_text};

const T0: i64 = 1_748_779_200_000;

fn pod(name: &str, uid: Option<&str>, ip: &str) -> String {
    let uid = uid.map(|u| format!("  uid: {u}\n")).unwrap_or_default();
    format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: shop\n{uid}status:\n  podIP: {ip}\n")
}

fn messages(warnings: &[InventoryWarning]) -> Vec<String> {
    warnings.iter().map(ToString::to_string).collect()
}

#[test]
fn a_duplicate_uid_keeps_the_first_pod_and_warns() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let text = [pod("a", Some("u-1"), "10.244.1.5"), pod("b", Some("u-1"), "10.244.1.6")].join("---\n");
    std::fs::write(dir.path().join("pods.yaml"), text).unwrap_or_else(|e| panic!("write: {e}"));
    let inventory = Inventory::load_at(vec![dir.path().to_owned()], ResolveOptions::default(), T0)
        .unwrap_or_else(|e| panic!("a duplicate does not stop the load: {e}"));
    let file = dir.path().join("pods.yaml");
    let (warnings, count) = inventory.warnings();
    assert_eq!(count, 1);
    assert_eq!(
        messages(warnings),
        [format!(
            "{0}: document 2: pod shop/b: uid u-1 is already pod shop/a at {0}: document 1; this pod is left out",
            file.display()
        )]
    );
    let snapshot = inventory.snapshot();
    assert_eq!(snapshot.pod_count(), 1);
    assert_eq!(snapshot.workload_of_pod("u-1").map(|w| w.name), Some("a".into()), "the first one is kept");
}

#[test]
fn a_pod_without_uid_or_with_a_bad_ip_is_warned_about() {
    let text = [pod("a", None, "10.244.1.999"), pod("b", Some("u-2"), "10.244.1.7")].join("---\n");
    let warnings = check_inventory_text(Path::new("dump.yaml"), &text, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        messages(&warnings),
        [
            "dump.yaml: document 1: pod shop/a: status.podIP \"10.244.1.999\" is not an IP address; ignored",
            "dump.yaml: document 1: pod shop/a: no metadata.uid; identified by namespace/name instead",
        ]
    );
    let list = "apiVersion: v1\nkind: PodList\nitems:\n- metadata: {name: c, uid: u-3}\n  status: {podIPs: [{ip: 10.0.0.1}, {ip: nope}]}\n";
    let warnings = check_inventory_text(Path::new("list.yaml"), list, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        messages(&warnings),
        ["list.yaml: document 1, items[0]: pod default/c: status.podIPs[1].ip \"nope\" is not an IP address; ignored"]
    );
}

#[test]
fn a_good_pod_has_no_warning_and_a_bom_is_accepted() {
    let text = format!("\u{feff}{}", pod("a", Some("u-1"), "10.244.1.5"));
    assert_eq!(check_inventory_text(Path::new("a.yaml"), &text, &[]).map(|w| w.len()).ok(), Some(0));
    let json = "\u{feff}{\"apiVersion\": \"v1\", \"kind\": \"Pod\", \"metadata\": {\"name\": \"a\", \"uid\": \"u\"}}";
    assert_eq!(check_inventory_text(Path::new("a.json"), json, &[]).map(|w| w.len()).ok(), Some(0));
}

#[test]
fn deep_nesting_is_an_error_naming_the_place() {
    let text = format!(
        "{}---\napiVersion: v1\nkind: ConfigMap\ndata: {}\n",
        pod("a", Some("u"), "10.0.0.1"),
        "{\"a\":".repeat(100_000)
    );
    let err = check_inventory_text(Path::new("deep.yaml"), &text, &[]).expect_err("too deep");
    assert_eq!(err.to_string(), "deep.yaml: document 2: nested deeper than 128 levels at line 12, column 642");
    let err = check_inventory_text(Path::new("deep.json"), &"[".repeat(100_000), &[]).expect_err("too deep");
    assert!(err.to_string().starts_with("deep.json: document 1: invalid JSON"), "{err}");
}

#[test]
fn many_files_load_as_if_read_one_after_the_other() {
    // Files are read in name order: the first of two pods with one UID is kept, the warning
    // names both files, and the error of a broken inventory is its first broken file's.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let write = |name: &str, text: &str| {
        std::fs::write(dir.path().join(name), text).unwrap_or_else(|e| panic!("write {name}: {e}"));
    };
    for i in 0..9 {
        write(
            &format!("{i:02}.yaml"),
            &pod(&format!("p{i}"), Some(&format!("u-{i}")), &format!("10.244.1.{}", i + 10)),
        );
    }
    // The same UID in two files: the one read first wins, and the warning names both files.
    write("10.yaml", &pod("late", Some("u-3"), "10.244.1.99"));
    let inventory = Inventory::load_at(vec![dir.path().to_owned()], ResolveOptions::default(), T0)
        .unwrap_or_else(|e| panic!("load: {e}"));
    let (first, late) = (dir.path().join("03.yaml"), dir.path().join("10.yaml"));
    let (warnings, _) = inventory.warnings();
    assert_eq!(
        messages(warnings),
        [format!(
            "{}: document 1: pod shop/late: uid u-3 is already pod shop/p3 at {}: document 1; this pod is left out",
            late.display(),
            first.display()
        )]
    );
    let snapshot = inventory.snapshot();
    assert_eq!(snapshot.pod_count(), 9);
    assert_eq!(snapshot.workload_of_pod("u-3").map(|w| w.name), Some("p3".into()));

    // Two broken files: the error is the first one's.
    write("04.yaml", "apiVersion: v1\nkind: Pod\nmetadata: [\n");
    write("07.yaml", "{ not: yaml: at: all");
    assert!(
        Inventory::load_at(vec![dir.path().join("07.yaml")], ResolveOptions::default(), T0).is_err(),
        "07.yaml alone is broken too"
    );
    let e = Inventory::load_at(vec![dir.path().to_owned()], ResolveOptions::default(), T0)
        .err()
        .unwrap_or_else(|| panic!("broken files loaded"));
    let text = e.to_string();
    assert!(text.contains("04.yaml"), "the first broken file is named: {text}");
    assert!(!text.contains("07.yaml"), "{text}");
}
