//! Running code inside a named network namespace (one made by `ip netns add NAME`).
//!
//! `setns(2)` moves only the calling thread, so the code runs on a thread made for the
//! purpose, which moves first and ends with the code: nothing else of the process ever finds
//! itself in the namespace. Sockets opened and interfaces looked up on that thread belong to
//! the namespace, and sockets keep it when handed to other threads. Files under `/sys` and
//! `/proc/net` keep showing the namespace of the process's mounts, not the thread's.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread;

use super::afpacket::sys;

/// Where `ip netns` keeps its namespaces.
const NETNS_DIR: &str = "/run/netns";

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespace {name:?}: not a namespace name")]
    BadName { name: String },
    #[error("network namespace {name}: open {}: {source}", path.display())]
    Open {
        name: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("network namespace {name}: enter (setns): {source}")]
    Enter {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("network namespace {name}: start a thread: {source}")]
    Spawn {
        name: String,
        #[source]
        source: io::Error,
    },
}

/// An open handle on a named network namespace.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    file: File,
}

impl NetNs {
    /// Opens `/run/netns/NAME`.
    pub fn open(name: &str) -> Result<NetNs, NetnsError> {
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(NetnsError::BadName {
                name: name.to_string(),
            });
        }
        let path = PathBuf::from(NETNS_DIR).join(name);
        let file = File::open(&path).map_err(|source| NetnsError::Open {
            name: name.to_string(),
            path,
            source,
        })?;
        Ok(NetNs {
            name: name.to_string(),
            file,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` inside the namespace and returns what it returns. A panic in `f` goes on in
    /// the caller.
    pub fn run<F, T>(&self, f: F) -> Result<T, NetnsError>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        thread::scope(|scope| {
            let thread = thread::Builder::new()
                .name(format!("netns {}", self.name))
                .spawn_scoped(scope, || {
                    self.enter()?;
                    Ok(f())
                })
                .map_err(|source| self.spawn_error(source))?;
            match thread.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Starts `f` on a thread named `thread_name` inside the namespace. Returns once the
    /// thread is in the namespace, so that failing to enter it is reported here.
    pub fn spawn<F, T>(&self, thread_name: &str, f: F) -> Result<NetnsThread<T>, NetnsError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let file = self
            .file
            .try_clone()
            .map_err(|source| self.spawn_error(source))?;
        let (entered_tx, entered_rx) = mpsc::sync_channel(1);
        let handle = thread::Builder::new()
            .name(thread_name.to_string())
            .spawn(move || {
                let entered = sys::enter_network_namespace(file.as_fd());
                let ok = entered.is_ok();
                // The receiver waits for this message, so it is still there.
                let _ = entered_tx.send(entered);
                ok.then(f)
            })
            .map_err(|source| self.spawn_error(source))?;
        let entered = entered_rx.recv().unwrap_or_else(|_| {
            Err(io::Error::other(
                "the thread ended before entering the namespace",
            ))
        });
        match entered {
            Ok(()) => Ok(NetnsThread { handle }),
            Err(source) => {
                // The thread has nothing left to do; joining it cannot block.
                let _ = handle.join();
                Err(NetnsError::Enter {
                    name: self.name.clone(),
                    source,
                })
            }
        }
    }

    fn enter(&self) -> Result<(), NetnsError> {
        sys::enter_network_namespace(self.file.as_fd()).map_err(|source| NetnsError::Enter {
            name: self.name.clone(),
            source,
        })
    }

    fn spawn_error(&self, source: io::Error) -> NetnsError {
        NetnsError::Spawn {
            name: self.name.clone(),
            source,
        }
    }
}

/// A thread started by [`NetNs::spawn`], running inside its namespace.
#[derive(Debug)]
pub struct NetnsThread<T> {
    /// `None` only when the thread could not enter the namespace, which `spawn` reports
    /// instead of returning a `NetnsThread`.
    handle: thread::JoinHandle<Option<T>>,
}

impl<T> NetnsThread<T> {
    /// Waits for the thread to end; `Err` carries its panic.
    pub fn join(self) -> thread::Result<T> {
        match self.handle.join()? {
            Some(value) => Ok(value),
            None => Err(Box::new("the thread did not enter its network namespace")),
        }
    }

    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_not_namespace_names_are_refused() {
        for name in ["", ".", "..", "a/b", "../etc", "nul\0"] {
            let error = NetNs::open(name).unwrap_err();
            assert!(
                matches!(error, NetnsError::BadName { .. }),
                "{name:?}: {error}"
            );
        }
    }

    #[test]
    fn a_missing_namespace_is_named_with_its_path() {
        let error = NetNs::open("portcullis-no-such-namespace").unwrap_err();
        assert!(matches!(error, NetnsError::Open { .. }), "{error}");
        assert!(
            error
                .to_string()
                .contains("/run/netns/portcullis-no-such-namespace"),
            "{error}"
        );
    }
}
