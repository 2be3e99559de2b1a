//! The config thread: watches the policy directory and calls the reload function when what
//! the loader would read has changed, or when asked to (SIGHUP).
//!
//! ```text
//!  inotify (notify's thread) ──Fs(event)──┐
//!  SIGHUP handler ───────────── Reload ───┼─► config thread: filter ─► debounce ─► reload(cause)
//!  ConfigWatcher::stop / drop ─ Stop ─────┘         (WatchedDir)       (Debounce)    one at a time
//! ```
//!
//! - [`filter`]: which events matter (config files, ConfigMap `..data` swaps, the directory
//!   itself), with the loader's own rule for which names are config files.
//! - [`debounce`]: one reload per burst of events (an editor save, a ConfigMap swap), at most
//!   `max_delay` after the first event.
//!
//! What a reload does (load, validate, compile off to the side, publish with one store, or
//! keep the old snapshot and say why) is the caller's: the watcher only says when.
//!
//! Reloads run on the config thread one after another, never concurrently. Events that arrive
//! while one runs start the next burst, so the next good state of the directory always
//! applies. Before each reload the watch is re-armed: if the directory path now resolves to
//! another directory (a symlink swapped, the directory replaced), the old one is dropped and
//! the new one watched.

pub mod debounce;
pub mod filter;

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use notify::{Event, RecommendedWatcher, RecursiveMode, Watcher};

pub use debounce::{Debounce, DebounceConfig};
pub use filter::WatchedDir;

/// Why a reload runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadCause {
    /// The directory changed.
    Files,
    /// Someone asked (SIGHUP).
    Requested,
}

impl ReloadCause {
    pub fn name(self) -> &'static str {
        match self {
            ReloadCause::Files => "files",
            ReloadCause::Requested => "requested",
        }
    }
}

/// Why the watcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot resolve config directory {dir}: {source}")]
    Resolve { dir: PathBuf, source: io::Error },
    #[error("cannot watch {dir}: {source}")]
    Watch { dir: PathBuf, source: notify::Error },
    #[error("cannot start the config thread: {0}")]
    Thread(io::Error),
}

enum Message {
    Fs(notify::Result<Event>),
    Reload,
    Stop,
}

/// Asks the config thread for a reload; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct ReloadRequester(Sender<Message>);

impl ReloadRequester {
    /// Queue a forced reload. `false` when the config thread has stopped.
    pub fn request(&self) -> bool {
        self.0.send(Message::Reload).is_ok()
    }
}

impl std::fmt::Debug for ReloadRequester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReloadRequester")
    }
}

/// The running config thread. Dropping it stops the thread and waits for it (a reload in
/// progress finishes first).
#[derive(Debug)]
pub struct ConfigWatcher {
    sender: Sender<Message>,
    thread: Option<JoinHandle<()>>,
}

impl ConfigWatcher {
    /// Start watching `dir` and calling `reload` on the config thread for each settled change
    /// and each request. The directory must exist now; later it may vanish and come back.
    pub fn spawn<F>(
        dir: &Path,
        config: DebounceConfig,
        reload: F,
    ) -> Result<ConfigWatcher, WatchError>
    where
        F: FnMut(ReloadCause) + Send + 'static,
    {
        let given = std::path::absolute(dir).map_err(|source| WatchError::Resolve {
            dir: dir.to_owned(),
            source,
        })?;
        let (sender, receiver) = mpsc::channel();
        let events = sender.clone();
        let notifier = notify::recommended_watcher(move |event| {
            // A send fails only once the config thread has gone; nothing left to tell.
            let _ = events.send(Message::Fs(event));
        })
        .map_err(|source| WatchError::Watch {
            dir: given.clone(),
            source,
        })?;
        let mut thread = ConfigThread {
            notifier,
            armed: None,
            given,
            debounce: Debounce::new(config),
            reload,
        };
        thread.arm().map_err(|e| match e {
            ArmError::Resolve(source) => WatchError::Resolve {
                dir: thread.given.clone(),
                source,
            },
            ArmError::Watch(source) => WatchError::Watch {
                dir: thread.given.clone(),
                source,
            },
        })?;
        let handle = thread::Builder::new()
            .name("config".to_owned())
            .spawn(move || thread.run(&receiver))
            .map_err(WatchError::Thread)?;
        Ok(ConfigWatcher {
            sender,
            thread: Some(handle),
        })
    }

