//! The watcher on real directories: each kind of change gives the right number of reloads.
//!
//! A test waits (bounded) for each reload it expects, then for a settle time in which no
//! further reload may come. Nothing asserts how fast a reload came.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use super::*;

const TEST_DEBOUNCE: DebounceConfig = DebounceConfig {
    quiet: Duration::from_millis(50),
    max_delay: Duration::from_millis(300),
};
/// How long a reload may take to come before the test fails.
const PATIENCE: Duration = Duration::from_secs(10);
/// How long to watch for a reload that should not come: past `max_delay` with margin.
const SETTLE: Duration = Duration::from_millis(700);

/// A scratch directory `base/`, removed on drop; the watched directory is `base/config`.
struct Scratch {
    base: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let base = std::env::temp_dir().join(format!(
            "portcullis-watch-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).unwrap();
        Scratch { base }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.base.join(rel)
    }

    fn config(&self) -> PathBuf {
        self.path("config")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.base);
    }
}

/// What the reload callback saw: the cause and the text of `config/a.yaml` at that moment.
type Seen = (ReloadCause, Option<String>);

fn watch(dir: &Path) -> (ConfigWatcher, Receiver<Seen>) {
    let (tx, rx) = mpsc::channel();
    let file = dir.join("a.yaml");
    let watcher = ConfigWatcher::spawn(dir, TEST_DEBOUNCE, move |cause| {
        let _ = tx.send((cause, fs::read_to_string(&file).ok()));
    })
    .unwrap();
    (watcher, rx)
}

/// Waits for exactly `n` reloads and returns them.
fn expect_reloads(rx: &Receiver<Seen>, n: usize, what: &str) -> Vec<Seen> {
    let mut seen = Vec::new();
    for i in 0..n {
        match rx.recv_timeout(PATIENCE) {
            Ok(s) => seen.push(s),
            Err(_) => panic!("{what}: reload {} of {n} never came", i + 1),
        }
    }
    if let Ok(extra) = rx.recv_timeout(SETTLE) {
        panic!("{what}: an extra reload after {n}: {extra:?} (before: {seen:?})");
    }
    seen
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
}

#[test]
fn each_plain_change_gives_one_reload() {
    let scratch = Scratch::new("plain");
    let dir = scratch.config();
    fs::create_dir(&dir).unwrap();
    let (_watcher, rx) = watch(&dir);
    let cases: [(&str, &dyn Fn()); 5] = [
        ("create", &|| write(&dir.join("a.yaml"), "one")),
        ("write", &|| write(&dir.join("a.yaml"), "two")),
        ("rename away", &|| {
            fs::rename(dir.join("a.yaml"), dir.join("b.yml")).unwrap()
        }),
        ("rename back", &|| {
            fs::rename(dir.join("b.yml"), dir.join("a.yaml")).unwrap()
        }),
        ("delete", &|| fs::remove_file(dir.join("a.yaml")).unwrap()),
    ];
    for (what, change) in cases {
        change();
        let seen = expect_reloads(&rx, 1, what);
        assert_eq!(seen[0].0, ReloadCause::Files, "{what}");
    }
}

#[test]
fn temporary_and_hidden_files_give_no_reload() {
    let scratch = Scratch::new("temp");
    let dir = scratch.config();
    fs::create_dir(&dir).unwrap();
    let (_watcher, rx) = watch(&dir);
    for name in [
        "4913",
        ".a.yaml.swp",
        "a.yaml~",
        ".#a.yaml",
        "#a.yaml#",
        ".hidden.yaml",
        "a.yaml.tmp",
        "portcullis.service",
    ] {
        write(&dir.join(name), "x");
        fs::remove_file(dir.join(name)).unwrap();
    }
    fs::create_dir(dir.join("sub")).unwrap();
    write(&dir.join("sub/nested.yaml"), "not read by the loader");
    expect_reloads(&rx, 0, "temporary files");
}

#[test]
fn an_editor_save_gives_one_reload_with_the_final_text() {
    let scratch = Scratch::new("vim");
    let dir = scratch.config();
    fs::create_dir(&dir).unwrap();
    write(&dir.join("a.yaml"), "old");
    let (_watcher, rx) = watch(&dir);
    // What vim does on :w with a backup: probe, move the original aside, write, drop backup.
    write(&dir.join("4913"), "");
    fs::remove_file(dir.join("4913")).unwrap();
    write(&dir.join(".a.yaml.swp"), "swap");
    fs::rename(dir.join("a.yaml"), dir.join("a.yaml~")).unwrap();
    write(&dir.join("a.yaml"), "new");
    fs::remove_file(dir.join("a.yaml~")).unwrap();
    fs::remove_file(dir.join(".a.yaml.swp")).unwrap();
    let seen = expect_reloads(&rx, 1, "editor save");
    assert_eq!(seen[0].1.as_deref(), Some("new"));
}

