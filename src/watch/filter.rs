//! Which file-system events can change what the loader reads.
//!
//! The loader reads the config files of one directory (`model::load::is_config_file_name`),
//! following symlinks. So an event matters when it is about:
//! - a config file name in the directory (editors' probes, locks, backups and other hidden
//!   files are not config file names, so they never trigger a reload);
//! - a name that the config files' symlinks go through: a Kubernetes ConfigMap volume holds
//!   `x.yaml -> ..data/x.yaml` and `..data -> ..2024_01_01_00_00_00.1234`, and is updated by
//!   renaming a new `..data` over the old one, which changes no `*.yaml` entry at all;
//! - the directory itself (deleted, moved, or replaced through a symlink in its parent);
//! - or nothing in particular: an overflowed event queue, an event without a path.
//!
//! Reads (open, close after reading) never matter, so a reload does not trigger itself.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Component, Path, PathBuf};

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind};

use crate::model::load::is_config_file_name;

/// The name a ConfigMap volume swaps; watched even before any config file links through it.
pub const CONFIGMAP_DATA: &str = "..data";

/// What the watcher is looking at, to judge events against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedDir {
    /// The directory as given (absolute); may be a symlink.
    pub given: PathBuf,
    /// Where it resolved to when last armed; events inside it carry this prefix.
    pub resolved: PathBuf,
    /// First components of relative symlink targets of the config files (`..data`).
    pub link_roots: BTreeSet<OsString>,
}

impl WatchedDir {
    /// Resolve `given` (absolute) now and collect the symlink roots of its config files.
    pub fn scan(given: &Path) -> std::io::Result<WatchedDir> {
        let resolved = fs::canonicalize(given)?;
        let mut link_roots = BTreeSet::from([OsString::from(CONFIGMAP_DATA)]);
        for entry in fs::read_dir(&resolved)? {
            let Ok(entry) = entry else { continue };
            if !is_config_file_name(&entry.file_name().to_string_lossy()) {
                continue;
            }
            if let Some(root) = fs::read_link(entry.path()).ok().and_then(|t| link_root(&t)) {
                link_roots.insert(root);
            }
        }
        Ok(WatchedDir {
            given: given.to_owned(),
            resolved,
            link_roots,
        })
    }

    /// Whether `event` can change what the loader would read.
    pub fn is_relevant(&self, event: &Event) -> bool {
        if event.need_rescan() || event.paths.is_empty() {
            return true;
        }
        let kind_matters = match event.kind {
            // Only a finished write says anything; opens and reads are the loader's own.
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
            EventKind::Access(_) => false,
            EventKind::Any
            | EventKind::Create(_)
            | EventKind::Modify(_)
            | EventKind::Remove(_)
            | EventKind::Other => true,
        };
        kind_matters && event.paths.iter().any(|p| self.is_relevant_path(p))
    }

    fn is_relevant_path(&self, path: &Path) -> bool {
        if path == self.given || path == self.resolved {
            return true;
        }
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return true;
        };
        if parent == self.resolved || parent == self.given {
            return self.is_relevant_name(name);
        }
        // An event in the parent directory: only the directory's own entry matters.
        self.given.parent() == Some(parent) && self.given.file_name() == Some(name)
    }

    fn is_relevant_name(&self, name: &OsStr) -> bool {
        is_config_file_name(&name.to_string_lossy()) || self.link_roots.contains(name)
    }
}

