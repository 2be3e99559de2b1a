//! `portcullis-pktgen`: the forwarding benchmark's traffic tools (see `scripts/bench-forward`).
//!
//! ```text
//!   gen      frames (UDP/IPv4, documentation addresses) ──sendmmsg──▶ IF      (bounded)
//!   sink     IF's kernel counters + /proc/stat, sampled over a window   ──▶ JSON
//!   forward  OUTSIDE ◀──PortPair::poll, decide = always Forward──▶ INSIDE    (bounded)
//!   rules    one N-rule description ──▶ Calico directory, nft bridge and inet rulesets
//! ```
//!
//! Every mode prints one JSON line on stdout; errors go to stderr with a non-zero exit.
//! `forward` is the do-nothing forwarder: the backends' own `PortPair` with no parse, policy or
//! conntrack, so that portcullis' throughput can be read against what its backend alone does.

mod counters;
mod frames;
mod rules;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;

use counters::{CpuTimes, InterfaceCounters};
use frames::{FramePool, FrameSpec};
use portcullis::dataplane::affinity::{self, FifoPriority, Scheduling};
use portcullis::dataplane::afpacket::{self, AfPacketPort};
use portcullis::dataplane::afxdp;
use portcullis::dataplane::{BackendConfig, BatchStats, Disposition, KernelDrops, PortPair};

/// Longest a generator or sink window may last.
const MAX_SECONDS: f64 = 10.0;
/// Most sockets the generator may send through.
const MAX_SOCKETS: usize = 64;
/// Longest the forwarder may run: one measurement plus the sink's wait and warm-up.
const MAX_FORWARD_SECONDS: f64 = 30.0;

#[derive(Parser, Debug)]
#[command(
    name = "portcullis-pktgen",
    about = "Traffic generator, sink and do-nothing forwarder for the forwarding benchmark"
)]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Send UDP/IPv4 frames out of an interface, flat out or at a rate, for a bounded time.
    Gen(GenArgs),
    /// Count the frames an interface receives over a window (kernel counters; no copies).
    Sink(SinkArgs),
    /// Forward every frame between two interfaces with a portcullis backend, deciding nothing.
    Forward(ForwardArgs),
    /// Write the N-rule benchmark policy as a Calico directory and nftables rulesets.
    Rules(RulesArgs),
}

#[derive(clap::Args, Debug)]
struct GenArgs {
    #[arg(long)]
    interface: String,
    /// Destination MAC of every frame (the sink's, or the router's for routed contenders).
    #[arg(long, value_parser = parse_mac)]
    dst_mac: [u8; 6],
    /// Source MAC; the interface's own by default.
    #[arg(long, value_parser = parse_mac)]
    src_mac: Option<[u8; 6]>,
    #[arg(long, default_value = "203.0.113.10")]
    dst: Ipv4Addr,
    #[arg(long, default_value_t = 5201)]
    dst_port: u16,
    /// Frame size in bytes as handed to the interface (no FCS), 42 to 1514.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Distinct flows (source address and port pairs), sent round-robin.
    #[arg(long, default_value_t = 1)]
    flows: usize,
    /// Frames per second; 0 sends flat out.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Seconds to send for, at most 10.
    #[arg(long, default_value_t = 1.0)]
    duration: f64,
    /// Frames to send at most.
    #[arg(long, default_value_t = 50_000_000)]
    count: u64,
    /// Frames per sendmmsg.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Sockets to send through, a batch each in turn. A socket may have only so many bytes
    /// in flight (its send buffer, `net.core.wmem_default`), and a frame is in flight until the
    /// receiving core has dealt with it; several sockets keep the receiver busy flat out.
    #[arg(long, default_value_t = 4)]
    sockets: usize,
    /// With --rate: frames the generator may send back to back to catch up after it fell
    /// behind (its core taken by other work); frames later than that are skipped, not sent
    /// late, and reported as `skipped_late`, so that a pause of the generator does not turn
    /// into a burst at its full speed. Unlimited by default.
    #[arg(long)]
    max_catch_up: Option<u64>,
}

