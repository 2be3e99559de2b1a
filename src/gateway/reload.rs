//! Loading the configuration directory into a snapshot, at start and on every reload.
//!
//! ```text
//!  trigger (start, SIGHUP, later the directory watcher)
//!     │
//!     ▼
//!  load + validate (model) ─► resolve (policy) ─► compile ─► SnapshotHandle::publish
//!     │ any problem                                              (one atomic store)
//!     ▼
//!  log every problem once; the snapshot in force stays
//! ```
//!
//! All or nothing: a directory is either wholly valid and becomes the next generation, or
//! nothing changes. Everything is built off to the side; workers never see a half-built
//! snapshot and are never paused.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

use super::log::{error, info, warning};
use crate::admin::{ReloadAttempt, ReloadLog};
use crate::compile;
use crate::logging::Logging;
use crate::model::{self, Limits, Problem, Settings};
use crate::pipeline::{PathShared, clock_now};
use crate::policy;
use crate::snapshot::{Snapshot, SnapshotHandle};

/// A directory that loaded, validated, resolved and compiled.
#[derive(Debug)]
pub struct Loaded {
    pub snapshot: Snapshot,
    pub settings: Settings,
    pub counts: ResourceCounts,
}

/// Sizes reported in the log line of each load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceCounts {
    pub resources: usize,
    pub endpoints: usize,
    /// Rules of the snapshot, defaults that can decide included.
    pub rules: usize,
}

impl std::fmt::Display for ResourceCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} resources, {} endpoints, {} rules",
            self.resources, self.endpoints, self.rules
        )
    }
}

/// Loads `dir` as generation `generation`, or returns every problem found.
pub fn load_snapshot(dir: &Path, generation: u64) -> Result<Loaded, Vec<Problem>> {
    let model = model::load_model(dir, &Limits::default())?;
    let resolved = policy::resolve(&model)?;
    let snapshot = compile::compile(&resolved, generation);
    let counts = ResourceCounts {
        resources: model.resources.len(),
        endpoints: snapshot.endpoint_count(),
        rules: snapshot.rule_count(),
    };
    Ok(Loaded {
        snapshot,
        settings: model.settings,
        counts,
    })
}

/// What one reload attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The directory became generation `generation`.
    Published {
        generation: u64,
        counts: ResourceCounts,
    },
    /// The directory was refused; generation `kept` stays in force.
    Rejected { kept: u64, problems: Vec<String> },
}

/// One reload attempt, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    pub outcome: ReloadOutcome,
    pub duration: Duration,
}

/// Reloads the directory on demand. Attempts are serialised, so two triggers at once (a
/// signal and a file change) produce two whole attempts one after the other, never a mix.
#[derive(Debug)]
pub struct Reloader {
    dir: PathBuf,
    snapshots: Arc<SnapshotHandle>,
    shared: Arc<PathShared>,
    /// The settings the shared path was built with at start.
    started_with: Settings,
    state: Mutex<ReloadState>,
    /// Where each attempt is recorded for `/metrics` and `/status`.
    record: Option<Arc<ReloadLog>>,
    /// The log, whose level follows `logSeverityScreen`.
    logging: Option<Arc<Logging>>,
}

#[derive(Debug, Default)]
struct ReloadState {
    /// The problems of the last rejected attempt, so a directory that stays broken across
    /// several attempts has each problem logged once, not once per attempt.
    last_problems: Vec<String>,
}

impl Reloader {
    pub fn new(
        dir: PathBuf,
        snapshots: Arc<SnapshotHandle>,
        shared: Arc<PathShared>,
        started_with: Settings,
    ) -> Reloader {
        Reloader {
            dir,
            snapshots,
            shared,
            started_with,
            state: Mutex::new(ReloadState::default()),
            record: None,
            logging: None,
        }
    }

    /// Record every attempt in `record`, and apply `logSeverityScreen` to `logging` after
    /// each successful one.
    pub fn observed(mut self, record: Arc<ReloadLog>, logging: Option<Arc<Logging>>) -> Reloader {
        self.record = Some(record);
        self.logging = logging;
        self
    }