    pub fn requester(&self) -> ReloadRequester {
        ReloadRequester(self.sender.clone())
    }

    /// Stop the thread and wait for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.sender.send(Message::Stop);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the config thread panicked");
        }
    }
}

impl Drop for ConfigWatcher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The directory being watched: what it resolved to, and its identity, so that a directory
/// replaced under the same path is noticed.
struct Armed {
    dir: WatchedDir,
    identity: (u64, u64),
}

enum ArmError {
    Resolve(io::Error),
    Watch(notify::Error),
}

struct ConfigThread<F> {
    notifier: RecommendedWatcher,
    armed: Option<Armed>,
    given: PathBuf,
    debounce: Debounce,
    reload: F,
}

impl<F: FnMut(ReloadCause)> ConfigThread<F> {
    fn run(&mut self, messages: &Receiver<Message>) {
        loop {
            let message = match self.debounce.deadline() {
                None => match messages.recv() {
                    Ok(message) => message,
                    Err(_) => return,
                },
                Some(deadline) => {
                    let wait = deadline.saturating_duration_since(Instant::now());
                    match messages.recv_timeout(wait) {
                        Ok(message) => message,
                        Err(RecvTimeoutError::Timeout) => {
                            if self.debounce.take_due(Instant::now()) {
                                self.fire(ReloadCause::Files);
                            }
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            };
            match message {
                Message::Stop => return,
                Message::Reload => {
                    // The forced reload reads everything, so it covers a pending burst too.
                    self.debounce.clear();
                    self.fire(ReloadCause::Requested);
                }
                Message::Fs(Ok(event)) => {
                    if self.is_relevant(&event) {
                        self.debounce.event(Instant::now());
                    }
                }
                Message::Fs(Err(error)) => {
                    // The watch may have lost events: reload to be sure.
                    tracing::warn!(%error, "config directory watch error");
                    self.debounce.event(Instant::now());
                }
            }
        }
    }

    fn is_relevant(&self, event: &Event) -> bool {
        match &self.armed {
            Some(armed) => armed.dir.is_relevant(event),
            None => true,
        }
    }

    fn fire(&mut self, cause: ReloadCause) {
        if let Err(e) = self.arm() {
            // Reload anyway: the loader reports the missing directory as a failed reload and
            // the old snapshot stays. The parent's watch says when it comes back.
            let message = match e {
                ArmError::Resolve(e) => e.to_string(),
                ArmError::Watch(e) => e.to_string(),
            };
            tracing::warn!(dir = %self.given.display(), error = %message, "cannot watch the config directory");
        }
        (self.reload)(cause);
    }

    /// Watch the directory `given` resolves to now (and its parent, for replacements of the
    /// directory itself), dropping the watch of a directory it no longer resolves to.
    fn arm(&mut self) -> Result<(), ArmError> {
        let dir = WatchedDir::scan(&self.given).map_err(ArmError::Resolve)?;
        let identity = std::fs::metadata(&dir.resolved)
            .map(|m| (m.dev(), m.ino()))
            .map_err(ArmError::Resolve)?;
        let same = self
            .armed
            .as_ref()
            .is_some_and(|a| a.identity == identity && a.dir.resolved == dir.resolved);
        if !same {
            if let Some(old) = self.armed.take() {
                // Fails when the kernel already dropped the watch with the directory.
                let _ = self.notifier.unwatch(&old.dir.resolved);
            } else if let Some(parent) = self.given.parent() {
                // Without the parent only the directory's contents are watched; say so and go on.
                if let Err(error) = self.notifier.watch(parent, RecursiveMode::NonRecursive) {
                    tracing::warn!(parent = %parent.display(), %error, "cannot watch the config directory's parent: replacing the directory itself will not be noticed");
                }
            }
            self.notifier
                .watch(&dir.resolved, RecursiveMode::NonRecursive)
                .map_err(ArmError::Watch)?;
        }
        self.armed = Some(Armed { dir, identity });
        Ok(())
    }
}

#[cfg(test)]
mod tests;