/// Lays out a ConfigMap volume whose `..data` points at `..v_<version>` holding `a.yaml`.
fn configmap_version(dir: &Path, version: &str, text: &str) -> PathBuf {
    let data = dir.join(format!("..v_{version}"));
    fs::create_dir(&data).unwrap();
    write(&data.join("a.yaml"), text);
    data
}

#[test]
fn a_configmap_swap_gives_one_reload_with_the_new_text() {
    let scratch = Scratch::new("configmap");
    let dir = scratch.config();
    fs::create_dir(&dir).unwrap();
    let old = configmap_version(&dir, "1", "first");
    symlink("..v_1", dir.join("..data")).unwrap();
    symlink("..data/a.yaml", dir.join("a.yaml")).unwrap();
    let (_watcher, rx) = watch(&dir);
    // The kubelet's atomic writer: new timestamped directory, `..data_tmp` renamed over
    // `..data`, old directory removed.
    configmap_version(&dir, "2", "second");
    symlink("..v_2", dir.join("..data_tmp")).unwrap();
    fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    fs::remove_dir_all(old).unwrap();
    let seen = expect_reloads(&rx, 1, "ConfigMap swap");
    assert_eq!(seen[0].1.as_deref(), Some("second"));
}

#[test]
fn a_request_gives_one_reload() {
    let scratch = Scratch::new("request");
    let dir = scratch.config();
    fs::create_dir(&dir).unwrap();
    let (watcher, rx) = watch(&dir);
    assert!(watcher.requester().request());
    let seen = expect_reloads(&rx, 1, "request");
    assert_eq!(seen[0].0, ReloadCause::Requested);
}

#[test]
fn a_replaced_directory_is_watched_in_place_of_the_old_one() {
    let scratch = Scratch::new("replaced");
    let dir = scratch.config();
    fs::create_dir(&dir).unwrap();
    write(&dir.join("a.yaml"), "old dir");
    let (_watcher, rx) = watch(&dir);
    let staged = scratch.path("staged");
    fs::create_dir(&staged).unwrap();
    write(&staged.join("a.yaml"), "new dir");
    fs::rename(&dir, scratch.path("retired")).unwrap();
    fs::rename(&staged, &dir).unwrap();
    let seen = expect_reloads(&rx, 1, "directory replaced");
    assert_eq!(seen[0].1.as_deref(), Some("new dir"));
    write(&scratch.path("retired/a.yaml"), "ignored now");
    expect_reloads(&rx, 0, "write in the retired directory");
    write(&dir.join("a.yaml"), "edited");
    expect_reloads(&rx, 1, "write in the new directory");
}

#[test]
fn a_directory_symlink_swap_moves_the_watch() {
    let scratch = Scratch::new("dirlink");
    for (version, text) in [("v1", "one"), ("v2", "two")] {
        fs::create_dir(scratch.path(version)).unwrap();
        write(&scratch.path(version).join("a.yaml"), text);
    }
    let dir = scratch.config();
    symlink("v1", &dir).unwrap();
    let (_watcher, rx) = watch(&dir);
    symlink("v2", scratch.path("config.tmp")).unwrap();
    fs::rename(scratch.path("config.tmp"), &dir).unwrap();
    let seen = expect_reloads(&rx, 1, "directory symlink swap");
    assert_eq!(seen[0].1.as_deref(), Some("two"));
    write(&scratch.path("v1/a.yaml"), "old target");
    expect_reloads(&rx, 0, "write in the old target");
    write(&scratch.path("v2/a.yaml"), "new target");
    expect_reloads(&rx, 1, "write in the new target");
}

#[test]
fn a_missing_directory_is_an_error() {
    let scratch = Scratch::new("missing");
    let err = ConfigWatcher::spawn(&scratch.config(), TEST_DEBOUNCE, |_| {}).unwrap_err();
    assert!(matches!(err, WatchError::Resolve { .. }), "{err}");
}