    /// Loads the directory again, whatever changed or not, and publishes it as the next
    /// generation if it is valid. `trigger` names the cause in the log line.
    pub fn reload(&self, trigger: &str) -> ReloadReport {
        let mut state = self.state.lock();
        let started = Instant::now();
        let current = self.snapshots.generation();
        let generation = current + 1;
        let outcome = match load_snapshot(&self.dir, generation) {
            Ok(loaded) => {
                self.snapshots.publish(loaded.snapshot);
                state.last_problems.clear();
                self.after_publish(&loaded.settings, generation);
                ReloadOutcome::Published {
                    generation,
                    counts: loaded.counts,
                }
            }
            Err(problems) => {
                let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
                log_new_problems(&state.last_problems, &problems);
                state.last_problems.clone_from(&problems);
                ReloadOutcome::Rejected {
                    kept: current,
                    problems,
                }
            }
        };
        let report = ReloadReport {
            outcome,
            duration: started.elapsed(),
        };
        log_report(&self.dir, trigger, &report);
        if let Some(record) = &self.record {
            record.record(attempt(trigger, &report));
        }
        report
    }

    fn after_publish(&self, settings: &Settings, generation: u64) {
        if let Some(logging) = &self.logging {
            logging.apply_setting(&settings.log_severity);
        }
        let changed = restart_only_changes(&self.started_with, settings);
        if !changed.is_empty() {
            warning!(
                "reload: generation {generation}: settings that apply only at start changed \
                 and keep their start values until the next restart: {}",
                changed.join(", ")
            );
        }
        if settings.revalidate_on_reload {
            revalidate_established(&self.shared, &self.snapshots.load(), generation);
        }
    }
}

