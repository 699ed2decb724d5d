//! The processes of the observer benchmark that run inside the pod namespaces:
//! the server, the two workloads' clients, the 1 ms probe, and the
//! `/proc/net/tcp` poller (Otterize's design, as one of the observers).

use std::{
    collections::HashSet,
    fs,
    io::{self, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    path::PathBuf,
    thread,
    time::Duration,
};

use crate::traffic;

/// Serves `connect` ports (accept and close) and `echo` ports (keep-alive:
/// every `payload` bytes read are written back).
pub fn serve(connect: &[SocketAddr], echo: &[SocketAddr], payload: usize) -> io::Result<()> {
    let mut handles = Vec::new();
    for addr in connect {
        let l = TcpListener::bind(addr)?;
        handles.push(thread::spawn(move || traffic::serve_tcp(l)));
    }
    for addr in echo {
        let l = TcpListener::bind(addr)?;
        handles.push(thread::spawn(move || {
            for conn in l.incoming().flatten() {
                thread::spawn(move || echo_conn(conn, payload));
            }
        }));
    }
    println!("ready");
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

fn echo_conn(mut c: TcpStream, payload: usize) {
    let _ = c.set_nodelay(true);
    let mut buf = vec![0u8; payload.max(1)];
    while c.read_exact(&mut buf).is_ok() {
        if c.write_all(&buf).is_err() {
            return;
        }
    }
}

/// Request/response over one keep-alive connection: `count` requests of
/// `payload` bytes, each answered with as many. Returns the requests answered.
pub fn request_response(to: SocketAddr, count: u64, payload: usize) -> io::Result<u64> {
    let mut c = TcpStream::connect(to)?;
    c.set_nodelay(true)?;
    let mut buf = vec![0x5au8; payload.max(1)];
    for i in 0..count {
        if c.write_all(&buf).is_err() || c.read_exact(&mut buf).is_err() {
            return Ok(i);
        }
    }
    Ok(count)
}

/// `count` connections one after another, each held open `hold` and then
/// reset (no TIME_WAIT left to find afterwards). Returns those established.
pub fn hold(to: SocketAddr, count: u64, hold: Duration) -> u64 {
    let mut ok = 0;
    for _ in 0..count {
        if let Ok(c) = TcpStream::connect_timeout(&to, Duration::from_secs(2)) {
            ok += 1;
            thread::sleep(hold);
            crate::traffic::close_with_reset(c);
        }
    }
    ok
}

/// One ESTABLISHED socket of a `/proc/net/tcp{,6}` listing: (local, remote) as
/// the file writes them (hex address:port).
fn established(listing: &str) -> impl Iterator<Item = (&str, &str)> {
    listing.lines().skip(1).filter_map(|l| {
        let mut f = l.split_whitespace();
        let (_, local, remote, st) = (f.next()?, f.next()?, f.next()?, f.next()?);
        (st == "01").then_some((local, remote))
    })
}

/// The port of a `/proc/net/tcp` address (`0A00020F:1F90`).
pub fn proc_port(addr: &str) -> Option<u16> {
    u16::from_str_radix(addr.rsplit(':').next()?, 16).ok()
}

/// Polls `/proc/net/tcp` and `/proc/net/tcp6` of every namespace in `netns`
/// every `interval` (one thread per namespace, entered with setns), and prints
/// each ESTABLISHED connection the first time it is listed:
/// `<namespace index> <local> <remote>`.
pub fn proc_poll(netns: &[PathBuf], interval: Duration) -> io::Result<()> {
    let mut handles = Vec::new();
    let (tx, rx) = std::sync::mpsc::channel::<io::Result<()>>();
    for (i, path) in netns.iter().enumerate() {
        let file = fs::File::open(path)?;
        let tx = tx.clone();
        handles.push(thread::spawn(move || {
            // SAFETY: setns(2) on this thread only, with a namespace fd we own.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                let _ = tx.send(Err(io::Error::last_os_error()));
                return;
            }
            let _ = tx.send(Ok(()));
            let mut seen: HashSet<String> = HashSet::new();
            loop {
                for f in ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"] {
                    let Ok(listing) = fs::read_to_string(f) else { continue };
                    for (local, remote) in established(&listing) {
                        let line = format!("{i} {local} {remote}");
                        if !seen.contains(&line) {
                            println!("{line}");
                            seen.insert(line);
                        }
                    }
                }
                thread::sleep(interval);
            }
        }));
    }
    drop(tx);
    for r in rx.iter().take(netns.len()) {
        r?;
    }
    println!("ready");
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn established_sockets_of_a_listing() {
        let listing = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1\n   1: 0200F40A:9C40 0300F40A:1F91 01 00000000:00000000 00:00000000 00000000     0        0 2\n";
        let got: Vec<_> = established(listing).collect();
        assert_eq!(got, vec![("0200F40A:9C40", "0300F40A:1F91")]);
        assert_eq!(proc_port(got[0].1), Some(8081));
    }
}
