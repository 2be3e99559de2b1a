//! Loading and validating a large policy directory.
//!
//! Cases: `load_validate/{1000,10000}` — N GlobalNetworkPolicies spread over 100 files and
//! two tiers, each with an ingress and an egress rule using selectors, CIDRs and port
//! ranges, plus 200 host endpoints. The directory is generated once under the target dir
//! from a fixed pattern, so runs are comparable.

// A benchmark may panic on setup failure: that is a broken benchmark, not bad input.
#![allow(clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use portcullis::model::{Limits, load_model};

const FILES: usize = 100;
const HOSTS: usize = 200;

fn policy_yaml(i: usize) -> String {
    let tier = if i % 2 == 0 { "security" } else { "default" };
    let net = format!("198.51.100.{}/32", i % 256);
    let lo = 1000 + (i % 5000);
    format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: {tier}.p{i}\n\
         spec:\n  tier: {tier}\n  order: {i}\n  selector: group == 'g{g}' && has(role)\n\
         \x20 types: [Ingress, Egress]\n  ingress:\n    - action: Allow\n      protocol: TCP\n\
         \x20     source:\n        nets: [\"{net}\"]\n        selector: role != 'blocked'\n\
         \x20     destination:\n        ports: [{lo}, \"{lo}:{hi}\"]\n  egress:\n    - action: Deny\n\
         \x20     protocol: UDP\n      destination:\n        notNets: [\"203.0.113.0/24\"]\n        ports: [53]\n",
        g = i % 50,
        hi = lo + 10,
    )
}

fn host_yaml(i: usize) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata:\n  name: host-{i}\n  labels:\n\
         \x20   group: g{g}\n    role: web\nspec:\n  node: n{i}\n  expectedIPs: [\"2001:db8:2::{i:x}\"]\n",
        g = i % 50
    )
}

fn generate(policies: usize) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(format!("bench-load-{policies}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create bench directory");
    let tier = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: security\nspec:\n  order: 100\n";
    std::fs::write(dir.join("000-tier.yaml"), tier).expect("write tier");
    let hosts: Vec<String> = (0..HOSTS).map(host_yaml).collect();
    std::fs::write(dir.join("001-hosts.yaml"), hosts.join("---\n")).expect("write hosts");
    for f in 0..FILES {
        let mut text = String::new();
        for i in (f..policies).step_by(FILES) {
            let _ = write!(text, "---\n{}", policy_yaml(i));
        }
        std::fs::write(dir.join(format!("p{f:03}.yaml")), text).expect("write policies");
    }
    dir
}

fn load_validate(c: &mut Criterion) {
    let mut group = c.benchmark_group("load_validate");
    group.sample_size(10);
    for n in [1000usize, 10_000] {
        let dir = generate(n);
        let limits = Limits::default();
        match load_model(&dir, &limits) {
            Ok(model) => assert_eq!(model.resources.len(), n + HOSTS + 1),
            Err(problems) => panic!("generated directory is invalid: {}", problems[0]),
        }
        group.bench_with_input(BenchmarkId::from_parameter(n), &dir, |b, dir| {
            b.iter(|| load_model(dir, &limits).map(|m| m.resources.len()))
        });
    }
    group.finish();
}

criterion_group!(benches, load_validate);
criterion_main!(benches);
