//! Selector parsing and evaluation.
//!
//! Cases: `selector/parse_1k` parses a fixed selector of about 1 KiB (the policy-field
//! limit) that uses every operator; `selector/matches_1k` evaluates it against a fixed map
//! of 12 labels; `selector/matches_simple` evaluates `role == 'db' && has(app)`.

// A benchmark may panic on setup failure: that is a broken benchmark, not bad input.
#![allow(clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::selector::Selector;

/// About 1 KiB: clauses cycling through every operator, joined by `&&` and `||` groups.
fn kilobyte_selector() -> String {
    let clauses = [
        "app.kubernetes.io/name in {'web', 'api', 'worker', 'cron',}",
        "tier != 'frontend'",
        "!has(quarantine)",
        "(env == 'prod' || env == 'staging')",
        "team starts with 'pay'",
        "version ends with '-stable'",
        "owner contains 'ops'",
        "zone not in {'a', 'b'}",
    ];
    let mut text = String::new();
    let mut i = 0;
    while text.len() < 1000 {
        if !text.is_empty() {
            text.push_str(if i % 5 == 4 { " || " } else { " && " });
        }
        text.push_str(clauses[i % clauses.len()]);
        i += 1;
    }
    text
}

fn labels() -> BTreeMap<String, String> {
    [
        ("app.kubernetes.io/name", "api"),
        ("tier", "backend"),
        ("env", "prod"),
        ("team", "payments"),
        ("version", "1.2-stable"),
        ("owner", "devops"),
        ("zone", "c"),
        ("role", "db"),
        ("app", "ledger"),
        ("projectcalico.org/namespace", "default"),
        ("projectcalico.org/orchestrator", "k8s"),
        ("pcns.projectcalico.org/name", "default"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn selector_benches(c: &mut Criterion) {
    let text = kilobyte_selector();
    let labels = labels();
    let parsed = Selector::parse(&text).expect("benchmark selector parses");
    let simple = Selector::parse("role == 'db' && has(app)").expect("parses");
    let mut group = c.benchmark_group("selector");
    group.bench_function("parse_1k", |b| b.iter(|| Selector::parse(black_box(&text))));
    group.bench_function("matches_1k", |b| {
        b.iter(|| parsed.matches(black_box(&labels)))
    });
    group.bench_function("matches_simple", |b| {
        b.iter(|| simple.matches(black_box(&labels)))
    });
    group.finish();
}

criterion_group!(benches, selector_benches);
criterion_main!(benches);