#[derive(clap::Args, Debug)]
struct SinkArgs {
    #[arg(long)]
    interface: String,
    /// Length of the measured window in seconds, at most 10 (with --until-idle: the longest
    /// the whole count may take).
    #[arg(long, default_value_t = 1.0)]
    duration: f64,
    /// Seconds between the first frame and the start of the window.
    #[arg(long, default_value_t = 0.3)]
    warmup: f64,
    /// Seconds to wait for the first frame before giving up.
    #[arg(long, default_value_t = 5.0)]
    wait_start: f64,
    /// Count everything from start until no frame has arrived for this many milliseconds
    /// (for loss: the total against what the generator sent), instead of a rate window.
    #[arg(long)]
    until_idle: Option<u64>,
    /// Processes or threads whose CPU use (user + system) over the window to report, summed:
    /// the middle. May be repeated.
    #[arg(long)]
    pid: Vec<u32>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Backend {
    Afpacket,
    Afxdp,
}

#[derive(clap::Args, Debug)]
struct ForwardArgs {
    #[arg(long, value_enum, default_value_t = Backend::Afpacket)]
    backend: Backend,
    #[arg(long)]
    outside: String,
    #[arg(long)]
    inside: String,
    /// Seconds to run, at most 30.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Stop once frames have come and then none for this many milliseconds.
    #[arg(long)]
    idle_exit: Option<u64>,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// AF_XDP: entries in each ring (a power of two); the backend's default otherwise.
    #[arg(long)]
    ring_size: Option<u32>,
    /// AF_XDP: ask for preferred busy polling on the sockets.
    #[arg(long)]
    busy_poll: bool,
    /// Forward at real-time priority SCHED_FIFO PRIORITY (1-99), as `portcullis run
    /// --worker-fifo` runs its workers; refused (no CAP_SYS_NICE nor RLIMIT_RTPRIO), the
    /// forwarder exits with the reason.
    #[arg(long, value_name = "PRIORITY")]
    worker_fifo: Option<FifoPriority>,
}

#[derive(clap::Args, Debug)]
struct RulesArgs {
    /// Number of rules (the last one matches the traffic).
    #[arg(long)]
    count: usize,
    /// The sink's address: the protected HostEndpoint.
    #[arg(long, default_value = "203.0.113.10")]
    sink: Ipv4Addr,
    #[arg(long, default_value_t = 5201)]
    dst_port: u16,
    /// Directory to write `calico/policy.yaml`, `bridge.nft` and `inet.nft` into.
    #[arg(long)]
    out: PathBuf,
    /// Name of the nftables tables (bridge and inet family).
    #[arg(long, default_value = "pcbench")]
    table: String,
}

fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    frames::parse_mac(text)
        .ok_or_else(|| format!("{text:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.mode {
        Mode::Gen(args) => generate(&args),
        Mode::Sink(args) => sink(&args),
        Mode::Forward(args) => forward(&args),
        Mode::Rules(args) => write_rules(&args),
    };
    match result {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("portcullis-pktgen: {message}");
            ExitCode::FAILURE
        }
    }
}

fn bounded(seconds: f64, max: f64, what: &str) -> Result<Duration, String> {
    if seconds.is_finite() && seconds > 0.0 && seconds <= max {
        Ok(Duration::from_secs_f64(seconds))
    } else {
        Err(format!("{what} {seconds} s is not within (0, {max}]"))
    }
}

/// A flag that SIGTERM or SIGINT raises, so that a run stopped early still reports.
fn stop_on_signals() -> Result<Arc<AtomicBool>, String> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| format!("signal handler: {e}"))?;
    }
    Ok(stop)
}

fn to_json<T: Serialize>(value: &T) -> Result<String, String> {
    serde_json::to_string(value).map_err(|error| error.to_string())
}

#[derive(Serialize, Debug)]
struct GenReport {
    mode: &'static str,
    interface: String,
    frame_size: usize,
    flows: usize,
    rate: u64,
    attempted: u64,
    sent: u64,
    seconds: f64,
    sent_pps: f64,
    /// Frames the interface counted as dropped on transmit meanwhile (e.g. the peer's backlog
    /// was full), when its counters are readable.
    tx_dropped: Option<u64>,
    /// Frames never offered because they were due more than --max-catch-up frames before the
    /// generator could send them (not in `attempted`).
    skipped_late: u64,
}

