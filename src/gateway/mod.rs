//! `portcullis run`: the gateway process (SPEC §A3, §A5, §A7).
//!
//! ```text
//!  start:  load + validate + compile config/ ──► generation 1 ──► SnapshotHandle
//!          (any problem: print them all, exit 1, the ports are never touched)
//!          PathShared (conntrack, fragments) from the settings
//!          open every worker's PortPair (AF_XDP, or AF_PACKET) ──► one pinned thread each
//!
//!  workers (×N)      loop: load snapshot, read clock, poll both ports, judge each frame
//!  housekeeping      every 10 ms: PathShared::housekeeping(now)
//!  main (control)    waits for signals:
//!                      SIGHUP          ──► Reloader::reload ──► SnapshotHandle::publish
//!                      SIGTERM/SIGINT  ──► stop
//!                    or for a worker that ended (its backend failed) ──► stop, exit 1
//!
//!  stop:   set the stop flag; workers finish their batch and close their ports; join;
//!          print the final counters; exit 0
//! ```
//!
//! Forwarding starts only after the first snapshot exists: it is compiled before any port is
//! opened, and a reload only ever replaces one valid snapshot with another.

mod backend;
mod clock;
mod counters;
pub(crate) mod log;
pub mod reload;
mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

pub use backend::{BackendChoice, BackendKind};
pub use clock::clock_now;
pub use counters::Totals;
pub use reload::{Loaded, ReloadOutcome, ReloadReport, Reloader, ResourceCounts, load_snapshot};
pub use worker::{BackendCounters, POLL_TIMEOUT, WorkerHandle};

use crate::dataplane::{BackendConfig, affinity};
use crate::pipeline::{PathShared, WorkerCounters};
use crate::snapshot::SnapshotHandle;
use log::{error, info, warning};

/// How often expired connections and fragments are swept.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(10);
/// Frames per poll, per port.
const BATCH_SIZE: usize = 64;

/// What `portcullis run` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunConfig {
    pub config_dir: PathBuf,
    pub outside: String,
    pub inside: String,
    pub backend: BackendChoice,
    pub workers: usize,
    /// Where the admin HTTP listener will serve `/metrics`, `/status` and health; recorded
    /// and reported, not served yet.
    pub admin_listen: SocketAddr,
}

/// Why the gateway did not start or did not stop cleanly. Each is printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    Backend(String),
    #[error("connection tracking: {0}")]
    Path(#[from] crate::pipeline::PathError),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("worker {index} stopped: {message}")]
    Worker { index: usize, message: String },
}

/// Runs the gateway until SIGTERM/SIGINT; returns the process's exit code.
pub fn run(config: &RunConfig) -> ExitCode {
    // Registered first, so that a SIGTERM that arrives while starting stops the gateway
    // cleanly instead of killing it with the ports half open.
    let signals = match Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(signals) => signals,
        Err(source) => {
            return fail(&GatewayError::Io {
                what: "install the signal handlers",
                source,
            });
        }
    };
    let loaded = match load_snapshot(&config.config_dir, 1) {
        Ok(loaded) => loaded,
        Err(problems) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            error!(
                "refusing to start: {} has {} problem(s); the ports were not touched",
                config.config_dir.display(),
                problems.len()
            );
            return ExitCode::from(1);
        }
    };
    match serve(config, loaded, signals) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

fn fail(err: &GatewayError) -> ExitCode {
    error!("{err}");
    ExitCode::from(1)
}

