//! Compiles the kernel programs with clang and measures the shared header's layout.
//!
//! The BPF object is built with `clang -target bpf` (CO-RE, BTF kept, DWARF
//! stripped). The same header is compiled for the host into a tiny program that
//! prints every struct's size and field offsets, and the value of every
//! constant; `src/layout_tests.rs` compares them with the Rust mirror so the two
//! cannot drift.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

/// (struct, fields) of mapper.h checked against the Rust mirror.
const LAYOUT: &[(&str, &[&str])] = &[
    (
        "flow_key",
        &[
            "direction",
            "protocol",
            "family",
            "dst_port",
            "orig_dst_port",
            "netns",
            "src_addr",
            "dst_addr",
            "orig_dst_addr",
            "peer_netns",
            "cgroup_id",
            "peer_cgroup_id",
        ],
    ),
    ("flow_value", &["established", "failed", "first_seen_ns", "last_seen_ns", "pid", "comm"]),
    ("sock_info", &["cgroup_id", "start_ns", "pid", "comm"]),
    ("nat_key", &["family", "protocol", "src_port", "dst_port", "src_addr", "dst_addr"]),
    ("nat_value", &["dst_addr", "dst_port"]),
    ("listener_key", &["netns", "port", "family"]),
    ("listener_value", &["pid", "comm"]),
    ("peer_key", &["family", "client_port", "server_port", "client_addr", "server_addr"]),
    ("peer_value", &["cgroup_id", "netns"]),
    ("udp_key", &["netns", "local_port", "peer_port", "family", "peer_addr"]),
    ("agent_state", &["active"]),
    ("dns_event", &["ts_ns", "cgroup_id", "netns", "len", "family", "payload_len", "dst_addr", "src_addr", "data"]),
];

/// `#define`s of mapper.h checked against the Rust mirror.
const CONSTANTS: &[&str] = &[
    "MAPPER_COMM_LEN",
    "MAPPER_DNS_MAX",
    "MAPPER_DIR_CONNECT",
    "MAPPER_DIR_ACCEPT",
    "MAPPER_DIR_UDP",
    "MAPPER_UDP_SENT_FIRST",
    "MAPPER_UDP_RECEIVED_FIRST",
    "MAPPER_STAT_FLOW_UPDATE_FAILED",
    "MAPPER_STAT_FLOW_MAP_FULL",
    "MAPPER_STAT_SOCK_UPDATE_FAILED",
    "MAPPER_STAT_CONNECT_UNTRACKED",
    "MAPPER_STAT_DNS_RINGBUF_FULL",
    "MAPPER_STAT_DNS_TRUNCATED",
    "MAPPER_STAT_NAT_UPDATE_FAILED",
    "MAPPER_STAT_MAX",
];

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?}: {e} (install clang and llvm: apt-get install clang llvm libbpf-dev)")
    });
    assert!(status.success(), "{cmd:?} failed with {status}");
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let src = manifest.join("src/bpf");
    for f in ["mapper.bpf.c", "floor.bpf.c", "mapper.h", "kernel.h"] {
        println!("cargo:rerun-if-changed={}", src.join(f).display());
    }
    println!("cargo:rerun-if-env-changed=CLANG");

    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let arch_include = multiarch_include();
    // mapper's programs, and the empty ones on the same hooks (the benchmark's floor).
    for name in ["mapper", "floor"] {
        let obj = out.join(format!("{name}.bpf.o"));
        let mut cc = Command::new(&clang);
        cc.args(["-target", "bpf", "-g", "-O2", "-Wall", "-Werror"]).arg("-I").arg(&src);
        if let Some(inc) = &arch_include {
            cc.arg("-I").arg(inc);
        }
        cc.arg("-c").arg(src.join(format!("{name}.bpf.c"))).arg("-o").arg(&obj);
        run(&mut cc);
        // Keep .BTF and .BTF.ext (CO-RE needs them), drop DWARF.
        let strip = env::var("LLVM_STRIP").unwrap_or_else(|_| "llvm-strip".into());
        run(Command::new(strip).arg("-g").arg(&obj));
    }

    layout_probe(&clang, &src, &out);
}

/// Debian puts asm/types.h under /usr/include/<multiarch>.
fn multiarch_include() -> Option<PathBuf> {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let triple = match arch.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        _ => return None,
    };
    let p = Path::new("/usr/include").join(triple);
    p.exists().then_some(p)
}

fn layout_probe(clang: &str, src: &Path, out: &Path) {
    let mut c = String::from("#include <stdio.h>\n#include <stddef.h>\n#include \"mapper.h\"\nint main(void) {\n");
    for (name, fields) in LAYOUT {
        c.push_str(&format!("printf(\"(\\\"{name}\\\", \\\"\\\", %zu),\\n\", sizeof(struct {name}));\n"));
        for field in *fields {
            c.push_str(&format!(
                "printf(\"(\\\"{name}\\\", \\\"{field}\\\", %zu),\\n\", offsetof(struct {name}, {field}));\n"
            ));
        }
    }
    c.push_str("printf(\"];\\n/// (name, value) of mapper.h's constants.\\npub const C_CONSTANTS: &[(&str, u64)] = &[\\n\");\n");
    for name in CONSTANTS {
        c.push_str(&format!("printf(\"(\\\"{name}\\\", %llu),\\n\", (unsigned long long)({name}));\n"));
    }
    c.push_str("return 0;\n}\n");
    let probe_c = out.join("layout_probe.c");
    std::fs::write(&probe_c, c).expect("write layout probe");
    let probe = out.join("layout_probe");
    run(Command::new(clang).arg("-I").arg(src).arg(&probe_c).arg("-o").arg(&probe));
    let output = Command::new(&probe).output().expect("run layout probe");
    assert!(output.status.success(), "layout probe failed");
    let table = format!(
        "/// (struct, field or \"\" for sizeof, bytes) as a C compiler lays out mapper.h.\npub const C_LAYOUT: &[(&str, &str, usize)] = &[\n{}];\n",
        String::from_utf8(output.stdout).expect("utf8")
    );
    std::fs::write(out.join("c_layout.rs"), table).expect("write c_layout.rs");
}