/// Re-checks tracked connections against the snapshot just published and removes those it
/// no longer allows (`revalidateOnReload`). Workers keep forwarding meanwhile: a packet of a
/// connection about to be removed may still pass, as it would have a moment before.
fn revalidate_established(shared: &PathShared, snapshot: &Snapshot, generation: u64) {
    let started = Instant::now();
    let removed = shared.revalidate(snapshot, clock_now());
    info!(
        "reload: generation {generation}: revalidateOnReload: {removed} tracked connection(s) \
         no longer allowed, removed; {:.1} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
}

/// A reload attempt as `/metrics` and `/status` show it.
pub fn attempt(trigger: &str, report: &ReloadReport) -> ReloadAttempt {
    let (successful, generation, problems) = match &report.outcome {
        ReloadOutcome::Published { generation, .. } => (true, *generation, 0),
        ReloadOutcome::Rejected { kept, problems } => (false, *kept, problems.len()),
    };
    ReloadAttempt {
        at: SystemTime::now(),
        successful,
        trigger: trigger.to_owned(),
        generation,
        duration: report.duration,
        problems,
    }
}

fn log_new_problems(previous: &[String], problems: &[String]) {
    let mut repeated = 0;
    for problem in problems {
        if previous.contains(problem) {
            repeated += 1;
        } else {
            error!("reload: {problem}");
        }
    }
    if repeated > 0 {
        error!("reload: {repeated} problem(s) as logged at the previous attempt");
    }
}

/// One line per attempt; in JSON the generation, result, counts and duration are also
/// fields of their own, for log queries.
fn log_report(dir: &Path, trigger: &str, report: &ReloadReport) {
    let millis = report.duration.as_secs_f64() * 1000.0;
    match &report.outcome {
        ReloadOutcome::Published { generation, counts } => tracing::info!(
            trigger,
            generation,
            result = "published",
            resources = counts.resources,
            endpoints = counts.endpoints,
            rules = counts.rules,
            duration_ms = millis,
            "reload ({trigger}): {}: generation {generation} published: {counts}; {millis:.1} ms",
            dir.display()
        ),
        ReloadOutcome::Rejected { kept, problems } => tracing::error!(
            trigger,
            generation = kept,
            result = "refused",
            problems = problems.len(),
            duration_ms = millis,
            "reload ({trigger}): {}: refused, {} problem(s); generation {kept} stays in force; \
             {millis:.1} ms",
            dir.display(),
            problems.len()
        ),
    }
}

/// Names of the settings that differ between `old` and `new` and that are read only at start
/// (the connection table's and fragment tracker's sizes and timeouts,
/// listeners). Settings compiled into the snapshot (failsafe ports, unmatched traffic,
/// anti-spoofing, inside networks, EtherTypes, the Log rate) apply with it.
pub fn restart_only_changes(old: &Settings, new: &Settings) -> Vec<&'static str> {
    // logSeverityScreen is not here: the log level follows every reload.
    let checks: [(&'static str, bool); 6] = [
        (
            "conntrackMaxEntries",
            old.conntrack_max_entries != new.conntrack_max_entries,
        ),
        (
            "conntrackTimeouts",
            old.conntrack_timeouts != new.conntrack_timeouts,
        ),
        (
            "tcpLoosePickup",
            old.tcp_loose_pickup != new.tcp_loose_pickup,
        ),
        (
            "fragmentTrackerMaxEntries",
            old.fragment_tracker_max_entries != new.fragment_tracker_max_entries,
        ),
        (
            "prometheusMetrics*",
            (old.metrics_enabled, &old.metrics_host, old.metrics_port)
                != (new.metrics_enabled, &new.metrics_host, new.metrics_port),
        ),
        (
            "health*",
            (old.health_enabled, &old.health_host, old.health_port)
                != (new.health_enabled, &new.health_host, new.health_port),
        ),
    ];
    checks
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: web
  labels: { role: web }
spec:
  node: web
  expectedIPs: ["203.0.113.110"]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: allow-web
spec:
  selector: role == 'web'
  ingress:
    - action: Allow
      protocol: TCP
      destination: { ports: [80] }
"#;

    const BROKEN: &str = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: broken
spec:
  selector: role == 'web'
  ingress:
    - action: Alow
"#;

    struct Dir(PathBuf);

    impl Dir {
        fn new(tag: &str) -> Dir {
            let path = std::env::temp_dir()
                .join(format!("portcullis-reload-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            Dir(path)
        }

        fn write(&self, name: &str, text: &str) {
            std::fs::write(self.0.join(name), text).unwrap();
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn reloader(dir: &Dir) -> (Reloader, Arc<SnapshotHandle>) {
        let loaded = load_snapshot(&dir.0, 1).unwrap();
        let shared = Arc::new(PathShared::new(&loaded.settings).unwrap());
        let handle = Arc::new(SnapshotHandle::new(loaded.snapshot));
        let reloader = Reloader::new(dir.0.clone(), Arc::clone(&handle), shared, loaded.settings);
        (reloader, handle)
    }

    #[test]
    fn a_valid_directory_becomes_the_next_generation() {
        let dir = Dir::new("valid");
        dir.write("a.yaml", VALID);
        let (reloader, handle) = reloader(&dir);
        assert_eq!(handle.generation(), 1);
        let report = reloader.reload("test");
        assert!(
            matches!(
                report.outcome,
                ReloadOutcome::Published { generation: 2, counts } if counts.resources == 2
                    && counts.endpoints == 1
            ),
            "{report:?}"
        );
        assert_eq!(handle.generation(), 2);
    }

    #[test]
    fn a_broken_directory_keeps_the_snapshot_in_force() {
        let dir = Dir::new("broken");
        dir.write("a.yaml", VALID);
        let (reloader, handle) = reloader(&dir);
        let before = handle.load_full();
        dir.write("b.yaml", BROKEN);
        for _ in 0..2 {
            let report = reloader.reload("test");
            match &report.outcome {
                ReloadOutcome::Rejected { kept, problems } => {
                    assert_eq!(*kept, 1);
                    assert!(
                        problems.iter().any(|p| p.contains("b.yaml:")),
                        "{problems:?}"
                    );
                }
                other => panic!("expected a refusal, got {other:?}"),
            }
            assert!(Arc::ptr_eq(&before, &handle.load_full()));
        }
        std::fs::remove_file(dir.0.join("b.yaml")).unwrap();
        let report = reloader.reload("test");
        assert!(
            matches!(
                report.outcome,
                ReloadOutcome::Published { generation: 2, .. }
            ),
            "the next good state applies: {report:?}"
        );
    }

    #[test]
    fn settings_read_at_start_are_named_when_they_change() {
        let old = Settings::default();
        assert!(restart_only_changes(&old, &old).is_empty());
        let new = Settings {
            conntrack_max_entries: 1000,
            anti_spoof: false,
            tcp_loose_pickup: false,
            unmatched_traffic_action: model::settings::UnmatchedTrafficAction::Allow,
            ..Settings::default()
        };
        assert_eq!(
            restart_only_changes(&old, &new),
            vec!["conntrackMaxEntries", "tcpLoosePickup"]
        );
    }
}
