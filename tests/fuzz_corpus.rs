//! The fuzz targets' corpora as plain tests on the stable toolchain: every input under
//! `tests/fuzz/corpus/<target>/` (seeds, and every input that once crashed, kept as a
//! regression) goes through the same function the cargo-fuzz target calls
//! (`tests/fuzz_targets/`). `scripts/fuzz` runs the targets themselves under libFuzzer.
//!
//! `scripts/fuzz seeds` rewrites the generated seeds (`seed-*` files) through the ignored
//! test `write_seed_corpus`; files of other names in a corpus directory are left alone:
//! `cov-*` are inputs libFuzzer found to reach new code (kept after `cargo fuzz cmin`), and
//! an input that once crashed is kept under a name saying what it found.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fuzz_targets;

use std::fs;
use std::path::{Path, PathBuf};

use fuzz_targets::frames;
use portcullis::packet::parse;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target)
}

/// Runs every input of `target`'s corpus, naming the file of the first one that fails.
fn replay(target: &str) {
    let (_, body) = fuzz_targets::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap();
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "{target}: only {} inputs in {}",
        files.len(),
        dir.display()
    );
    for file in &files {
        let data = fs::read(file).unwrap();
        let outcome = std::panic::catch_unwind(|| body(&data));
        assert!(outcome.is_ok(), "{target}: {} fails", file.display());
    }
}

#[test]
fn frame_parser_corpus() {
    replay("frame_parser");
}

#[test]
fn selector_parser_corpus() {
    replay("selector_parser");
}

#[test]
fn yaml_validate_corpus() {
    replay("yaml_validate");
}

#[test]
fn pipeline_corpus() {
    replay("pipeline");
}

#[test]
fn conntrack_corpus() {
    replay("conntrack");
}

#[test]
fn every_target_has_a_corpus_and_a_fuzz_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let manifest = fs::read_to_string(root.join("Cargo.toml")).unwrap();
    for (name, _) in fuzz_targets::TARGETS {
        assert!(corpus_dir(name).is_dir(), "{name}: no corpus");
        let source = root.join("fuzz_targets").join(format!("{name}.rs"));
        let text =
            fs::read_to_string(&source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        assert!(
            text.contains(&format!("fuzz_targets::{name}(")),
            "{name}: the fuzz binary does not call the shared body"
        );
        assert!(manifest.contains(&format!("name = \"{name}\"")), "{name}");
    }
}

