//! The compiled evaluator against the reference evaluator, on random policy directories.
//!
//! Each case is a random valid directory (see `common`) loaded, validated and resolved like a
//! real one, compiled once, and a batch of random flows biased toward endpoint addresses, set
//! members, CIDR and port boundaries, both families and ICMP with and without type and code.
//! For every flow the compiled `evaluate` must return exactly the reference `Decision`
//! (verdict, trace, logged rules, note), and the allocation-free `Snapshot::decide` the same
//! verdict, with rule and endpoint ids that name, through the snapshot, the same deciding rules,
//! endpoints and Log rules (as many as it keeps, and the same count). A failure shrinks to a small directory and one flow, printed as YAML.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::Instant;

use proptest::collection::vec;
use proptest::strategy::Strategy;
use proptest::test_runner::{TestCaseError, TestError};

use common::{Config, Dir, FlowGen, GlobalPolicyGen, LayoutGen, PolicyGen, StageGen, TypesGen};
use portcullis::compile;
use portcullis::policy::{self, Decision, Flow, Resolved, TraceEntry};
use portcullis::snapshot::{LOGGED_CAPACITY, Snapshot};

/// Configurations per run (cases that pass; invalid ones are rejected and do not count).
const CONFIGS: u32 = 512;
/// Flows per configuration.
const FLOWS: usize = 48;
/// Directories with programs of several thousand entries, and flows through each.
const HUGE_CONFIGS: u32 = 2;
const HUGE_FLOWS: usize = 150;
/// Generated configurations that fail validation, at most, as a fraction of those tried.
const MAX_INVALID_FRACTION: f64 = 0.02;

/// Everything one flow needs to be judged both ways, and shown when they disagree.
struct Case<'a> {
    dir: &'a Dir,
    resolved: &'a Resolved,
    snapshot: &'a Snapshot,
}

impl Case<'_> {
    /// The reference decision, when both compiled paths agree with it.
    fn check(&self, flow: &Flow) -> Result<Decision, String> {
        let want = policy::evaluate(self.resolved, flow);
        let got = compile::evaluate(self.snapshot, flow);
        if got != want {
            return Err(self.report(
                "compile::evaluate differs",
                flow,
                &want,
                &got.to_json_line(),
            ));
        }
        let verdict = self.snapshot.decide(&common::key(flow));
        let (decided, decided_logged) = common::name_verdict(self.snapshot, &verdict);
        let (expected, expected_logged) = common::capped(&want);
        if decided != expected || decided_logged != expected_logged {
            let shown = format!(
                "Snapshot::decide, named: {} (Log rules per side: {decided_logged:?}, reference \
                 {expected_logged:?})\n{verdict:?}",
                decided.to_json_line()
            );
            return Err(self.report("Snapshot::decide differs", flow, &want, &shown));
        }
        Ok(want)
    }

    fn report(&self, what: &str, flow: &Flow, want: &Decision, got: &str) -> String {
        format!(
            "{what}\n--- directory\n{}--- flow\n{flow}\n{flow:?}\n--- reference\n{}\n--- compiled\n{got}\n",
            common::show_dir(self.dir),
            want.to_json_line(),
        )
    }
}

#[derive(Default)]
struct Tally {
    configs: Cell<usize>,
    invalid: Cell<usize>,
    flows: Cell<usize>,
    allowed: Cell<usize>,
    first_invalid: RefCell<Option<String>>,
    /// How the sides of the checked flows were decided, to show what the run covered.
    deciders: RefCell<BTreeMap<String, usize>>,
}

impl Tally {
    fn count(&self, decision: &Decision) {
        let mut deciders = self.deciders.borrow_mut();
        if decision.note.is_some() {
            *deciders
                .entry("note (mixed families)".to_owned())
                .or_default() += 1;
        }
        for entry in &decision.trace {
            *deciders.entry(decider(entry)).or_default() += 1;
            if !entry.logged.is_empty() {
                *deciders.entry("with logged rules".to_owned()).or_default() += 1;
            }
            if entry.logged.len() > LOGGED_CAPACITY {
                let more = format!("with more than {LOGGED_CAPACITY} logged rules");
                *deciders.entry(more).or_default() += 1;
            }
        }
    }

