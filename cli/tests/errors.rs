//! What a person or a script sees when something is wrong: one line on stderr naming the
//! address or the input, and an exit status to rely on (0 ok, 1 error, 2 usage).

mod support;

use support::{Server, mapper, ok, stderr, stdout, write};

fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    let url = format!("http://{}", listener.local_addr().unwrap_or_else(|e| panic!("addr: {e}")));
    drop(listener);
    url
}

#[test]
fn an_unreachable_server_is_one_line_naming_the_address_and_the_fix() {
    let url = closed_port_url();
    for command in ["export", "list", "visualize", "reset --yes"] {
        let args: Vec<&str> = ["--mapper-url", url.as_str()].into_iter().chain(command.split(' ')).collect();
        let out = mapper(&args, None);
        assert_eq!(out.status.code(), Some(1), "{command}");
        assert_eq!(
            stderr(&out),
            format!(
                "error: cannot reach mapper-server at {url} (connection refused): check that mapper-server is running \
                 there, or correct --mapper-url (MAPPER_URL); leave it unset to port-forward to the mapper-server \
                 Service in the cluster\n"
            ),
            "{command}"
        );
        assert!(stdout(&out).is_empty());
    }
    // MAPPER_URL works like the flag, and host:port without a scheme is accepted.
    let out = support::mapper_env(&["list"], &[("MAPPER_URL", url.trim_start_matches("http://"))]);
    assert!(stderr(&out).starts_with(&format!("error: cannot reach mapper-server at {url} ")), "{}", stderr(&out));
}

#[test]
fn tokens_missing_or_wrong_are_refused_clearly() {
    let server = Server::start(Some("s3cret"));
    support::seed(&server);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let out = server.mapper(&["list"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "error: mapper-server at {} requires a bearer token: pass --token-file FILE (or set MAPPER_TOKEN_FILE)\n",
            server.url
        )
    );
    let wrong = write(dir.path(), "wrong", "guess\n");
    let out = server.mapper(&["--token-file", &wrong, "export"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "error: mapper-server at {} refused the token in {wrong} (invalid bearer token for the query service): it \
             must match the server's --token-file\n",
            server.url
        )
    );
    let right = write(dir.path(), "right", "s3cret\n");
    let text = ok(&server.mapper(&["--token-file", &right, "list"]));
    assert!(text.starts_with("some-other-transaction-service in namespace team2 calls:"), "{text}");
    let out = support::mapper_env(&["--mapper-url", &server.url, "list"], &[("MAPPER_TOKEN_FILE", &right)]);
    ok(&out);
    let empty = write(dir.path(), "empty", "\n");
    let out = server.mapper(&["--token-file", &empty, "list"]);
    assert_eq!(stderr(&out), format!("error: --token-file {empty}: the file is empty\n"));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["export", "--server", "ledger.team3", "-n", "team1"][..],
        &["export", "--server", "ledger"],
        &["export", "--output-version", "v3"],
        &["export", "--output-type", "dir"],
        &["export", "--exclude-labels", "no value"],
        &["export", "--distinct-by-label", "Bad/key/x"],
        &["export", "--since", "yesterday"],
        &["visualize", "--format", "pdf"],
        &["policy"],
        &["completions", "powershell"],
        &["frobnicate"],
    ] {
        let out = mapper(args, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).starts_with("error: "), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn help_has_examples_and_exit_statuses_and_version_prints() {
    let root = ok(&mapper(&["--help"], None));
    for needle in [
        "export",
        "list",
        "visualize",
        "reset",
        "policy",
        "completions",
        "--mapper-url",
        "[env: MAPPER_URL=]",
        "Examples:",
        "Exit status: 0 success; 1 error",
    ] {
        assert!(root.contains(needle), "`mapper --help` lacks {needle}:\n{root}");
    }
    for command in ["export", "list", "visualize", "reset", "policy", "completions"] {
        let help = ok(&mapper(&[command, "--help"], None));
        assert!(help.contains(&format!("Examples:\n  mapper {command}")), "`mapper {command} --help`:\n{help}");
        assert!(help.contains("Exit status:"), "`mapper {command} --help`:\n{help}");
    }
    let export = ok(&mapper(&["export", "--help"], None));
    for needle in [
        "--namespaces",
        "--server <NAME.NAMESPACE>",
        "v1alpha3",
        "v2beta1",
        "--output-type",
        "--since",
        "--exclude-services",
        "--exclude-labels",
    ] {
        assert!(export.contains(needle), "`mapper export --help` lacks {needle}");
    }
    assert_eq!(ok(&mapper(&["--version"], None)), format!("mapper {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn completions_for_each_shell() {
    for (shell, marker) in [("bash", "complete -F"), ("zsh", "#compdef mapper"), ("fish", "complete -c mapper")] {
        let script = ok(&mapper(&["completions", shell], None));
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("output-version"), "{shell}");
    }
}