/// The crafted malformed frames (seeds here, and the corpus `tests/adversarial.rs` pushes
/// through the gateway) are dropped by the parser under the reason each names, or, for the
/// fragment cases the parser passes on, reach the tracker as non-first fragments.
#[test]
fn crafted_malformed_frames_carry_their_reason() {
    for case in frames::malformed(
        "198.51.100.7",
        "203.0.113.10",
        "2001:db8:1::7",
        "2001:db8:2::10",
        80,
    ) {
        let parsed = parse(&case.frame);
        if case.reason.stage() == portcullis::packet::DropStage::Parse {
            assert_eq!(parsed.err(), Some(case.reason), "{}", case.name);
        } else {
            let meta = parsed.unwrap_or_else(|r| panic!("{}: dropped as {r}", case.name));
            let fragment = meta.ip.and_then(|ip| ip.fragment);
            assert!(
                fragment.is_some_and(|f| f.is_non_first()),
                "{}: not a later fragment",
                case.name
            );
        }
    }
    for frame in frames::valid(
        "198.51.100.7",
        "203.0.113.10",
        "2001:db8:1::7",
        "2001:db8:2::10",
        80,
    ) {
        assert!(parse(&frame).is_ok(), "{frame:02x?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Seeds

const SRC: &str = "198.51.100.7";
const WEB: &str = "203.0.113.10";
const DB: &str = "203.0.113.20";
const CACHE: &str = "203.0.113.30";
const SRC6: &str = "2001:db8:1::7";
const WEB6: &str = "2001:db8:2::10";

fn all_frames() -> Vec<Vec<u8>> {
    let mut all = frames::valid(SRC, WEB, SRC6, WEB6, 80);
    all.extend(frames::valid(SRC, DB, SRC6, WEB6, 5432));
    all.extend(
        frames::malformed(SRC, WEB, SRC6, WEB6, 80)
            .into_iter()
            .map(|c| c.frame),
    );
    all
}

/// Sequences for the pipeline target (`[control][len u16 LE][frame]`, control bit 0 = inside).
fn pipeline_seeds() -> Vec<Vec<u8>> {
    use frames::{fragment4, ping, tcp, udp, udp_header};
    const OUT: u8 = 0;
    const IN: u8 = 1;
    const TICK: u8 = 2; // one second later
    const SWEEP: u8 = 0xc0;
    let handshake = [
        (OUT, tcp(SRC, 40_000, WEB, 80, "S")),
        (IN, tcp(WEB, 80, SRC, 40_000, "SA")),
        (OUT, tcp(SRC, 40_000, WEB, 80, "A")),
        (IN | TICK, tcp(WEB, 80, SRC, 40_000, "A")),
        (OUT, tcp(SRC, 40_000, WEB, 80, "F")),
        (IN, tcp(WEB, 80, SRC, 40_000, "FA")),
        (OUT | SWEEP | (30 << 1), tcp(SRC, 40_000, WEB, 80, "A")),
    ];
    let mixed = [
        (OUT, udp(SRC, 5000, WEB, 53, b"q")),
        (IN, udp(WEB, 53, SRC, 5000, b"a")),
        (OUT, ping(SRC, WEB, 9)),
        (OUT, tcp(SRC, 1, DB, 5432, "S")),
        (OUT, tcp(SRC, 1, DB, 22, "S")),
        (OUT, tcp(SRC, 2, CACHE, 6379, "S")),
        (IN, tcp(CACHE, 6379, SRC, 2, "SA")),
        (OUT, tcp(WEB, 1, DB, 80, "S")),
        (OUT, tcp(SRC, 3, WEB, 8080, "S")),
        (OUT, tcp(SRC, 4, WEB, 81, "A")),
    ];
    let fragments = [
        (
            OUT,
            fragment4(SRC, WEB, 17, 1, 0, true, &udp_header(5000, 53, 48)),
        ),
        (OUT, fragment4(SRC, WEB, 17, 1, 8, true, &[0; 16])),
        (OUT, fragment4(SRC, WEB, 17, 1, 16, true, &[0; 16])),
        (OUT, fragment4(SRC, WEB, 17, 1, 40, false, &[0; 8])),
        (
            OUT,
            fragment4(SRC, DB, 17, 2, 0, true, &udp_header(5000, 53, 48)),
        ),
        (OUT, fragment4(SRC, DB, 17, 2, 24, false, &[0; 24])),
    ];
    let flood: Vec<(u8, Vec<u8>)> = (0..40)
        .map(|i| (OUT, tcp(&format!("192.0.2.{i}"), 1000 + i, WEB, 80, "S")))
        .collect();
    let malformed: Vec<(u8, Vec<u8>)> = frames::malformed(SRC, WEB, SRC6, WEB6, 80)
        .into_iter()
        .map(|c| (OUT, c.frame))
        .collect();
    let spoofed = [
        (OUT, tcp(WEB, 80, SRC, 1, "S")),
        (IN, tcp(SRC, 80, WEB, 1, "S")),
    ];
    let encode = |seq: &[(u8, Vec<u8>)]| {
        fuzz_targets::encode_pipeline_frames(seq.iter().map(|(c, f)| (*c, f.as_slice())))
    };
    vec![
        encode(&handshake),
        encode(&mixed),
        encode(&fragments),
        encode(&flood),
        encode(&malformed),
        encode(&spoofed),
    ]
}

/// Selectors from the example and fixture directories, and a few written here.
fn selector_seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<String> = [
        "all()",
        "global()",
        "role == 'web'",
        "has(role) && !has(debug)",
        "env in {'prod', 'staging'} || tier not in {\"a\",\"b\"}",
        "a contains 'x' && b starts with 'y' && c ends with 'z'",
        "!(a == 'b' || (c != 'd' && has(e)))",
        "projectcalico.org/namespace == 'shop'",
        "",
        "((((((((((a == 'b'))))))))))",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for file in yaml_files() {
        let text = fs::read_to_string(&file).unwrap();
        for line in text.lines() {
            let Some((_, rest)) = line.split_once("elector:") else {
                continue;
            };
            let rest = rest.trim();
            let unquoted = rest
                .strip_prefix('"')
                .and_then(|r| r.strip_suffix('"'))
                .unwrap_or(rest);
            if !unquoted.is_empty() {
                seeds.push(unquoted.to_owned());
            }
        }
    }
    seeds.sort();
    seeds.dedup();
    seeds.into_iter().map(String::into_bytes).collect()
}

fn yaml_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    let mut dirs = vec![root.join("config"), root.join("tests/fixtures")];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Small, fixed-seed pseudo-random byte strings for the conntrack target, plus a few laid
/// out by hand: a table of one entry, a SYN flood, sweeps and revalidations.
fn conntrack_seeds() -> Vec<Vec<u8>> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 24) as u8
    };
    let mut seeds: Vec<Vec<u8>> = (0..12)
        .map(|n| (0..64 + 32 * n).map(|_| next()).collect())
        .collect();
    // Header: max entries 2, 1 shard, loose pickup, 2 fragment slots; then TCP SYNs from
    // many sources, a SYN-ACK, time passing, a sweep, a revalidation.
    let mut flood = vec![1, 0, 0, 1];
    for src in 0..20u8 {
        flood.extend_from_slice(&[0, src, 2, 0, 0x14, 0x02, 0, 0]);
    }
    flood.extend_from_slice(&[1, 2, 0, 0, 0x41, 0x12, 0, 0, 4, 50, 5, 255, 6, 1, 2]);
    seeds.push(flood);
    let mut fragments = vec![3, 1, 1, 3];
    for id in 0..6u8 {
        fragments.extend_from_slice(&[7, 0, 2, 2, id, 0, 0, 24, 0, 0, 0]);
        fragments.extend_from_slice(&[7, 0, 2, 2, id, 24, 0, 24, 0, 1, 0]);
    }
    seeds.push(fragments);
    seeds
}

/// Rewrites the generated seeds. Run through `scripts/fuzz seeds`.
#[test]
#[ignore = "writes tests/fuzz/corpus; run through scripts/fuzz seeds"]
fn write_seed_corpus() {
    let yaml: Vec<Vec<u8>> = yaml_files().iter().map(|f| fs::read(f).unwrap()).collect();
    let sets: [(&str, Vec<Vec<u8>>); 5] = [
        ("frame_parser", all_frames()),
        ("selector_parser", selector_seeds()),
        ("yaml_validate", yaml),
        ("pipeline", pipeline_seeds()),
        ("conntrack", conntrack_seeds()),
    ];
    for (target, seeds) in sets {
        let dir = corpus_dir(target);
        fs::create_dir_all(&dir).unwrap();
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
            {
                fs::remove_file(path).unwrap();
            }
        }
        for (i, seed) in seeds.iter().enumerate() {
            fs::write(dir.join(format!("seed-{i:03}")), seed).unwrap();
        }
    }
}
