//! The real mapper-server binary, started for a test and killed on drop.

use std::{
    io::{BufRead, BufReader},
    net::{IpAddr, SocketAddr},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
};

pub const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/seed.yaml");

/// `mapper-server --inventory <the seed fixture> --listen <listen>`, its log
/// unstyled; the caller adds the rest.
pub fn command(listen: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mapper-server"));
    cmd.args(["--inventory", FIXTURE, "--listen", listen]).env("NO_COLOR", "1");
    cmd
}

/// A mapper-server process, killed on drop, whose log is kept.
#[derive(Debug)]
pub struct Server {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Runs `cmd` and waits until the server logs the address it listens on.
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn mapper-server");
        let mut err = BufReader::new(child.stderr.take().expect("stderr"));
        let log = Arc::new(Mutex::new(String::new()));
        let mut line = String::new();
        let addr = loop {
            line.clear();
            let n = err.read_line(&mut line).expect("read log");
            assert!(n > 0, "mapper-server exited before listening:\n{}", log.lock().expect("log"));
            log.lock().expect("log").push_str(&line);
            if line.contains("mapper-server listening") {
                let addr = line.split("addr=").nth(1).and_then(|s| s.split_whitespace().next()).expect("addr= in log");
                break addr.parse::<SocketAddr>().expect("listening address");
            }
        };
        let sink = log.clone();
        std::thread::spawn(move || {
            for l in err.lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                s.push_str(&l);
                s.push('\n');
            }
        });
        Self { child, addr, log }
    }

    /// The URL on loopback (or on `ip`, for a non-loopback peer).
    pub fn url(&self, ip: Option<IpAddr>) -> String {
        let ip =
            ip.unwrap_or_else(|| if self.addr.ip().is_unspecified() { [127, 0, 0, 1].into() } else { self.addr.ip() });
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// The server's process id.
    #[allow(dead_code, reason = "a support module: hostile.rs uses it, the others do not")]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the server logs `needle` within 10 s (its log is read by a thread, so a line
    /// written just before an RPC returned may not have arrived yet).
    #[allow(dead_code, reason = "a support module: token_review.rs and hostile.rs use it, grpc.rs does not")]
    pub fn logs_soon(&self, needle: &str) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !self.log().contains(needle) {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        true
    }
}
