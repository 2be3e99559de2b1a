//! `portcullis run`: the gateway process (SPEC §A3, §A5, §A7).
//!
//! ```text
//!  start:  load + validate + compile config/ ──► generation 1 ──► SnapshotHandle
//!          (any problem: print them all, exit 1, the ports are never touched)
//!          PathShared (conntrack, fragments) from the settings
//!          open every worker's PortPair (AF_XDP, or AF_PACKET) ──► one pinned thread each
//!          (at SCHED_FIFO with --worker-fifo P: the workers only; refused ──► exit 1)
//!
//!  workers (×N)      loop: load snapshot, read clock, poll both ports, judge each frame
//!  housekeeping      every 10 ms: PathShared::housekeeping(now)
//!  config thread     directory change (debounced) or SIGHUP ──► Reloader::reload
//!                      ──► SnapshotHandle::publish; sd_notify RELOADING=1 … READY=1
//!  admin listener    /metrics /liveness /readiness /status (Observed)
//!  main (control)    waits for signals:
//!                      SIGHUP          ──► ask the config thread for a reload
//!                      SIGTERM/SIGINT  ──► stop
//!                    or for a worker that ended (its backend failed) ──► stop, exit 1
//!
//!  stop:   set the stop flag; workers finish their batch and close their ports; join;
//!          print the final counters; exit 0
//! ```
//!
//! Forwarding starts only after the first snapshot exists: it is compiled before any port is
//! opened, and a reload only ever replaces one valid snapshot with another. Reloads run on
//! the config thread one at a time, whatever asked for them.
//!
//! The config thread watches from before the first load, so that a change made while the
//! gateway starts is not missed: it is replayed once the gateway forwards. The admin
//! listener starts before the first load when `--admin-listen` names it (so that
//! `/readiness` answers "not ready" during startup), else once the settings say where.

mod backend;
mod counters;
pub(crate) mod log;
pub mod observe;
pub mod reload;
mod worker;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

pub use backend::{BackendChoice, BackendKind};
pub use counters::Totals;
pub use reload::{Loaded, ReloadOutcome, ReloadReport, Reloader, ResourceCounts, load_snapshot};
pub use worker::{BackendCounters, POLL_TIMEOUT, WorkerHandle};

