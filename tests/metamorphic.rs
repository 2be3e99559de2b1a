//! Metamorphic relations of policy evaluation, for the reference and the compiled evaluator.
//!
//! Each test takes a random valid directory (see `common`), changes it in a way that must not
//! change any decision, and checks that every flow of a random batch is decided the same way
//! before and after: the whole `Decision` of the reference evaluator, the whole `Decision` of
//! the compiled evaluator, and what `Snapshot::decide` says with its ids named (the ids
//! themselves are allowed to change).
//! - Shuffling the order of files and of the documents in them.
//! - Putting in front (lowest order) an unrelated tier whose policies select no endpoint.
//! - Adding a tier that ends in Pass holding an `all()` policy whose rules only Pass.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::cell::Cell;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{TestCaseError, TestError};
use serde_json::Value;

use common::{ActionGen, Config, Dir, FlowGen, GlobalPolicyGen, PolicyGen, StageGen};
use portcullis::compile;
use portcullis::policy::{self, Flow, Resolved};
use portcullis::snapshot::Snapshot;

const CONFIGS: u32 = 160;
const FLOWS: usize = 32;

/// A directory, resolved and compiled.
struct Built {
    dir: Dir,
    resolved: Resolved,
    snapshot: Snapshot,
}

fn built(dir: Dir) -> Result<Built, String> {
    let resolved = common::build(&dir)?;
    let snapshot = compile::compile(&resolved, 1);
    Ok(Built {
        dir,
        resolved,
        snapshot,
    })
}

/// Counts of what was checked, and of generated directories that were invalid.
#[derive(Default)]
struct Tally {
    configs: Cell<usize>,
    flows: Cell<usize>,
    invalid: Cell<usize>,
}

impl Tally {
    fn summary(&self, name: &str) -> String {
        format!(
            "{name}: {} configuration pairs, {} flows, {} generated directories invalid",
            self.configs.get(),
            self.flows.get(),
            self.invalid.get()
        )
    }
}

/// Build the original and the changed directory and compare every flow's decisions.
fn same_decisions(
    cfg: &Config,
    original: Dir,
    changed: Dir,
    flows: &[FlowGen],
    tally: &Tally,
) -> Result<(), TestCaseError> {
    let (before, after) = match (built(original), built(changed)) {
        (Ok(b), Ok(a)) => (b, a),
        (Err(problems), _) | (_, Err(problems)) => {
            tally.invalid.set(tally.invalid.get() + 1);
            return Err(TestCaseError::reject(problems));
        }
    };
    tally.configs.set(tally.configs.get() + 1);
    for f in flows {
        let flow = cfg.flow(f);
        let comparisons = [
            (
                "reference",
                policy::evaluate(&before.resolved, &flow).to_json_line(),
                policy::evaluate(&after.resolved, &flow).to_json_line(),
            ),
            (
                "compiled",
                compile::evaluate(&before.snapshot, &flow).to_json_line(),
                compile::evaluate(&after.snapshot, &flow).to_json_line(),
            ),
            (
                "Snapshot::decide",
                decided(&before.snapshot, &flow),
                decided(&after.snapshot, &flow),
            ),
        ];
        for (evaluator, was, is) in comparisons {
            if was != is {
                return Err(TestCaseError::fail(format!(
                    "{evaluator} decision changed\n--- flow\n{flow}\n{flow:?}\n--- before\n{was}\n\
                     --- after\n{is}\n--- directory before\n{}--- directory after\n{}",
                    common::show_dir(&before.dir),
                    common::show_dir(&after.dir),
                )));
            }
        }
        tally.flows.set(tally.flows.get() + 1);
    }
    Ok(())
}

/// `Snapshot::decide`, named: its ids differ between directories that mean the same thing.
fn decided(snapshot: &Snapshot, flow: &Flow) -> String {
    let (decision, logged) = common::name_verdict(snapshot, &snapshot.decide(&common::key(flow)));
    format!(
        "{} (Log rules per side: {logged:?})",
        decision.to_json_line()
    )
}

fn finish(name: &str, tally: &Tally, result: Result<(), TestError<impl std::fmt::Debug>>) {
    eprintln!("{}", tally.summary(name));
    match result {
        Ok(()) => {}
        Err(TestError::Fail(message, _)) => panic!("minimal failing case:\n{message}"),
        Err(TestError::Abort(reason)) => panic!("aborted: {reason}"),
    }
    let tried = tally.configs.get() + tally.invalid.get();
    assert!(
        tally.invalid.get() * 50 <= tried,
        "{} of {tried} generated directories were invalid",
        tally.invalid.get()
    );
}

fn flows() -> impl Strategy<Value = Vec<FlowGen>> {
    vec(common::flow(), FLOWS..=FLOWS)
}