    fn coverage(&self) -> String {
        self.deciders
            .borrow()
            .iter()
            .map(|(k, n)| format!("  {n:>7}  {k}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `side stage: what decided`, e.g. `ingress preDNAT: rule of GlobalNetworkPolicy Allow`.
fn decider(entry: &TraceEntry) -> String {
    let what = match (&entry.policy, entry.default) {
        (Some(policy), _) => {
            let kind = policy.split('/').next().unwrap_or("?");
            format!("rule of {kind} {:?}", entry.action)
        }
        (None, Some(reason)) => format!("default {reason:?} {:?}", entry.action),
        (None, None) => format!("? {:?}", entry.action),
    };
    format!("{:?} {:?}: {what}", entry.side, entry.stage)
}

/// What a test requires of the snapshot itself, beyond its decisions.
type SnapshotCheck = fn(&Snapshot) -> Result<(), String>;

fn any_snapshot(_: &Snapshot) -> Result<(), String> {
    Ok(())
}

fn run_case(
    cfg: &Config,
    layout: &LayoutGen,
    flows: &[FlowGen],
    tally: &Tally,
    snapshot_check: SnapshotCheck,
) -> Result<(), TestCaseError> {
    let dir = common::lay_out(&cfg.resources(), layout);
    let resolved = match common::build(&dir) {
        Ok(r) => r,
        Err(problems) => {
            tally.invalid.set(tally.invalid.get() + 1);
            tally
                .first_invalid
                .borrow_mut()
                .get_or_insert_with(|| format!("{problems}\n{}", common::show_dir(&dir)));
            return Err(TestCaseError::reject("generated directory is invalid"));
        }
    };
    let snapshot = compile::compile(&resolved, 1);
    if snapshot.generation() != 1 {
        return Err(TestCaseError::fail(format!(
            "snapshot generation {} instead of 1",
            snapshot.generation()
        )));
    }
    snapshot_check(&snapshot).map_err(TestCaseError::fail)?;
    let case = Case {
        dir: &dir,
        resolved: &resolved,
        snapshot: &snapshot,
    };
    tally.configs.set(tally.configs.get() + 1);
    for f in flows {
        let flow = cfg.flow(f);
        let decision = case.check(&flow).map_err(TestCaseError::fail)?;
        tally.flows.set(tally.flows.get() + 1);
        if decision.is_allowed() {
            tally.allowed.set(tally.allowed.get() + 1);
        }
        tally.count(&decision);
    }
    Ok(())
}

#[test]
fn compiled_decisions_equal_the_reference_on_random_directories() {
    let started = Instant::now();
    let tally = Tally::default();
    let mut runner = common::runner(CONFIGS);
    let strategy = (
        common::config(),
        common::layout(),
        vec(common::flow(), FLOWS..=FLOWS),
    );
    let result = runner.run(&strategy, |(cfg, layout, flows)| {
        run_case(&cfg, &layout, &flows, &tally, any_snapshot)
    });
    let (configs, invalid, flows) = (tally.configs.get(), tally.invalid.get(), tally.flows.get());
    eprintln!(
        "differential: {configs} configurations and {flows} flows checked ({} allowed), \
         {invalid} generated configurations invalid, in {:.1?}",
        tally.allowed.get(),
        started.elapsed()
    );
    eprintln!("sides decided by:\n{}", tally.coverage());
    match result {
        Ok(()) => {}
        Err(TestError::Fail(message, _)) => panic!("minimal failing case:\n{message}"),
        Err(TestError::Abort(reason)) => panic!(
            "aborted: {reason}\nfirst invalid directory:\n{}",
            tally.first_invalid.borrow().as_deref().unwrap_or("-")
        ),
    }
    let tried = configs + invalid;
    assert!(
        (invalid as f64) <= MAX_INVALID_FRACTION * tried as f64,
        "{invalid} of {tried} generated directories were invalid; the first:\n{}",
        tally.first_invalid.borrow().as_deref().unwrap_or("-")
    );
    let cases = runner.config().cases as usize;
    assert!(configs >= cases && flows >= cases * FLOWS);
}

/// Policies selecting every endpoint with hundreds of random rules each: every program has
/// more than 4096 entries, so its bitsets need more than one summary word.
fn huge_policies() -> impl Strategy<Value = Vec<PolicyGen>> {
    let rules = || vec(common::rule(), 450..=500);
    let policy =
        (rules(), rules(), proptest::option::of(0..4usize)).prop_map(|(ingress, egress, tier)| {
            PolicyGen::Global(GlobalPolicyGen {
                stem: "big",
                tier,
                tier_prefixed_name: false,
                order: None,
                selector: None,
                namespace_selector: None,
                service_account_selector: None,
                types: TypesGen::Both,
                ingress,
                egress,
                stage: StageGen::Normal,
                apply_on_forward: false,
            })
        });
    vec(policy, 10..=10)
}

/// Every program holds every policy: on average, then, over 4096 entries each.
fn more_than_one_summary_word(snapshot: &Snapshot) -> Result<(), String> {
    let average = snapshot.entry_count() / snapshot.program_count().max(1);
    if average > 4096 {
        Ok(())
    } else {
        Err(format!(
            "programs average {average} entries: the test no longer exercises big programs"
        ))
    }
}

#[test]
fn compiled_decisions_equal_the_reference_on_programs_of_thousands_of_entries() {
    let started = Instant::now();
    let tally = Tally::default();
    let mut runner = common::runner(HUGE_CONFIGS);
    let strategy = (
        common::config(),
        huge_policies(),
        common::layout(),
        vec(common::flow(), HUGE_FLOWS..=HUGE_FLOWS),
    );
    let result = runner.run(&strategy, |(mut cfg, policies, layout, flows)| {
        cfg.policies = policies;
        run_case(&cfg, &layout, &flows, &tally, more_than_one_summary_word)
    });
    eprintln!(
        "differential, huge programs: {} configurations and {} flows checked, in {:.1?}",
        tally.configs.get(),
        tally.flows.get(),
        started.elapsed()
    );
    match result {
        Ok(()) => {}
        Err(TestError::Fail(message, _)) => panic!("minimal failing case:\n{message}"),
        Err(TestError::Abort(reason)) => panic!("aborted: {reason}"),
    }
}
