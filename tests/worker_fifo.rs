//! `portcullis run --worker-fifo P`: the worker threads, and only they, at `SCHED_FIFO` P, read
//! back from `/proc/PID/task/TID/stat`; a priority outside 1-99 refused by the command line;
//! and a process without the right (`CAP_SYS_NICE` taken from its bounding set by `setpriv`,
//! `RLIMIT_RTPRIO` 0 by `prlimit`) exiting with a message that says what is missing, before it
//! forwards anything.
//!
//! The harness tests need root; they skip with a message without it, and fail under `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gateway;
mod support;

use std::process::{Command, Stdio};

use gateway::{Backend, ConfigDir, GatewayProcess, OPEN_POLICY, Signal};
use portcullis::dataplane::PortSide;
use support::Topology;

const PORTCULLIS: &str = env!("CARGO_BIN_EXE_portcullis");
/// The kernel's numbers for the policies read back.
const SCHED_OTHER: u32 = 0;
const SCHED_FIFO: u32 = 1;

/// One thread of a process: its name, policy and real-time priority.
#[derive(Debug)]
struct ThreadScheduling {
    name: String,
    policy: u32,
    priority: u32,
}

/// Every thread of process `pid`, from `/proc/PID/task/TID/stat` (fields 40 and 41,
/// rt_priority and policy, counted after the parenthesised name, which may hold spaces).
fn threads_of(pid: u32) -> Vec<ThreadScheduling> {
    let mut threads = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let Ok(stat) = std::fs::read_to_string(entry.unwrap().path().join("stat")) else {
            continue; // the thread ended meanwhile
        };
        let open = stat.find('(').unwrap();
        let close = stat.rfind(')').unwrap();
        let name = stat[open + 1..close].to_string();
        // After ") ": field 3 (state) is the first; rt_priority is field 40, policy 41.
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        threads.push(ThreadScheduling {
            name,
            priority: fields[40 - 3].parse().unwrap(),
            policy: fields[41 - 3].parse().unwrap(),
        });
    }
    threads
}

#[test]
fn priorities_outside_1_to_99_are_refused_by_the_command_line() {
    for priority in ["0", "100", "-3", "high"] {
        let output = Command::new(PORTCULLIS)
            .args(["run", "--config", "/nonexistent", "--outside", "a"])
            .args(["--inside", "b"])
            .arg(format!("--worker-fifo={priority}"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{priority}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("--worker-fifo") && stderr.contains("1 to 99"),
            "{priority}: {stderr}"
        );
    }
}

#[test]
fn the_workers_run_at_the_fifo_priority_and_every_other_thread_stays_normal() {
    let Some(topology) = Topology::new("wf") else {
        return;
    };
    let dir = ConfigDir::new("worker-fifo");
    dir.write("policy.yaml", OPEN_POLICY);
    let mut gateway = GatewayProcess::start(
        &topology,
        dir.path(),
        Backend::Afpacket,
        &["--workers", "2", "--worker-fifo", "3"],
    );
    let stderr = gateway.stderr();
    for worker in ["worker 0", "worker 1"] {
        assert!(
            stderr.contains(&format!("{worker} on CPU"))
                || stderr.contains(&format!("{worker} unpinned")),
            "{stderr}"
        );
    }
    assert_eq!(
        stderr.matches("at SCHED_FIFO priority 3").count(),
        2,
        "{stderr}"
    );
    let threads = threads_of(gateway.pid());
    let (workers, others): (Vec<_>, Vec<_>) =
        threads.iter().partition(|t| t.name.starts_with("worker-"));
    assert_eq!(workers.len(), 2, "{threads:?}");
    for worker in &workers {
        assert_eq!(
            (worker.policy, worker.priority),
            (SCHED_FIFO, 3),
            "{threads:?}"
        );
    }
    // The main thread, the config thread, housekeeping, the admin listener...
    assert!(others.len() >= 2, "{threads:?}");
    for other in &others {
        assert_eq!(
            (other.policy, other.priority),
            (SCHED_OTHER, 0),
            "{threads:?}"
        );
    }
    let status = gateway.stop(Signal::Term);
    assert!(status.success(), "{status:?}\n{}", gateway.stderr());
}

#[test]
fn without_the_right_the_gateway_says_what_is_missing_and_does_not_forward() {
    let Some(topology) = Topology::new("wn") else {
        return;
    };
    let dir = ConfigDir::new("worker-fifo-refused");
    dir.write("policy.yaml", OPEN_POLICY);
    // Bounded: the gateway exits on its own once its worker is refused; the helper's
    // `timeout` ends it should it forward instead.
    let output = topology
        .without_realtime_rights()
        .args([PORTCULLIS, "run", "--config"])
        .arg(dir.path())
        .args(["--outside", &topology.port(PortSide::Outside)])
        .args(["--inside", &topology.port(PortSide::Inside)])
        .args(["--backend", "afpacket", "--worker-fifo", "1"])
        .args(["--admin-listen", "off"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    for needed in [
        "worker 0: cannot run at SCHED_FIFO priority 1",
        "not permitted",
        "CAP_SYS_NICE",
        "RLIMIT_RTPRIO",
    ] {
        assert!(stderr.contains(needed), "{needed}: {stderr}");
    }
    assert!(!stderr.contains("forwarding between"), "{stderr}");
}
