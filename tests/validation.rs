//! Validation of YAML fixtures (SPEC Part B §6).
//!
//! - `fixtures/validation/rules/<rule>/{valid,invalid}.yaml`: one valid and one invalid file per
//!   rule. Every problem the invalid file must produce is written as a comment on the line
//!   where it must be reported: `# expect: KIND/NAME FIELD: fragment of the message` (`...` in
//!   the fragment stands for any text). The test asserts exactly those problems, in order, and
//!   none for the valid file. A first line `# limits: max_rules_per_policy=N` runs the rule
//!   under a smaller limit.
//! - `fixtures/validation/corner-cases/<case>/`: SPEC §6's "valid corner cases that must not be
//!   rejected", one directory each (some are about directories: `.yml`, several files).
//! - `fixtures/validation/many-problems/`: a directory of several bad files; every problem is
//!   reported with its file and line.
//! - `fixtures/validation/settings/`: settings read from both configuration resources, then
//!   environment variables.

// Test helpers outside #[test] functions unwrap too: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use portcullis::model::load::{load_dir, load_str};
use portcullis::model::settings::UnmatchedTrafficAction;
use portcullis::model::validate::validate;
use portcullis::model::{Limits, Problem, load_model};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/validation")
}

/// A problem a fixture expects, from a `# expect:` comment.
#[derive(Debug)]
struct Expected {
    file: String,
    line: usize,
    resource: String,
    field: String,
    fragment: String,
}

fn expectations(file: &str, text: &str) -> Vec<Expected> {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let (_, spec) = line.split_once("# expect: ")?;
            let (resource, rest) = spec.split_once(' ')?;
            let (field, fragment) = rest.split_once(": ")?;
            Some(Expected {
                file: file.to_owned(),
                line: i + 1,
                resource: resource.to_owned(),
                field: field.to_owned(),
                fragment: fragment.to_owned(),
            })
        })
        .collect()
}