fn generate(args: &GenArgs) -> Result<String, String> {
    let duration = bounded(args.duration, MAX_SECONDS, "duration")?;
    let source_mac = match args.src_mac {
        Some(mac) => mac,
        None => interface_mac(&args.interface)?,
    };
    let spec = FrameSpec {
        source_mac,
        destination_mac: args.dst_mac,
        destination: args.dst,
        destination_port: args.dst_port,
        size: args.size,
    };
    let pool = FramePool::build(&spec, args.flows).map_err(|error| error.to_string())?;
    if !(1..=MAX_SOCKETS).contains(&args.sockets) {
        return Err(format!(
            "{} sockets is not within 1..={MAX_SOCKETS}",
            args.sockets
        ));
    }
    let mut ports = (0..args.sockets)
        .map(|_| AfPacketPort::open(&args.interface, args.batch))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let before = InterfaceCounters::read(&args.interface).ok();

    // SIGTERM/SIGINT end the run with a report (what was offered so far) rather than without.
    let stop = stop_on_signals()?;
    let pacer = Pacer::new(args.rate).catching_up_at_most(args.max_catch_up);
    let mut batch = Vec::with_capacity(args.batch);
    let mut next_flow = 0;
    let (mut attempted, mut sent, mut batches, mut skipped_late) = (0u64, 0u64, 0usize, 0u64);
    let start = Instant::now();
    while attempted < args.count {
        let elapsed = start.elapsed();
        if elapsed >= duration || stop.load(Ordering::Relaxed) {
            break;
        }
        let remaining = usize::try_from(args.count - attempted).unwrap_or(usize::MAX);
        // The schedule counts skipped frames as gone: frame n is due at n / rate.
        let (due, late) = pacer.due_and_late(attempted + skipped_late, elapsed);
        skipped_late += late;
        let want = due.min(args.batch).min(remaining);
        if want == 0 {
            pacer.wait(attempted + skipped_late, start);
            continue;
        }
        pool.next_batch(&mut next_flow, want, &mut batch);
        let which = batches % ports.len();
        let port = &mut ports[which];
        let accepted = port
            .send_batch(pool.bytes(), &batch)
            .map_err(|e| e.to_string())?;
        sent += accepted as u64;
        attempted += offered(accepted, batch.len()) as u64;
        batches += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    let tx_dropped = before
        .zip(InterfaceCounters::read(&args.interface).ok())
        .map(|(before, after)| after.since(&before).tx_dropped);
    to_json(&GenReport {
        mode: "gen",
        interface: args.interface.clone(),
        frame_size: args.size,
        flows: args.flows,
        rate: args.rate,
        attempted,
        sent,
        seconds,
        sent_pps: sent as f64 / seconds,
        tx_dropped,
        skipped_late,
    })
}

/// Frames of a batch of `batch` that were offered to the interface, when it accepted
/// `accepted`: a send the interface refuses (its peer's ring full) gives up the rest of the
/// batch, so the refused frame counts as offered and lost, like a tail drop, and the frames
/// after it were never offered: the pacer sends them next, each offered once.
fn offered(accepted: usize, batch: usize) -> usize {
    if accepted < batch {
        accepted + 1
    } else {
        batch
    }
}

fn interface_mac(interface: &str) -> Result<[u8; 6], String> {
    if interface.is_empty() || interface.contains(['/', '\0']) || interface.starts_with('.') {
        return Err(format!("{interface:?} is not an interface name"));
    }
    let path = format!("/sys/class/net/{interface}/address");
    let text = std::fs::read_to_string(&path)
        .map_err(|error| format!("{path}: {error} (or pass --src-mac)"))?;
    frames::parse_mac(&text).ok_or_else(|| format!("{path}: not a MAC address: {text:?}"))
}

/// Paces sending at a rate: frame `n` is due `n / rate` seconds after the start. A generator
/// that fell behind sends what is due back to back, up to `max_catch_up` frames when limited:
/// later frames are skipped.
struct Pacer {
    rate: u64,
    /// Most frames sent back to back to catch up; `None` for no limit.
    max_catch_up: Option<u64>,
}

impl Pacer {
    /// Waits shorter than this spin; longer ones sleep. Sleeping gives the core back: the
    /// kernel's receive work for the frames already sent may run on it (on a veth with an XDP
    /// program it does), and a generator spinning at high priority would starve it.
    const SPIN: Duration = Duration::from_micros(20);

    fn new(rate: u64) -> Pacer {
        Pacer {
            rate,
            max_catch_up: None,
        }
    }

    fn catching_up_at_most(self, max_catch_up: Option<u64>) -> Pacer {
        Pacer {
            max_catch_up,
            ..self
        }
    }

    /// After frame `position` of the schedule in `elapsed`: how many frames may go now, and
    /// how many of the frames due are too late to catch up with and are to be skipped (the
    /// frame due now always goes).
    fn due_and_late(&self, position: u64, elapsed: Duration) -> (usize, u64) {
        let due = self.allowed(position, elapsed);
        let keep = match self.max_catch_up {
            Some(limit) if self.rate > 0 => usize::try_from(limit.max(1)).unwrap_or(usize::MAX),
            _ => return (due, 0),
        };
        match due.checked_sub(keep) {
            Some(late) if late > 0 => (keep, late as u64),
            _ => (due, 0),
        }
    }

    /// How many frames may go now, after `sent` in `elapsed`.
    fn allowed(&self, sent: u64, elapsed: Duration) -> usize {
        if self.rate == 0 {
            return usize::MAX;
        }
        let due = (elapsed.as_secs_f64() * self.rate as f64) as u64 + 1;
        usize::try_from(due.saturating_sub(sent)).unwrap_or(usize::MAX)
    }

    /// Waits until frame `sent` is due.
    fn wait(&self, sent: u64, start: Instant) {
        if self.rate == 0 {
            return;
        }
        let due = start + Duration::from_secs_f64(sent as f64 / self.rate as f64);
        let now = Instant::now();
        if due > now + Self::SPIN {
            std::thread::sleep(due - now);
        } else {
            std::hint::spin_loop();
        }
    }
}

#[derive(Serialize, Debug)]
struct SinkReport {
    mode: &'static str,
    interface: String,
    packets: u64,
    bytes: u64,
    rx_dropped: u64,
    seconds: f64,
    pps: f64,
    /// Share of each CPU that was busy during the window, 0 to 1 (anything running counts).
    cpu_busy: Vec<f64>,
    /// Share of each CPU spent in softirq: the kernel's packet processing.
    cpu_softirq: Vec<f64>,
    /// CPU used by the --pid processes over the window, in CPUs (1.0 = one CPU all the time).
    pid_cpu: Option<f64>,
    /// False when no frame came within --wait-start (everything else is then zero).
    traffic: bool,
}

fn sink(args: &SinkArgs) -> Result<String, String> {
    let duration = bounded(args.duration, MAX_SECONDS, "duration")?;
    let wait_start = bounded(args.wait_start, MAX_SECONDS, "wait-start")?;
    let warmup = Duration::from_secs_f64(args.warmup.clamp(0.0, MAX_SECONDS));
    let read = || InterfaceCounters::read(&args.interface).map_err(|e| e.to_string());
    let cpu = || CpuTimes::read().map_err(|e| format!("/proc/stat: {e}"));
    let initial = read()?;
    eprintln!("sink: ready, counting on {}", args.interface);
    let poll = Duration::from_millis(2);
    let waiting = Instant::now();
    let traffic = loop {
        if read()?.rx_packets != initial.rx_packets {
            break true;
        }
        if waiting.elapsed() >= wait_start {
            break false;
        }
        std::thread::sleep(poll);
    };
    // A process that ended meanwhile counts for nothing rather than failing the measurement.
    let pid_ticks = || {
        (!args.pid.is_empty()).then(|| {
            args.pid
                .iter()
                .filter_map(|&pid| counters::process_ticks(pid).ok())
                .sum::<u64>()
        })
    };
    // The window starts before its first reading and ends after its last: a sink kept off
    // its core between a reading and the clock (both cores busy with higher-priority work)
    // then makes the window longer, never shorter, and cannot inflate the rate. (Timed after
    // the reading, a 0.4 s window showed 873,000 frames/s through a middle, above the raw
    // veth ceiling.)
    let (first, cpu_first, start) = match args.until_idle {
        Some(_) => (initial, cpu()?, waiting),
        None if traffic => {
            std::thread::sleep(warmup);
            let start = Instant::now();
            (read()?, cpu()?, start)
        }
        None => {
            let start = Instant::now();
            (initial, cpu()?, start)
        }
    };
    let pid_first = pid_ticks();
    match args.until_idle {
        Some(idle_ms) if traffic => {
            let idle = Duration::from_millis(idle_ms);
            let mut last = read()?;
            let mut last_change = Instant::now();
            while last_change.elapsed() < idle && start.elapsed() < duration {
                std::thread::sleep(poll.max(idle / 20));
                let now = read()?;
                if now.rx_packets != last.rx_packets {
                    last = now;
                    last_change = Instant::now();
                }
            }
        }
        None if traffic => std::thread::sleep(duration),
        _ => {}
    }
    let delta = read()?.since(&first);
    let cpu_last = cpu()?;
    let seconds = start.elapsed().as_secs_f64();
    let pid_cpu = pid_first
        .zip(pid_ticks())
        .map(|(first, last)| last.saturating_sub(first) as f64 / counters::USER_HZ / seconds);
    to_json(&SinkReport {
        mode: "sink",
        interface: args.interface.clone(),
        packets: delta.rx_packets,
        bytes: delta.rx_bytes,
        rx_dropped: delta.rx_dropped,
        seconds,
        pps: delta.rx_packets as f64 / seconds,
        cpu_busy: cpu_last.busy_since(&cpu_first),
        cpu_softirq: cpu_last.softirq_since(&cpu_first),
        pid_cpu,
        traffic,
    })
}

#[derive(Serialize, Debug, Default)]
struct ForwardReport {
    mode: &'static str,
    backend: String,
    received: [u64; 2],
    forwarded: [u64; 2],
    tx_failed: [u64; 2],
    truncated: [u64; 2],
    seconds: f64,
    /// CPU time this process used, when the kernel reports it.
    cpu_seconds: Option<f64>,
    /// Frames the kernel dropped on each port's socket (outside, inside) before the forwarder
    /// saw them, read when it stopped: AF_XDP `fill_ring_empty`, `rx_ring_full` and
    /// `too_long`; AF_PACKET `socket_queue_full`. A reason the backend does not count is
    /// absent, not zero.
    kernel_drops: Option<[KernelDropsReport; 2]>,
    /// Why it stopped: "duration", "idle" or "signal".
    stopped_by: &'static str,
    /// How the forwarding thread was scheduled, read back when it stopped: "normal",
    /// "SCHED_FIFO P", or the policy's number.
    scheduling: String,
}

#[derive(Serialize, Debug, Default)]
struct KernelDropsReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    fill_ring_empty: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rx_ring_full: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    too_long: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    socket_queue_full: Option<u64>,
}