fn serve(config: &RunConfig, loaded: Loaded, mut signals: Signals) -> Result<(), GatewayError> {
    let shared = Arc::new(PathShared::new(&loaded.settings)?);
    let generation = loaded.snapshot.generation();
    let counts = loaded.counts;
    let snapshots = Arc::new(SnapshotHandle::new(loaded.snapshot));
    let stop = Arc::new(AtomicBool::new(false));
    let backend_config = BackendConfig {
        outside: config.outside.clone(),
        inside: config.inside.clone(),
        workers: config.workers,
        batch_size: BATCH_SIZE,
    };
    let cpus = affinity::allowed_cpus().unwrap_or_else(|error| {
        warning!("cannot read the CPUs this process may use ({error}); workers run unpinned");
        Vec::new()
    });
    if !cpus.is_empty() && config.workers > cpus.len() {
        warning!(
            "{} workers on {} CPUs: some workers share a core",
            config.workers,
            cpus.len()
        );
    }
    let spawn = worker::SpawnWorkers {
        shared: Arc::clone(&shared),
        snapshots: Arc::clone(&snapshots),
        stop: Arc::clone(&stop),
        signals: signals.handle(),
        cpus,
    };
    let workers = backend::open_and_run(config.backend, &backend_config, spawn)
        .map_err(|error| GatewayError::Backend(backend::explain_backend_error(&error)))?
        .map_err(|source| GatewayError::Io {
            what: "start a worker thread",
            source,
        })?;
    let housekeeping = start_housekeeping(Arc::clone(&shared), Arc::clone(&stop))?;
    log_started(config, &workers, generation, counts);

    let reloader = Reloader::new(
        config.config_dir.clone(),
        Arc::clone(&snapshots),
        Arc::clone(&shared),
        loaded.settings,
    );
    // The iterator ends when a worker that stopped closes it (see `worker::WakeOnExit`).
    for signal in signals.forever() {
        match signal {
            SIGHUP => {
                reloader.reload("SIGHUP");
            }
            _ => {
                info!(
                    "{}: stopping",
                    if signal == SIGINT {
                        "SIGINT"
                    } else {
                        "SIGTERM"
                    }
                );
                break;
            }
        }
    }
    // Relaxed: the flag carries no data; the joins below order everything else.
    stop.store(true, Ordering::Relaxed);
    let (counters, failure) = join_workers(workers);
    let _ = housekeeping.join();
    let totals = Totals::sum(
        counters.iter().map(|(path, backend)| (&**path, &**backend)),
        shared.conntrack_stats(),
    );
    print!("{}", totals.report());
    match failure {
        Some(err) => Err(err),
        None => {
            info!("stopped");
            Ok(())
        }
    }
}

/// Joins every worker (each closes its ports as it ends); returns their counters and the
/// first failure.
fn join_workers(workers: Vec<WorkerHandle>) -> (Vec<WorkerCountersPair>, Option<GatewayError>) {
    let mut failure = None;
    let mut counters = Vec::with_capacity(workers.len());
    for worker in workers {
        let message = match worker.thread.join() {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(backend::explain_backend_error(&error)),
            Err(_) => Some("the worker thread panicked".to_string()),
        };
        if let Some(message) = message {
            failure.get_or_insert(GatewayError::Worker {
                index: worker.index,
                message,
            });
        }
        counters.push((worker.path_counters, worker.backend_counters));
    }
    (counters, failure)
}

type WorkerCountersPair = (Arc<WorkerCounters>, Arc<BackendCounters>);

fn start_housekeeping(
    shared: Arc<PathShared>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, GatewayError> {
    thread::Builder::new()
        .name("housekeeping".to_string())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                shared.housekeeping(clock_now());
                thread::sleep(HOUSEKEEPING_INTERVAL);
            }
        })
        .map_err(|source| GatewayError::Io {
            what: "start the housekeeping thread",
            source,
        })
}

fn log_started(
    config: &RunConfig,
    workers: &[WorkerHandle],
    generation: u64,
    counts: ResourceCounts,
) {
    let workers: Vec<String> = workers
        .iter()
        .map(|w| match w.cpu {
            Some(cpu) => format!("worker {} on CPU {cpu}: {}", w.index, w.info),
            None => format!("worker {} unpinned: {}", w.index, w.info),
        })
        .collect();
    info!(
        "forwarding between outside {} and inside {}; policy {} generation {generation} \
         ({counts}); {}",
        config.outside,
        config.inside,
        config.config_dir.display(),
        workers.join("; ")
    );
    info!(
        "admin listener {}: recorded, not served by this version yet",
        config.admin_listen
    );
}