use crate::admin::{AdminListen, AdminServer, GatewayInfo, ReloadLog};
use crate::dataplane::BackendConfig;
use crate::dataplane::affinity::{self, FifoPriority};
use crate::logging::{LogFormat, Logging, Severity, TracingSink};
use crate::model::Problem;
use crate::pipeline::{PathShared, WorkerCounters, clock_now};
use crate::snapshot::SnapshotHandle;
use crate::systemd::Notifier;
use crate::watch::{ConfigWatcher, DebounceConfig, ReloadCause};
use log::{error, info, warning};
use observe::Observed;

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
    /// Run the worker threads (only them) at this `SCHED_FIFO` priority; `None` for the
    /// normal policy. See `dataplane::affinity` for when it helps.
    pub worker_fifo: Option<FifoPriority>,
    /// Where the admin HTTP listener serves `/metrics`, `/status` and health; `None` for
    /// where the settings say.
    pub admin_listen: Option<AdminListen>,
    pub log_format: LogFormat,
    /// Fixed by the command line; `None` to follow `logSeverityScreen`.
    pub log_severity: Option<Severity>,
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
    #[error("{0}")]
    Admin(#[from] crate::admin::AdminError),
    #[error("admin listener: {0}")]
    AdminAddress(String),
    #[error("{0}")]
    Watch(#[from] crate::watch::WatchError),
}

/// What the control side runs beside the workers.
struct Control {
    observed: Arc<Observed>,
    admin: Option<AdminServer>,
    logging: Option<Arc<Logging>>,
    notifier: Arc<Notifier>,
    /// The config thread, watching since before the first load.
    watcher: Option<ConfigWatcher>,
    slot: Arc<ReloadSlot>,
}

/// Where the config thread finds the reloader. The thread watches from before the first
/// load, so that no change is missed, but the reloader exists only once the gateway
/// forwards: a change that comes before is remembered and replayed then.
#[derive(Debug, Default)]
struct ReloadSlot(parking_lot::Mutex<SlotState>);

#[derive(Debug, Default)]
struct SlotState {
    reloader: Option<Arc<Reloader>>,
    missed: bool,
}

impl ReloadSlot {
    /// The reloader, or `None` after noting that a reload was wanted.
    fn get_or_remember(&self) -> Option<Arc<Reloader>> {
        let mut state = self.0.lock();
        if state.reloader.is_none() {
            state.missed = true;
        }
        state.reloader.clone()
    }

    /// Puts the reloader in place; `true` when a reload was wanted before.
    fn install(&self, reloader: Arc<Reloader>) -> bool {
        let mut state = self.0.lock();
        state.reloader = Some(reloader);
        std::mem::take(&mut state.missed)
    }
}

/// The config thread, calling the reloader in `slot` for each change or request; `None`
/// (with a warning) when the directory cannot be watched: SIGHUP still reloads.
fn start_config_thread(
    dir: &Path,
    slot: &Arc<ReloadSlot>,
    notifier: &Arc<Notifier>,
) -> Option<ConfigWatcher> {
    let slot = Arc::clone(slot);
    let notifier = Arc::clone(notifier);
    let watcher = ConfigWatcher::spawn(dir, DebounceConfig::default(), move |cause| {
        if let Some(reloader) = slot.get_or_remember() {
            let trigger = match cause {
                ReloadCause::Files => "files",
                ReloadCause::Requested => "SIGHUP",
            };
            reload_and_notify(&reloader, &notifier, trigger);
        }
    });
    match watcher {
        Ok(watcher) => Some(watcher),
        Err(err) => {
            // Out of inotify watches, say: keep forwarding, reload on SIGHUP only.
            warning!("{err}; changes to the directory are not noticed, only SIGHUP reloads");
            None
        }
    }
}

/// One reload, bracketed by RELOADING=1 and READY=1 for systemd.
fn reload_and_notify(reloader: &Reloader, notifier: &Notifier, trigger: &str) {
    notifier.reloading();
    let report = reloader.reload(trigger);
    notifier.ready(&match report.outcome {
        ReloadOutcome::Published { generation, .. } => {
            format!("forwarding; policy generation {generation}")
        }
        ReloadOutcome::Rejected { kept, problems } => format!(
            "forwarding; policy generation {kept}; the last reload was refused ({} problems)",
            problems.len()
        ),
    });
}

/// Runs the gateway until SIGTERM/SIGINT; returns the process's exit code.
pub fn run(config: &RunConfig) -> ExitCode {
    let logging = match Logging::init(config.log_format, config.log_severity) {
        Ok(logging) => Some(Arc::new(logging)),
        Err(err) => {
            // Another subscriber is installed (the process embeds portcullis): use it.
            eprintln!("portcullis: {err}");
            None
        }
    };
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
    let stop = Arc::new(AtomicBool::new(false));
    let observed = Arc::new(Observed::new(
        GatewayInfo {
            config_dir: config.config_dir.display().to_string(),
            outside: config.outside.clone(),
            inside: config.inside.clone(),
            started_at: Some(SystemTime::now()),
            ..GatewayInfo::default()
        },
        Arc::new(ReloadLog::default()),
        Arc::clone(&stop),
    ));
    // Named on the command line, the listener answers during startup already ("not ready").
    let mut admin = None;
    if let Some(AdminListen::At(addr)) = config.admin_listen {
        match AdminServer::spawn(addr, Arc::clone(&observed) as _) {
            Ok(server) => admin = Some(server),
            Err(err) => return fail(&err.into()),
        }
    }
    let notifier = Arc::new(Notifier::from_env());
    let slot = Arc::new(ReloadSlot::default());
    let watcher = start_config_thread(&config.config_dir, &slot, &notifier);
    let loaded = match load_first(&config.config_dir, observed.reloads()) {
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
    if let Some(logging) = &logging {
        logging.apply_setting(&loaded.settings.log_severity);
    }
    if config.admin_listen.is_none() {
        admin = match AdminListen::from_settings(&loaded.settings) {
            Ok(AdminListen::At(addr)) => match AdminServer::spawn(addr, Arc::clone(&observed) as _)
            {
                Ok(server) => Some(server),
                Err(err) => return fail(&err.into()),
            },
            Ok(AdminListen::Off) => None,
            Err(message) => return fail(&GatewayError::AdminAddress(message)),
        };
    }
    let control = Control {
        observed,
        admin,
        logging,
        notifier,
        watcher,
        slot,
    };
    match serve(config, loaded, signals, stop, control) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

/// The load at start, recorded like a reload (trigger `start`).
fn load_first(dir: &Path, record: &ReloadLog) -> Result<Loaded, Vec<Problem>> {
    let started = Instant::now();
    let loaded = load_snapshot(dir, 1);
    let outcome = match &loaded {
        Ok(loaded) => ReloadOutcome::Published {
            generation: 1,
            counts: loaded.counts,
        },
        Err(problems) => ReloadOutcome::Rejected {
            kept: 0,
            problems: problems.iter().map(ToString::to_string).collect(),
        },
    };
    let report = ReloadReport {
        outcome,
        duration: started.elapsed(),
    };
    record.record(reload::attempt("start", &report));
    loaded
}

fn fail(err: &GatewayError) -> ExitCode {
    error!("{err}");
    ExitCode::from(1)
}

fn serve(
    config: &RunConfig,
    loaded: Loaded,
    mut signals: Signals,
    stop: Arc<AtomicBool>,
    control: Control,
) -> Result<(), GatewayError> {
    let shared = Arc::new(PathShared::with_log_sink(
        &loaded.settings,
        Arc::new(TracingSink),
    )?);
    let generation = loaded.snapshot.generation();
    let counts = loaded.counts;
    let conntrack_max_entries = loaded.settings.conntrack_max_entries;
    let snapshots = Arc::new(SnapshotHandle::new(loaded.snapshot));
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
        fifo: config.worker_fifo,
    };
    let workers = backend::open_and_run(config.backend, &backend_config, spawn)
        .map_err(|error| GatewayError::Backend(backend::explain_backend_error(&error)))?
        .map_err(|source| GatewayError::Io {
            what: "start the workers",
            source,
        })?;
    let housekeeping = start_housekeeping(Arc::clone(&shared), Arc::clone(&stop))?;
    log_started(config, &workers, generation, counts, control.admin.as_ref());
    if let Some(first) = workers.first() {
        control.observed.forwarding(
            Arc::clone(&snapshots),
            Arc::clone(&shared),
            workers
                .iter()
                .map(|w| Arc::clone(&w.backend_counters))
                .collect(),
            first.backend,
            &first.mode,
            u64::from(conntrack_max_entries),
        );
    }
    control
        .notifier
        .ready(&format!("forwarding; policy generation {generation}"));

    let reloader = Arc::new(
        Reloader::new(
            config.config_dir.clone(),
            Arc::clone(&snapshots),
            Arc::clone(&shared),
            loaded.settings,
        )
        .observed(
            Arc::clone(control.observed.reloads()),
            control.logging.clone(),
        ),
    );
    let requester = control.watcher.as_ref().map(ConfigWatcher::requester);
    if control.slot.install(Arc::clone(&reloader)) {
        // The directory changed after the first load began: catch up now.
        if let Some(requester) = &requester {
            requester.request();
        }
    }
    // The iterator ends when a worker that stopped closes it (see `worker::WakeOnExit`).
    for signal in signals.forever() {
        match signal {
            SIGHUP => match &requester {
                // On the config thread, after (or instead of) any pending change.
                Some(requester) if requester.request() => {}
                _ => reload_and_notify(&reloader, &control.notifier, "SIGHUP"),
            },
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
    control.notifier.stopping();
    // Relaxed: the flag carries no data; the joins below order everything else.
    stop.store(true, Ordering::Relaxed);
    // A reload in progress finishes first; none starts after this.
    drop(control.watcher);
    let (counters, failure) = join_workers(workers);
    if let Some(admin) = control.admin {
        admin.stop();
    }
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
    admin: Option<&AdminServer>,
) {
    let workers: Vec<String> = workers
        .iter()
        .map(|w| {
            let place = match w.cpu {
                Some(cpu) => format!("on CPU {cpu}"),
                None => "unpinned".to_string(),
            };
            let policy = match w.fifo {
                Some(priority) => format!(" at SCHED_FIFO priority {priority}"),
                None => String::new(),
            };
            format!("worker {} {place}{policy}: {}", w.index, w.info)
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
    match admin {
        Some(admin) => info!(
            "admin listener on http://{}: /metrics /liveness /readiness /status",
            admin.local_addr()
        ),
        None => info!("admin listener off"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Settings;

    fn reloader() -> Arc<Reloader> {
        let model = crate::model::Model {
            resources: Vec::new(),
            settings: Settings::default(),
        };
        let snapshot = crate::compile::compile(&crate::policy::resolve(&model).unwrap(), 1);
        Arc::new(Reloader::new(
            PathBuf::from("/nonexistent"),
            Arc::new(SnapshotHandle::new(snapshot)),
            Arc::new(PathShared::new(&Settings::default()).unwrap()),
            Settings::default(),
        ))
    }

    #[test]
    fn a_change_before_the_reloader_exists_is_replayed_once() {
        let slot = ReloadSlot::default();
        assert!(slot.get_or_remember().is_none());
        assert!(slot.install(reloader()), "the early change is reported");
        assert!(slot.get_or_remember().is_some());
        assert!(!slot.install(reloader()), "and only once");
    }

    #[test]
    fn no_change_before_means_nothing_to_replay() {
        let slot = ReloadSlot::default();
        assert!(!slot.install(reloader()));
    }
}