/// Whether `message` contains the parts of `fragment` separated by `...`, in order.
fn contains_in_order(message: &str, fragment: &str) -> bool {
    let mut rest = message;
    for part in fragment.split("...") {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

fn matches(problem: &Problem, want: &Expected) -> bool {
    problem.file.ends_with(&want.file)
        && problem.line == want.line
        && problem.resource == want.resource
        && problem.field == want.field
        && contains_in_order(&problem.message, &want.fragment)
}

/// Differences between the problems found and those expected, as readable lines.
fn compare(context: &str, problems: &[Problem], expected: &[Expected]) -> Vec<String> {
    let all_match = problems.len() == expected.len()
        && problems.iter().zip(expected).all(|(p, e)| matches(p, e));
    if all_match {
        return Vec::new();
    }
    let mut report = vec![format!(
        "{context}: problems differ from the `# expect:` comments"
    )];
    report.extend(expected.iter().map(|e| {
        format!(
            "    expected {}:{}: {}: {}: …{}…",
            e.file, e.line, e.resource, e.field, e.fragment
        )
    }));
    report.extend(problems.iter().map(|p| format!("    got      {p}")));
    report
}

fn limits_for(text: &str) -> Limits {
    let mut limits = Limits::default();
    if let Some(setting) = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# limits: "))
    {
        for pair in setting.split(',') {
            match pair.trim().split_once('=') {
                Some(("max_rules_per_policy", n)) => {
                    limits.max_rules_per_policy = n.parse().unwrap()
                }
                Some(("max_selector_len", n)) => limits.max_selector_len = n.parse().unwrap(),
                _ => panic!("unknown limit in fixture: {pair}"),
            }
        }
    }
    limits
}

/// Loads one fixture file and validates it on its own.
fn check_fixture(rule: &str, path: &Path, must_be_valid: bool) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap();
    let file_name = path.file_name().unwrap().to_str().unwrap();
    let context = format!("{rule}/{file_name}");
    let limits = limits_for(&text);
    let (resources, load_problems) = load_str(file_name, &text, &limits);
    if !load_problems.is_empty() || resources.is_empty() {
        let mut report = vec![format!("{context}: did not load cleanly")];
        report.extend(load_problems.iter().map(|p| format!("    {p}")));
        return report;
    }
    let expected = expectations(file_name, &text);
    if must_be_valid != expected.is_empty() {
        return vec![format!(
            "{context}: a valid fixture expects no problem and an invalid one at least one"
        )];
    }
    compare(&context, &validate(&resources, &limits), &expected)
}

#[test]
fn every_rule_has_a_valid_and_an_invalid_fixture_that_behave() {
    let mut rules: Vec<PathBuf> = fs::read_dir(fixtures().join("rules"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    rules.sort();
    assert!(rules.len() >= 60, "only {} rule fixtures", rules.len());
    let mut failures = Vec::new();
    for dir in &rules {
        let rule = dir.file_name().unwrap().to_str().unwrap();
        failures.extend(check_fixture(rule, &dir.join("valid.yaml"), true));
        failures.extend(check_fixture(rule, &dir.join("invalid.yaml"), false));
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn valid_corner_cases_are_accepted() {
    // (directory, resources it holds)
    let cases = [
        ("named-ports-without-protocol", 1),
        ("protocol-6-with-ports", 1),
        ("empty-ports-any-protocol", 1),
        ("trailing-comma-in-set", 1),
        ("namespace-selector-global-with-space", 1),
        ("fractional-order", 1),
        ("tier-without-order", 1),
        ("knp-without-policy-types", 1),
        ("yml-extension", 1),
        ("several-files", 4),
        ("kind-list", 2),
    ];
    let mut failures = Vec::new();
    for (case, count) in cases {
        let dir = fixtures().join("corner-cases").join(case);
        match load_model(&dir, &Limits::default()) {
            Ok(model) if model.resources.len() == count => {}
            Ok(model) => failures.push(format!(
                "{case}: {} resources, expected {count}",
                model.resources.len()
            )),
            Err(problems) => {
                failures.push(format!("{case}: rejected"));
                failures.extend(problems.iter().map(|p| format!("    {p}")));
            }
        }
    }
    let listed = fs::read_dir(fixtures().join("corner-cases"))
        .unwrap()
        .count();
    assert_eq!(
        listed,
        cases.len(),
        "every corner-case directory is in the table"
    );
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn a_directory_with_several_bad_files_reports_every_problem_at_its_file_and_line() {
    let dir = fixtures().join("many-problems");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let expected: Vec<Expected> = names
        .iter()
        .flat_map(|name| expectations(name, &fs::read_to_string(dir.join(name)).unwrap()))
        .collect();
    assert!(expected.len() >= 10);
    let problems = match load_model(&dir, &Limits::default()) {
        Ok(_) => panic!("the directory was accepted"),
        Err(problems) => problems,
    };
    let failures = compare("many-problems", &problems, &expected);
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    // The printed form a user sees: FILE:LINE: KIND/NAME: FIELD: message.
    let first = problems[0].to_string();
    let want = format!(
        "{}:10: GlobalNetworkPolicy/allow-web: spec.ingress[0].action: ",
        problems[0].file
    );
    assert!(first.starts_with(&want), "{first}");
}

#[test]
fn the_shipped_configuration_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    if let Err(problems) = load_model(&dir, &Limits::default()) {
        let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
        panic!("config/ is invalid:\n{}", shown.join("\n"));
    }
}

#[test]
fn settings_come_from_both_resources_then_the_environment() {
    let dir = fixtures().join("settings");
    let (resources, problems) = load_dir(&dir, &Limits::default());
    assert!(problems.is_empty(), "{problems:?}");
    assert!(validate(&resources, &Limits::default()).is_empty());
    let mut settings = portcullis::model::Settings::from_resources(&resources).unwrap();
    assert_eq!(settings.log_severity, "Debug");
    assert_eq!(settings.failsafe_inbound.len(), 1);
    assert_eq!(settings.failsafe_inbound[0].port, 2222);
    assert_eq!(
        settings.failsafe_inbound[0].net.map(|n| n.to_string()),
        Some("192.0.2.0/24".to_owned())
    );
    assert!(settings.failsafe_outbound.is_empty());
    assert_eq!(
        (settings.metrics_host.as_str(), settings.metrics_port),
        ("0.0.0.0", 9100)
    );
    assert_eq!(settings.health_port, 9099);
    assert_eq!(
        settings.unmatched_traffic_action,
        UnmatchedTrafficAction::Allow
    );
    assert!(!settings.anti_spoof && !settings.tcp_loose_pickup && settings.revalidate_on_reload);
    assert_eq!(settings.inside_nets.len(), 2);
    assert_eq!(settings.allowed_ether_types, [0x88cc]);
    assert_eq!(settings.conntrack_max_entries, 5000);
    assert_eq!(
        settings.conntrack_timeouts.tcp_established,
        Duration::from_secs(7200)
    );
    assert_eq!(
        settings.conntrack_timeouts.udp_replied,
        Duration::from_secs(90)
    );
    assert_eq!(settings.fragment_tracker_max_entries, 64);
    assert_eq!(settings.log_rate_limit_per_second, 10);

    // The environment comes after the resources and wins; what it does not set stays.
    settings
        .apply_env([
            (
                "PORTCULLIS_CONNTRACK_MAX_ENTRIES".to_owned(),
                "2000".to_owned(),
            ),
            ("PORTCULLIS_ANTI_SPOOF".to_owned(), "true".to_owned()),
        ])
        .unwrap();
    assert_eq!(settings.conntrack_max_entries, 2000);
    assert!(settings.anti_spoof);
    assert_eq!(settings.fragment_tracker_max_entries, 64);

    let problems = settings
        .apply_env([(
            "PORTCULLIS_INSIDE_NETS".to_owned(),
            "192.0.2.1/24".to_owned(),
        )])
        .unwrap_err();
    assert_eq!(problems.len(), 1);
    assert_eq!(
        (
            problems[0].file.as_str(),
            problems[0].resource.as_str(),
            problems[0].field.as_str()
        ),
        ("environment", "-", "PORTCULLIS_INSIDE_NETS")
    );
}

/// 10,000 GlobalNetworkPolicies in one file, each with selectors, CIDRs and ports, plus the
/// tier they use. Run with `cargo test --release --test validation -- --ignored --nocapture`.
#[test]
#[ignore = "timing; run in release"]
fn validating_10000_policies_takes_well_under_a_second() {
    let mut text = String::from(
        "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: security\nspec:\n  order: 100\n",
    );
    for i in 0..10_000 {
        text.push_str(&format!(
            "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: security.p{i}\n\
             spec:\n  tier: security\n  order: {i}\n  selector: group == 'g{g}' && has(role)\n  types: [Ingress, Egress]\n\
             \x20 ingress:\n    - action: Allow\n      protocol: TCP\n      source:\n        nets: [198.51.100.{n}/32]\n\
             \x20       selector: role != 'blocked'\n      destination:\n        ports: [{lo}, \"{lo}:{hi}\"]\n\
             \x20 egress:\n    - action: Deny\n      protocol: UDP\n      destination:\n        notNets: [203.0.113.0/24]\n\
             \x20       ports: [53]\n",
            g = i % 50,
            n = i % 256,
            lo = 1000 + i % 5000,
            hi = 1010 + i % 5000,
        ));
    }
    let limits = Limits::default();
    let (resources, problems) = load_str("many.yaml", &text, &limits);
    assert!(problems.is_empty(), "{:?}", &problems[..1]);
    assert_eq!(resources.len(), 10_001);
    let start = Instant::now();
    let problems = validate(&resources, &limits);
    let elapsed = start.elapsed();
    assert!(problems.is_empty(), "{:?}", &problems[..1]);
    println!("validated 10,000 policies in {elapsed:?}");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
}