/// The entry of the directory a relative symlink target goes through first (`..data` for
/// `..data/x.yaml`); `None` for absolute targets, which the watcher cannot follow.
fn link_root(target: &Path) -> Option<OsString> {
    match target.components().find(|c| *c != Component::CurDir)? {
        Component::Normal(first) => Some(first.to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, Flag, ModifyKind, RemoveKind, RenameMode};

    fn watched() -> WatchedDir {
        WatchedDir {
            given: PathBuf::from("/etc/portcullis"),
            resolved: PathBuf::from("/srv/policy-v1"),
            link_roots: BTreeSet::from([OsString::from("..data"), OsString::from("current")]),
        }
    }

    fn event(kind: EventKind, paths: &[&str]) -> Event {
        let mut event = Event::new(kind);
        for p in paths {
            event = event.add_path(PathBuf::from(p));
        }
        event
    }

    #[test]
    fn relevance_of_events() {
        let create = EventKind::Create(CreateKind::File);
        let write = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        let closed_write = EventKind::Access(AccessKind::Close(AccessMode::Write));
        let closed_read = EventKind::Access(AccessKind::Close(AccessMode::Read));
        let opened = EventKind::Access(AccessKind::Open(AccessMode::Any));
        let removed = EventKind::Remove(RemoveKind::Any);
        let renamed = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        let cases: [(&str, EventKind, &[&str], bool); 19] = [
            (
                "create a config file",
                create,
                &["/srv/policy-v1/a.yaml"],
                true,
            ),
            ("write a .yml file", write, &["/srv/policy-v1/b.yml"], true),
            (
                "write closed",
                closed_write,
                &["/srv/policy-v1/a.yaml"],
                true,
            ),
            (
                "read by the loader",
                closed_read,
                &["/srv/policy-v1/a.yaml"],
                false,
            ),
            (
                "opened by the loader",
                opened,
                &["/srv/policy-v1/a.yaml"],
                false,
            ),
            (
                "delete a config file",
                removed,
                &["/srv/policy-v1/a.yaml"],
                true,
            ),
            (
                "through the given path",
                write,
                &["/etc/portcullis/a.yaml"],
                true,
            ),
            ("vim's probe file", create, &["/srv/policy-v1/4913"], false),
            (
                "vim's swap file",
                write,
                &["/srv/policy-v1/.a.yaml.swp"],
                false,
            ),
            ("a backup", create, &["/srv/policy-v1/a.yaml~"], false),
            ("an emacs lock", create, &["/srv/policy-v1/.#a.yaml"], false),
            (
                "a hidden yaml file",
                create,
                &["/srv/policy-v1/.a.yaml"],
                false,
            ),
            (
                "the systemd unit",
                write,
                &["/srv/policy-v1/portcullis.service"],
                false,
            ),
            (
                "the ConfigMap swap",
                renamed,
                &["/srv/policy-v1/..data_tmp", "/srv/policy-v1/..data"],
                true,
            ),
            (
                "a ConfigMap's new timestamped dir",
                create,
                &["/srv/policy-v1/..2024_01_01"],
                false,
            ),
            (
                "another link root",
                renamed,
                &["/srv/policy-v1/current"],
                true,
            ),
            ("the directory itself", removed, &["/srv/policy-v1"], true),
            (
                "its entry in the parent",
                renamed,
                &["/etc/portcullis"],
                true,
            ),
            ("a neighbour in the parent", write, &["/etc/hosts"], false),
        ];
        let dir = watched();
        for (name, kind, paths, expected) in cases {
            assert_eq!(dir.is_relevant(&event(kind, paths)), expected, "{name}");
        }
    }

    #[test]
    fn overflow_and_pathless_events_are_relevant() {
        let dir = watched();
        assert!(dir.is_relevant(&Event::new(EventKind::Other).set_flag(Flag::Rescan)));
        assert!(dir.is_relevant(&Event::new(EventKind::Any)));
    }

    #[test]
    fn link_roots_of_relative_targets_only() {
        let cases = [
            ("..data/a.yaml", Some("..data")),
            ("./x/a.yaml", Some("x")),
            ("a.yaml", Some("a.yaml")),
            ("/etc/a.yaml", None),
            ("../a.yaml", None),
        ];
        for (target, expected) in cases {
            assert_eq!(
                link_root(Path::new(target)),
                expected.map(OsString::from),
                "{target}"
            );
        }
    }
}