impl From<KernelDrops> for KernelDropsReport {
    fn from(drops: KernelDrops) -> Self {
        KernelDropsReport {
            fill_ring_empty: drops.fill_ring_empty,
            rx_ring_full: drops.rx_ring_full,
            too_long: drops.too_long,
            socket_queue_full: drops.socket_queue_full,
        }
    }
}

impl ForwardReport {
    fn add(&mut self, stats: &BatchStats) {
        for i in 0..2 {
            self.received[i] += u64::from(stats.received[i]);
            self.forwarded[i] += u64::from(stats.forwarded[i]);
            self.tx_failed[i] += u64::from(stats.tx_failed[i]);
            self.truncated[i] += u64::from(stats.truncated[i]);
        }
    }
}

fn forward(args: &ForwardArgs) -> Result<String, String> {
    let duration = bounded(args.duration, MAX_FORWARD_SECONDS, "duration")?;
    let config = BackendConfig {
        outside: args.outside.clone(),
        inside: args.inside.clone(),
        workers: 1,
        batch_size: args.batch,
    };
    let idle = args.idle_exit.map(Duration::from_millis);
    // SIGTERM/SIGINT end the run with a report rather than without one.
    let stop = stop_on_signals()?;
    // One arm per backend; everything after opening is the same generic loop.
    let report = match args.backend {
        Backend::Afpacket => {
            let mut pair = afpacket::open(&config, 0).map_err(|e| e.to_string())?;
            run_at(args.worker_fifo)?;
            let mut report = forward_with(&mut pair, duration, idle, &stop)?;
            report.kernel_drops = Some(pair.read_kernel_drops().map(KernelDropsReport::from));
            report
        }
        Backend::Afxdp => {
            let defaults = afxdp::AfXdpOptions::default();
            let options = afxdp::AfXdpOptions {
                ring_size: args.ring_size.unwrap_or(defaults.ring_size),
                busy_poll: args.busy_poll,
                ..defaults
            };
            let mut pair = afxdp::open_with(&config, 0, &options).map_err(|e| e.to_string())?;
            run_at(args.worker_fifo)?;
            let mut report = forward_with(&mut pair, duration, idle, &stop)?;
            let drops = pair.read_kernel_drops().map_err(|e| e.to_string())?;
            report.kernel_drops = Some(drops.map(KernelDropsReport::from));
            report
        }
    };
    to_json(&report)
}