#[test]
fn shuffling_files_and_documents_changes_no_decision() {
    let tally = Tally::default();
    let strategy = (
        common::config(),
        common::layout(),
        common::layout(),
        vec(any::<u32>(), 64),
        flows(),
    );
    let result = common::runner(CONFIGS).run(&strategy, |(cfg, layout, relayout, keys, flows)| {
        let resources = cfg.resources();
        let shuffled: Vec<Value> = common::permutation(resources.len(), &keys)
            .into_iter()
            .map(|i| resources[i].clone())
            .collect();
        let original = common::lay_out(&resources, &layout);
        let changed = common::lay_out(&shuffled, &relayout);
        same_decisions(&cfg, original, changed, &flows, &tally)
    });
    finish("shuffle", &tally, result);
}

/// A selector no generated endpoint, set or namespace can match: no label has this key.
const SELECTS_NOTHING: &str = "has(unrelated)";

/// The policies of the unrelated tier: the generated ones that can live in a custom tier, with
/// their selectors replaced by one that selects nothing.
fn unrelated_policies(policies: &[PolicyGen], tier: &str) -> Vec<Value> {
    policies
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let name = format!("front{i}");
            match p {
                PolicyGen::Global(g) => {
                    let mut g = g.clone();
                    g.selector = Some(SELECTS_NOTHING.to_owned());
                    Some(common::global_policy(&g, &name, Some(tier)))
                }
                PolicyGen::Namespaced(n) => {
                    let mut n = n.clone();
                    n.selector = Some(SELECTS_NOTHING.to_owned());
                    Some(common::namespaced_policy(&n, &name, Some(tier)))
                }
                PolicyGen::Kubernetes(_) | PolicyGen::V1(_) => None,
            }
        })
        .collect()
}

#[test]
fn an_unrelated_front_tier_changes_no_decision() {
    let tally = Tally::default();
    let strategy = (
        common::config(),
        common::layout(),
        vec(common::policy(), 0..=4),
        select(&[None, Some("Deny"), Some("Pass")][..]),
        flows(),
    );
    let result = common::runner(CONFIGS).run(&strategy, |(cfg, layout, extra, action, flows)| {
        let resources = cfg.resources();
        let mut changed = vec![common::tier_resource("front", Some(-1e9), action)];
        changed.extend(unrelated_policies(&extra, "front"));
        changed.extend(resources.iter().cloned());
        let original = common::lay_out(&resources, &layout);
        let changed = common::lay_out(&changed, &layout);
        same_decisions(&cfg, original, changed, &flows, &tally)
    });
    finish("unrelated front tier", &tally, result);
}

/// Orders for the pass-through tier: first, between and after the generated tiers (1000000 ties
/// with the default tier and loses on name), and unordered (last).
const PASS_TIER_ORDERS: &[Option<f64>] = &[
    Some(-1e9),
    Some(5.0),
    Some(1_000_000.0),
    Some(3_000_000.0),
    None,
];

/// An `all()` policy whose rules (random criteria, both directions) all Pass.
fn pass_only_policy() -> impl Strategy<Value = GlobalPolicyGen> {
    (
        common::rules(3),
        common::rules(3),
        common::stage(),
        proptest::option::of(select(&[0.0, 10.0, 1000.0][..])),
    )
        .prop_map(|(ingress, egress, stage, order)| {
            let pass = |rules: Vec<common::RuleGen>| -> Vec<common::RuleGen> {
                rules
                    .into_iter()
                    .map(|mut r| {
                        r.action = ActionGen::Pass;
                        r
                    })
                    .collect()
            };
            let mut ingress = pass(ingress);
            let mut egress = pass(egress);
            // One criteria-free Pass, so the policy passes every flow it sees.
            ingress.push(pass_everything());
            egress.push(pass_everything());
            GlobalPolicyGen {
                stem: "pass",
                tier: None,
                tier_prefixed_name: false,
                order,
                selector: Some("all()".to_owned()),
                namespace_selector: None,
                service_account_selector: None,
                types: common::TypesGen::Both,
                ingress,
                egress,
                stage: if stage == StageGen::PreDnat {
                    StageGen::Normal
                } else {
                    stage
                },
                apply_on_forward: true,
            }
        })
}

fn pass_everything() -> common::RuleGen {
    common::RuleGen {
        action: ActionGen::Pass,
        protocol: None,
        not_protocol: None,
        family: None,
        write_ip_version: false,
        icmp: None,
        not_icmp: None,
        source: common::SideGen::empty(),
        destination: common::SideGen::empty(),
        v1_old_nets: false,
    }
}

#[test]
fn a_tier_that_only_passes_changes_no_decision() {
    let tally = Tally::default();
    let strategy = (
        common::config(),
        common::layout(),
        vec(pass_only_policy(), 1..=2),
        select(PASS_TIER_ORDERS),
        flows(),
    );
    let result = common::runner(CONFIGS).run(&strategy, |(cfg, layout, policies, order, flows)| {
        let resources = cfg.resources();
        let mut changed = resources.clone();
        changed.push(common::tier_resource("passthrough", order, Some("Pass")));
        for (i, p) in policies.iter().enumerate() {
            let name = format!("passthrough.pass{i}");
            changed.push(common::global_policy(p, &name, Some("passthrough")));
        }
        let original = common::lay_out(&resources, &layout);
        let changed = common::lay_out(&changed, &layout);
        same_decisions(&cfg, original, changed, &flows, &tally)
    });
    finish("pass-through tier", &tally, result);
}
