//! A `mapper dashboard` process on loopback (port chosen by the system), its URL read from its
//! first line of stdout, and raw HTTP/1.1 requests to it (nothing between the test and the
//! bytes the dashboard reads: Host, Origin and the path are exactly what the test writes).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

/// A dashboard, killed on drop.
pub struct Dashboard {
    child: Child,
    /// `http://127.0.0.1:PORT/TOKEN/`.
    pub url: String,
    /// `127.0.0.1:PORT`.
    pub authority: String,
    /// The token.
    pub token: String,
    _stdout: BufReader<ChildStdout>,
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dashboard {
    /// `mapper --mapper-url <server> dashboard --no-browser --listen 127.0.0.1:0 <args>`.
    pub fn start(server_url: &str, args: &[&str]) -> Dashboard {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mapper"));
        command
            .args(["--mapper-url", server_url, "dashboard", "--no-browser", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .env("BROWSER", "/nonexistent/browser")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("MAPPER_") {
                command.env_remove(key);
            }
        }
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot run mapper dashboard: {e}"));
        let mut stdout = BufReader::new(child.stdout.take().unwrap_or_else(|| panic!("no stdout")));
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap_or_else(|e| panic!("reading the dashboard's stdout: {e}"));
        let url = line.trim().to_owned();
        assert!(url.starts_with("http://127.0.0.1:") && url.ends_with('/'), "the first line is not the URL: {line:?}");
        let rest = url.trim_start_matches("http://");
        let (authority, path) = rest.split_once('/').unwrap_or_else(|| panic!("no path in {url}"));
        let token = path.trim_end_matches('/').to_owned();
        assert_eq!(token.len(), 64, "a 64-digit token: {url}");
        Dashboard { child, url: url.clone(), authority: authority.to_owned(), token, _stdout: stdout }
    }

    /// Sends `request` (a whole HTTP/1.1 request; `Connection: close` is added) and returns
    /// the status and the body.
    pub fn raw(&self, head: &str, body: &[u8]) -> (u16, String) {
        let mut stream =
            TcpStream::connect(&self.authority).unwrap_or_else(|e| panic!("connect {}: {e}", self.authority));
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap_or_else(|e| panic!("timeout: {e}"));
        let mut request = head.trim_end_matches("\r\n").to_owned();
        request.push_str(&format!("\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", body.len()));
        stream.write_all(request.as_bytes()).unwrap_or_else(|e| panic!("write: {e}"));
        // The server may answer (413) before reading all of a large body.
        let _ = stream.write_all(body);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
        let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        (status, body)
    }

    /// `GET path` with this dashboard's Host and extra header lines.
    pub fn get(&self, path: &str, headers: &[&str]) -> (u16, String) {
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", self.authority);
        for h in headers {
            head.push_str(h);
            head.push_str("\r\n");
        }
        self.raw(&head, b"")
    }

    /// The path of `rest` under the token: `/<token>/<rest>`.
    pub fn path(&self, rest: &str) -> String {
        format!("/{}/{rest}", self.token)
    }
}