/// Puts the forwarding thread (the process's only one) at `SCHED_FIFO` when asked, as
/// `portcullis run --worker-fifo` does with its workers, so that both are measured alike.
fn run_at(fifo: Option<FifoPriority>) -> Result<(), String> {
    let Some(priority) = fifo else {
        return Ok(());
    };
    affinity::run_current_thread_fifo(priority).map_err(|error| {
        format!(
            "forward: {}",
            affinity::explain_fifo_error(priority, &error)
        )
    })?;
    eprintln!("forward: at SCHED_FIFO priority {priority}");
    Ok(())
}

/// Forwards everything until `duration` has passed, `idle` after the last frame, or `stop`.
fn forward_with<P: PortPair>(
    pair: &mut P,
    duration: Duration,
    idle: Option<Duration>,
    stop: &AtomicBool,
) -> Result<ForwardReport, String> {
    let mut report = ForwardReport {
        mode: "forward",
        backend: pair.info().to_string(),
        stopped_by: "duration",
        ..ForwardReport::default()
    };
    eprintln!("forward: ready, {}", report.backend);
    let cpu_before = counters::own_cpu_nanoseconds();
    let poll = Duration::from_millis(20);
    let start = Instant::now();
    let mut last_frame: Option<Instant> = None;
    while start.elapsed() < duration {
        if stop.load(Ordering::Relaxed) {
            report.stopped_by = "signal";
            break;
        }
        let stats = pair
            .poll(poll, |_, _| Disposition::Forward)
            .map_err(|e| e.to_string())?;
        if stats.received != [0, 0] {
            last_frame = Some(Instant::now());
        }
        report.add(&stats);
        if let (Some(idle), Some(last)) = (idle, last_frame)
            && last.elapsed() >= idle
        {
            report.stopped_by = "idle";
            break;
        }
    }
    report.seconds = start.elapsed().as_secs_f64();
    report.scheduling = match affinity::current_thread_scheduling() {
        Ok(Scheduling::Normal) => "normal".to_string(),
        Ok(Scheduling::Fifo(priority)) => format!("SCHED_FIFO {priority}"),
        Ok(Scheduling::Other { policy, priority }) => {
            format!("policy {policy} priority {priority}")
        }
        Err(error) => format!("unknown ({error})"),
    };
    report.cpu_seconds = cpu_before
        .zip(counters::own_cpu_nanoseconds())
        .map(|(before, after)| after.saturating_sub(before) as f64 / 1e9);
    Ok(report)
}

