//! The Otterize intents operator's formatted identities: the short, hashed form of a workload
//! identity that fits Kubernetes' 63-character label limit and appears in pod labels
//! (`intents.otterize.com/server: ledger-team3-40d1db`) and NetworkPolicy selectors.
//!
//! - without kind: MD5 of `"<name>-<namespace>"`, hex, first 6 characters; name and namespace
//!   each cut to 20 bytes: `"<name20>-<ns20>-<hash6>"`.
//! - with kind: MD5 of `"<name>-<namespace>-<Kind>"`; name and namespace cut to 19 bytes, kind
//!   cut to 5 and lowercased: `"<name19>-<ns19>-<kind5>-<hash6>"`.
//!
//! The hash is always of the full, untruncated strings.

use md5::{Digest, Md5};

use crate::model::Workload;

/// Longest name (and namespace) kept in an identity without kind.
pub const MAX_NAME_LENGTH: usize = 20;
/// Longest kind prefix kept in an identity with kind.
pub const MAX_KIND_LENGTH: usize = 5;
/// The operator's internal kind for identities that have none.
pub const LEGACY_KIND: &str = "OttrLegacy";

/// `s` cut to at most `max` bytes. The operator cuts bytes; Kubernetes names are ASCII, and for
/// anything else this stops at the last whole character instead of splitting one.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn hash6(input: &str) -> String {
    let digest = Md5::digest(input.as_bytes());
    digest.iter().take(3).map(|b| format!("{b:02x}")).collect()
}

/// The identity without kind: `ledger`, `team3` → `ledger-team3-40d1db`.
pub fn formatted_identity(name: &str, namespace: &str) -> String {
    let hash = hash6(&format!("{name}-{namespace}"));
    format!("{}-{}-{hash}", truncate(name, MAX_NAME_LENGTH), truncate(namespace, MAX_NAME_LENGTH))
}

/// The identity with kind: `ledger`, `team3`, `Deployment` → `ledger-team3-deplo-fd1e86`.
pub fn formatted_identity_with_kind(name: &str, namespace: &str, kind: &str) -> String {
    let hash = hash6(&format!("{name}-{namespace}-{kind}"));
    format!(
        "{}-{}-{}-{hash}",
        truncate(name, MAX_NAME_LENGTH - 1),
        truncate(namespace, MAX_NAME_LENGTH - 1),
        truncate(kind, MAX_KIND_LENGTH).to_lowercase(),
    )
}

/// The identity the operator uses for a workload: with kind when the kind is known, without
/// it otherwise (and for the operator's internal `OttrLegacy` kind).
pub fn workload_identity(workload: &Workload) -> String {
    match workload.kind.as_deref() {
        None | Some(LEGACY_KIND) => formatted_identity(&workload.name, &workload.namespace),
        Some(kind) => formatted_identity_with_kind(&workload.name, &workload.namespace, kind),
    }
}

/// The workload's name with its kind as the operator names per-workload objects:
/// `ledger` or `ledger-deployment`, with `_` replaced by `.` (RFC 1123).
pub fn rfc1123_name_with_kind(workload: &Workload) -> String {
    let name = match workload.kind.as_deref() {
        None | Some(LEGACY_KIND) => workload.name.to_string(),
        Some(kind) => format!("{}-{}", workload.name, kind.to_lowercase()),
    };
    name.replace('_', ".")
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values computed independently with Python's hashlib:
    //   python3 -c 'import hashlib; n,ns="ledger","team3"; \
    //     print(f"{n[:20]}-{ns[:20]}-" + hashlib.md5(f"{n}-{ns}".encode()).hexdigest()[:6])'
    //   python3 -c 'import hashlib; n,ns,k="ledger","team3","Deployment"; \
    //     print(f"{n[:19]}-{ns[:19]}-{k[:5].lower()}-" + hashlib.md5(f"{n}-{ns}-{k}".encode()).hexdigest()[:6])'
    #[test]
    fn identity_without_kind_matches_independent_md5() {
        let cases = [
            ("ledger", "team3", "ledger-team3-40d1db"),
            ("transaction-service", "team1", "transaction-service-team1-b000ee"),
            ("some-other-transaction-service", "team2", "some-other-transacti-team2-6dff81"),
            (
                "a-very-long-workload-name-indeed",
                "a-rather-long-namespace-name",
                "a-very-long-workload-a-rather-long-namesp-06e31a",
            ),
        ];
        for (name, ns, expected) in cases {
            assert_eq!(formatted_identity(name, ns), expected, "identity of {name}/{ns}");
        }
    }

    #[test]
    fn identity_with_kind_matches_independent_md5() {
        let cases = [
            ("ledger", "team3", "Deployment", "ledger-team3-deplo-fd1e86"),
            ("ledger", "team3", "StatefulSet", "ledger-team3-state-9e8370"),
            ("nightly-report", "team1", "CronJob", "nightly-report-team1-cronj-6266a1"),
            ("db", "team3", "Pod", "db-team3-pod-20d824"),
            ("ledger", "team3", "Service", "ledger-team3-servi-ebbcd3"),
            (
                "a-very-long-workload-name-indeed",
                "a-rather-long-namespace-name",
                "StatefulSet",
                "a-very-long-workloa-a-rather-long-names-state-cb945e",
            ),
        ];
        for (name, ns, kind, expected) in cases {
            assert_eq!(formatted_identity_with_kind(name, ns, kind), expected, "identity of {kind} {name}/{ns}");
        }
    }

    #[test]
    fn identities_fit_a_label_and_never_split_characters() {
        let long = "x".repeat(80);
        assert!(formatted_identity(&long, &long).len() <= 63);
        assert!(formatted_identity_with_kind(&long, &long, "StatefulSet").len() <= 63);
        let id = formatted_identity("ééééééééééééé", "team3");
        assert!(id.starts_with("éééééééééé-team3-"), "cut at a character boundary: {id}");
    }

    #[test]
    fn workload_identity_uses_kind_when_known() {
        assert_eq!(workload_identity(&Workload::without_kind("ledger", "team3")), "ledger-team3-40d1db");
        assert_eq!(workload_identity(&Workload::new("ledger", "team3", LEGACY_KIND)), "ledger-team3-40d1db");
        assert_eq!(workload_identity(&Workload::new("ledger", "team3", "Deployment")), "ledger-team3-deplo-fd1e86");
        assert_eq!(rfc1123_name_with_kind(&Workload::new("led_ger", "team3", "StatefulSet")), "led.ger-statefulset");
        assert_eq!(rfc1123_name_with_kind(&Workload::without_kind("ledger", "team3")), "ledger");
    }
}
