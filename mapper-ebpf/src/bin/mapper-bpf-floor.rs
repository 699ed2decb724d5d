//! `mapper-bpf-floor CGROUP2_ROOT`: attaches the empty programs of
//! [`mapper_ebpf::FLOOR_OBJECT`] to the hooks mapper's programs use, prints
//! `ready <mapper program>=<id of the empty one on its hook> ...`, and keeps them attached until its standard
//! input closes. `scripts/bench-agent.sh` reads their accounting to know what
//! the kernel charges a program that does nothing.

use std::{error::Error, io::Read, os::fd::AsFd};

use aya::{
    Btf, Ebpf,
    programs::{BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr},
};

fn main() -> Result<(), Box<dyn Error>> {
    let root = std::env::args().nth(1).ok_or("usage: mapper-bpf-floor CGROUP2_ROOT")?;
    let cgroup = std::fs::File::open(&root)?;
    let btf = Btf::from_sys_fs()?;
    let mut ebpf = Ebpf::load(mapper_ebpf::FLOOR_OBJECT)?;
    let mut ids = Vec::new();
    for &(name, mapper_name) in mapper_ebpf::FLOOR_PROGRAMS {
        let prog = ebpf.program_mut(name).ok_or_else(|| format!("program {name} missing"))?;
        let id = match name {
            "floor_sock_state" | "floor_dev_queue" => {
                let p: &mut BtfTracePoint = prog.try_into()?;
                let event = if name == "floor_sock_state" { "inet_sock_set_state" } else { "net_dev_queue" };
                p.load(event, &btf)?;
                p.attach()?;
                p.info()?.id()
            }
            "floor_connect4" => {
                let p: &mut CgroupSockAddr = prog.try_into()?;
                p.load()?;
                p.attach(cgroup.as_fd(), CgroupAttachMode::Single)?;
                p.info()?.id()
            }
            _ => {
                let p: &mut CgroupSkb = prog.try_into()?;
                p.load()?;
                p.attach(cgroup.as_fd(), CgroupSkbAttachType::Ingress, CgroupAttachMode::Single)?;
                p.info()?.id()
            }
        };
        ids.push(format!("{mapper_name}={id}"));
    }
    println!("ready {}", ids.join(" "));
    // Attached while `ebpf` lives: until the benchmark closes our stdin.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(ebpf);
    Ok(())
}