#[derive(Serialize, Debug)]
struct RulesReport {
    mode: &'static str,
    rules: usize,
    calico: PathBuf,
    bridge: PathBuf,
    inet: PathBuf,
}

fn write_rules(args: &RulesArgs) -> Result<String, String> {
    let name_ok = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if args.table.is_empty() || args.table.len() > 64 || !args.table.chars().all(name_ok) {
        return Err(format!(
            "table name {:?}: letters, digits and '_', at most 64",
            args.table
        ));
    }
    let rules = rules::rules(args.count, args.dst_port).map_err(|e| e.to_string())?;
    let calico = args.out.join("calico");
    std::fs::create_dir_all(&calico).map_err(|e| format!("{}: {e}", calico.display()))?;
    let files = [
        (
            calico.join("policy.yaml"),
            rules::calico_yaml(&rules, args.sink),
        ),
        (
            args.out.join("bridge.nft"),
            rules::nft_bridge(&rules, &args.table),
        ),
        (
            args.out.join("inet.nft"),
            rules::nft_inet(&rules, &args.table),
        ),
    ];
    for (path, text) in &files {
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let [(_, _), (bridge, _), (inet, _)] = files;
    to_json(&RulesReport {
        mode: "rules",
        rules: rules.len(),
        calico,
        bridge,
        inet,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_lets_frames_go_only_when_due() {
        let pacer = Pacer::new(1000);
        // (already sent, elapsed ms, frames allowed now)
        let cases = [
            (0, 0, 1),
            (1, 0, 0),
            (0, 10, 11),
            (5, 10, 6),
            (11, 10, 0),
            (2000, 1000, 0),
        ];
        for (sent, elapsed, allowed) in cases {
            assert_eq!(
                pacer.allowed(sent, Duration::from_millis(elapsed)),
                allowed,
                "sent {sent} after {elapsed} ms"
            );
        }
        assert_eq!(Pacer::new(0).allowed(1 << 40, Duration::ZERO), usize::MAX);
    }

    #[test]
    fn a_late_generator_catches_up_at_most_as_far_as_allowed() {
        let limited = Pacer::new(1000).catching_up_at_most(Some(64));
        // (schedule position, elapsed ms, (frames allowed now, frames skipped))
        let cases = [
            (0, 0, (1, 0)),
            (0, 10, (11, 0)),
            (0, 63, (64, 0)),
            (0, 64, (64, 1)),
            (0, 1000, (64, 937)),
            (937, 1000, (64, 0)),
            (2000, 1000, (0, 0)),
        ];
        for (position, elapsed, expected) in cases {
            assert_eq!(
                limited.due_and_late(position, Duration::from_millis(elapsed)),
                expected,
                "position {position} after {elapsed} ms"
            );
        }
        // Without a limit, or flat out, nothing is skipped.
        let unlimited = Pacer::new(1000);
        assert_eq!(
            unlimited.due_and_late(0, Duration::from_millis(1000)),
            (1001, 0)
        );
        let flat_out = Pacer::new(0).catching_up_at_most(Some(64));
        assert_eq!(flat_out.due_and_late(0, Duration::ZERO), (usize::MAX, 0));
        // A limit of 0 still lets the frame that is due go.
        let zero = Pacer::new(1000).catching_up_at_most(Some(0));
        assert_eq!(zero.due_and_late(0, Duration::from_millis(10)), (1, 10));
    }

    #[test]
    fn a_refused_send_offers_one_frame_more_than_it_sent() {
        // (accepted, batch, offered)
        let cases = [
            (64, 64, 64),
            (0, 64, 1),
            (10, 64, 11),
            (63, 64, 64),
            (1, 1, 1),
        ];
        for (accepted, batch, expected) in cases {
            assert_eq!(offered(accepted, batch), expected, "{accepted} of {batch}");
        }
    }

    #[test]
    fn durations_are_bounded() {
        let cases = [
            (1.0, true),
            (10.0, true),
            (10.5, false),
            (0.0, false),
            (-1.0, false),
            (f64::NAN, false),
        ];
        for (seconds, ok) in cases {
            assert_eq!(
                bounded(seconds, MAX_SECONDS, "duration").is_ok(),
                ok,
                "{seconds}"
            );
        }
    }
}
