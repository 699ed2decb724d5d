//! What the Kubernetes API server accepts as names and labels, checked before mapper writes
//! an object that would otherwise be refused on `kubectl apply`:
//!
//! - object names (`metadata.name` of a ClientIntents or NetworkPolicy): a DNS-1123 subdomain —
//!   at most 253 characters, lowercase letters, digits, `-` and `.`, starting and ending with a
//!   letter or digit;
//! - label keys: an optional DNS-1123 subdomain prefix and `/`, then a name of at most 63
//!   characters of letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit;
//! - label values: empty, or such a name.
//!
//! Each check answers what is wrong in words, to be put after the name in a message.

/// Longest DNS-1123 subdomain (an object name, a label key's prefix).
pub const MAX_SUBDOMAIN: usize = 253;
/// Longest label name (a label key after its prefix) and label value.
pub const MAX_LABEL: usize = 63;

/// Whether `name` is a DNS-1123 subdomain; the problem otherwise.
pub fn check_dns1123_subdomain(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".to_owned());
    }
    if name.len() > MAX_SUBDOMAIN {
        return Err(format!("it is {} characters long, more than {MAX_SUBDOMAIN}", name.len()));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))) {
        return Err(format!(
            "it holds {c:?}: only lowercase letters, digits, '-' and '.' are allowed (a DNS-1123 subdomain)"
        ));
    }
    for part in name.split('.') {
        let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        if !ends_ok(part.chars().next()) || !ends_ok(part.chars().last()) {
            return Err(
                "each '.'-separated part must start and end with a lowercase letter or digit (a DNS-1123 subdomain)"
                    .to_owned(),
            );
        }
    }
    Ok(())
}

/// Whether `name` is a label name (or a non-empty label value): at most 63 characters of
/// letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit.
fn check_label_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".to_owned());
    }
    if name.len() > MAX_LABEL {
        return Err(format!("it is {} characters long, more than {MAX_LABEL}", name.len()));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
        return Err(format!("it holds {c:?}: only letters, digits, '-', '_' and '.' are allowed"));
    }
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !ends_ok(name.chars().next()) || !ends_ok(name.chars().last()) {
        return Err("it must start and end with a letter or digit".to_owned());
    }
    Ok(())
}

/// Whether `key` is a label key; the problem otherwise.
pub fn check_label_key(key: &str) -> Result<(), String> {
    match key.rsplit_once('/') {
        Some((prefix, name)) => {
            check_dns1123_subdomain(prefix).map_err(|p| format!("its prefix {prefix:?} is no DNS subdomain: {p}"))?;
            check_label_name(name).map_err(|p| format!("its name {name:?} after the prefix: {p}"))
        }
        None => check_label_name(key),
    }
}

/// Whether `value` is a label value (empty is allowed); the problem otherwise.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() { Ok(()) } else { check_label_name(value) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_dns_subdomains() {
        for ok in ["ledger", "web.v2", "a", "ledger-service-access", "0abc"] {
            assert_eq!(check_dns1123_subdomain(ok), Ok(()), "{ok}");
        }
        let err = |s: &str| check_dns1123_subdomain(s).err().unwrap_or_else(|| panic!("{s} accepted"));
        assert!(err("web_v2").contains("'_'"), "{}", err("web_v2"));
        assert!(err("Custom_Name").contains("'C'"), "{}", err("Custom_Name"));
        assert!(err("svc:ledger-access").contains("':'"), "{}", err("svc:ledger-access"));
        assert!(err("-ledger").contains("start and end"));
        assert!(err("ledger.").contains("start and end"));
        assert!(err("a..b").contains("start and end"));
        assert_eq!(err(""), "it is empty");
        assert!(err(&"a".repeat(254)).contains("254 characters"));
        assert_eq!(check_dns1123_subdomain(&"a".repeat(253)), Ok(()));
    }

    #[test]
    fn label_keys_and_values_follow_kubernetes() {
        for ok in ["app", "intents.otterize.com/access-ledger-team3-40d1db", "kubernetes.io/metadata.name", "A_b.c"] {
            assert_eq!(check_label_key(ok), Ok(()), "{ok}");
        }
        assert!(check_label_key("").is_err());
        assert!(check_label_key("Example.com/app").err().is_some_and(|e| e.contains("prefix")));
        assert!(check_label_key("example.com/").err().is_some_and(|e| e.contains("empty")));
        assert!(check_label_key(&format!("intents.otterize.com/{}", "a".repeat(64))).is_err());
        assert!(check_label_key("a b").is_err());
        assert_eq!(check_label_value(""), Ok(()));
        assert_eq!(check_label_value("Ledger_x.1"), Ok(()));
        assert!(check_label_value("svc:ledger").is_err());
        assert!(check_label_value(&"a".repeat(64)).is_err());
        assert!(check_label_value("-a").is_err());
    }
}
