//! Runs the `portcullis` binary the way users do: exit codes, output formats, and the
//! verdicts of the shipped `config/` directory.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
}

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn run_with_stdin(mut cmd: Command, stdin: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn portcullis");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait portcullis")
}

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A directory under the target dir, fresh for each test.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

#[test]
fn validate_accepts_the_shipped_config() {
    let out = bin()
        .arg("validate")
        .arg(repo_path("config"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "config/ must validate:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout_lines(&out).is_empty());
}

#[test]
fn validate_reports_every_problem_with_file_line_resource_and_field() {
    let dir = scratch_dir("validate-bad");
    std::fs::write(
        dir.join("bad.yaml"),
        "apiVersion: projectcalico.org/v3\n\
         kind: GlobalNetworkPolicy\n\
         metadata:\n  name: bad-one\n\
         spec:\n  selector: role = 'db'\n  ingress:\n    - action: allow\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("other.yml"),
        "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: t\nspec:\n  defaultAction: Allow\n",
    )
    .unwrap();
    let out = bin().arg("validate").arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let lines = stdout_lines(&out);
    let bad = dir.join("bad.yaml").display().to_string();
    let other = dir.join("other.yml").display().to_string();
    let expect = [
        (
            format!("{bad}:6: GlobalNetworkPolicy/bad-one: spec.selector: "),
            "selector",
        ),
        (
            format!("{bad}:8: GlobalNetworkPolicy/bad-one: spec.ingress[0].action: "),
            "allow",
        ),
        (format!("{other}:6: Tier/t: spec.defaultAction: "), "Allow"),
    ];
    for (prefix, fragment) in &expect {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(prefix.as_str()) && l.contains(fragment)),
            "no line starting with {prefix:?} and mentioning {fragment:?} in:\n{}",
            lines.join("\n")
        );
    }
    assert_eq!(lines.len(), expect.len(), "{}", lines.join("\n"));
}

#[test]
fn validate_fails_on_a_missing_directory() {
    let out = bin()
        .arg("validate")
        .arg(repo_path("no-such-directory"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout_lines(&out).len(), 1);
}

#[test]
fn selector_prints_match_and_exits_zero() {
    let cases = [
        ("role == 'db'", "role=db", "true"),
        ("role == 'db'", "role=web", "false"),
        ("role != 'db'", "", "true"),
        (
            "has(tier) && env in {'prod','staging'}",
            "tier=a,env=prod",
            "true",
        ),
    ];
    for (expr, labels, expected) in cases {
        let out = bin()
            .args(["selector", expr, "--labels", labels])
            .output()
            .unwrap();
        assert!(out.status.success(), "{expr}");
        assert_eq!(stdout_lines(&out), vec![expected.to_owned()], "{expr}");
    }
}

#[test]
fn selector_parse_error_exits_two_and_names_the_position() {
    let out = bin()
        .args(["selector", "role = 'db'", "--labels", "role=db"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("position 5"), "{err}");
}

#[test]
fn selector_batch_answers_every_line_and_survives_bad_ones() {
    let input = concat!(
        r#"{"selector":"a == 'x'","labels":{"a":"x"}}"#,
        "\n",
        r#"{"selector":"a == 'x'","labels":{}}"#,
        "\n",
        "not json at all\n",
        r#"{"selector":"a = 'x'","labels":{}}"#,
        "\n",
        r#"{"selector":"global()","labels":{}}"#,
        "\n",
    );
    let mut cmd = bin();
    cmd.args(["selector", "--batch"]);
    let out = run_with_stdin(cmd, input);
    assert!(out.status.success());
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(lines[0], r#"{"match":true}"#);
    assert_eq!(lines[1], r#"{"match":false}"#);
    assert!(lines[2].starts_with(r#"{"error":"#), "{}", lines[2]);
    assert!(lines[3].starts_with(r#"{"error":"#), "{}", lines[3]);
    assert_eq!(lines[4], r#"{"match":true}"#);
}

/// Flows through the shipped config/ and what must decide them. `decider` is matched
/// against the deciding trace entry's policy name, or its `default` when a default decided.
const CONFIG_FLOWS: &[(&str, &str, &str)] = &[
    // Outside client to web-1's named port http (80 on web-1).
    (
        r#"{"src":"198.51.100.70","dst":"203.0.113.110","protocol":"tcp","srcPort":40000,"dstPort":80}"#,
        "allow",
        "allow-web",
    ),
    // web-2 names port 8080 "http": port 80 is not open there, 8080 is.
    (
        r#"{"src":"198.51.100.70","dst":"203.0.113.111","protocol":"TCP","srcPort":40000,"dstPort":80}"#,
        "deny",
        "tier-end",
    ),
    (
        r#"{"src":"198.51.100.70","dst":"203.0.113.111","protocol":"6","srcPort":40000,"dstPort":8080}"#,
        "allow",
        "allow-web",
    ),
    // A blocklisted source is denied by the security tier before any application policy.
    (
        r#"{"src":"198.51.100.201","dst":"203.0.113.110","protocol":"tcp","srcPort":40000,"dstPort":80}"#,
        "deny",
        "security.blocklist",
    ),
    // Telnet: logged, then denied.
    (
        r#"{"src":"198.51.100.70","dst":"203.0.113.110","protocol":"tcp","srcPort":40000,"dstPort":23}"#,
        "deny",
        "security.no-telnet",
    ),
    // Partners reach PostgreSQL on the database (order 10) ...
    (
        r#"{"src":"198.51.100.10","dst":"203.0.113.112","protocol":"tcp","srcPort":40000,"dstPort":5432}"#,
        "allow",
        "allow-partners-to-db",
    ),
    // ... anyone else is dropped by the order-20 policy.
    (
        r#"{"src":"198.51.100.70","dst":"203.0.113.112","protocol":"tcp","srcPort":40000,"dstPort":5432}"#,
        "deny",
        "drop-other-db-ingress",
    ),
    // Frontend host to Redis on the database: egress of web-1 and ingress of db-1 both allow.
    (
        r#"{"src":"203.0.113.110","dst":"203.0.113.112","protocol":"tcp","srcPort":40000,"dstPort":6379}"#,
        "allow",
        "allow-tcp-6379",
    ),
    // Web hosts may not open connections to the internet.
    (
        r#"{"src":"203.0.113.110","dst":"198.51.100.70","protocol":"tcp","srcPort":40000,"dstPort":443}"#,
        "deny",
        "tier-end",
    ),
    // cache-1 has no normal policy: host endpoints deny by default, but SSH is a failsafe port.
    (
        r#"{"src":"198.51.100.70","dst":"203.0.113.113","protocol":"tcp","srcPort":40000,"dstPort":22}"#,
        "allow",
        "failsafe",
    ),
    (
        r#"{"src":"198.51.100.70","dst":"203.0.113.113","protocol":"tcp","srcPort":40000,"dstPort":80}"#,
        "deny",
        "host-deny",
    ),
    // statsd to the cache is allowed untracked.
    (
        r#"{"src":"198.51.100.70","dst":"203.0.113.113","protocol":"udp","srcPort":40000,"dstPort":8125}"#,
        "allow",
        "untracked-statsd",
    ),
    // Forged TEST-NET-1 source: dropped before DNAT.
    (
        r#"{"src":"192.0.2.1","dst":"203.0.113.110","protocol":"tcp","srcPort":40000,"dstPort":80}"#,
        "deny",
        "drop-bogon-sources",
    ),
    // Kubernetes pods: the storefront is public on 80.
    (
        r#"{"src":"198.51.100.70","dst":"203.0.113.120","protocol":"tcp","srcPort":40000,"dstPort":80}"#,
        "allow",
        "allow-web-from-anywhere",
    ),
    // Frontend pod to backend pod on Redis: allowed both ways.
    (
        r#"{"src":"203.0.113.120","dst":"203.0.113.121","protocol":"tcp","srcPort":40000,"dstPort":6379}"#,
        "allow",
        "allow-tcp-6379",
    ),
    // Other ports between them: the namespace's default deny.
    (
        r#"{"src":"203.0.113.120","dst":"203.0.113.121","protocol":"tcp","srcPort":40000,"dstPort":80}"#,
        "deny",
        "tier-end",
    ),
    // Backends call partner networks outside ...
    (
        r#"{"src":"203.0.113.121","dst":"198.51.100.70","protocol":"tcp","srcPort":40000,"dstPort":443}"#,
        "allow",
        "allow-egress-external",
    ),
    // ... but never blocklisted ones.
    (
        r#"{"src":"203.0.113.121","dst":"198.51.100.201","protocol":"tcp","srcPort":40000,"dstPort":443}"#,
        "deny",
        "security.blocklist",
    ),
    // IPv6 works the same way (https is 443 on web-1).
    (
        r#"{"src":"2001:db8:1::70","dst":"2001:db8:2::110","protocol":"tcp","srcPort":40000,"dstPort":443}"#,
        "allow",
        "allow-web",
    ),
    (
        r#"{"src":"2001:db8:1::70","dst":"2001:db8:2::110","protocol":"icmpv6","icmpType":128,"icmpCode":0}"#,
        "allow",
        "allow-web",
    ),
    // Neither address is an endpoint: denied (fail-closed).
    (
        r#"{"src":"198.51.100.1","dst":"198.51.100.2","protocol":"udp","srcPort":40000,"dstPort":53}"#,
        "deny",
        "unmatched-traffic",
    ),
];

/// The trace entry that decided: for a deny, the entry whose action is deny; otherwise the
/// last entry (the ingress side when both ran).
fn deciding_entry(decision: &serde_json::Value) -> &serde_json::Value {
    let trace = decision["trace"].as_array().expect("trace array");
    trace
        .iter()
        .find(|e| e["action"] == "deny")
        .or_else(|| trace.last())
        .expect("non-empty trace")
}

fn decider_name(entry: &serde_json::Value) -> String {
    match (entry["policy"].as_str(), entry["default"].as_str()) {
        (Some(policy), _) => policy.to_owned(),
        (None, Some(default)) => default.to_owned(),
        _ => String::new(),
    }
}

#[test]
fn eval_decides_the_shipped_config_flows() {
    let input: String = CONFIG_FLOWS
        .iter()
        .map(|(flow, _, _)| format!("{flow}\n"))
        .collect();
    let mut cmd = bin();
    cmd.arg("eval").arg("--config").arg(repo_path("config"));
    let out = run_with_stdin(cmd, &input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), CONFIG_FLOWS.len());
    let mut mismatches = Vec::new();
    for ((flow, verdict, decider), line) in CONFIG_FLOWS.iter().zip(&lines) {
        let decision: serde_json::Value = serde_json::from_str(line).expect("JSON line");
        let got_verdict = decision["verdict"].as_str().unwrap_or("");
        let got_decider = decider_name(deciding_entry(&decision));
        if got_verdict != *verdict || !got_decider.ends_with(decider) {
            mismatches.push(format!(
                "{flow}\n  expected {verdict} by {decider}, got {got_verdict} by {got_decider}\n  {line}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn eval_answers_bad_lines_with_errors_and_keeps_going() {
    let input = concat!(
        "{not json\n",
        r#"{"src":"198.51.100.70","dst":"203.0.113.110","protocol":"tcp","dstPort":70000}"#,
        "\n",
        r#"{"src":"nowhere","dst":"203.0.113.110","protocol":"tcp","dstPort":80}"#,
        "\n",
        r#"{"src":"198.51.100.70","dst":"203.0.113.110","protocol":"bogus"}"#,
        "\n",
        r#"{"src":"198.51.100.70","dst":"203.0.113.110","protocol":"tcp","srcPort":1,"dstPort":80}"#,
        "\n",
    );
    let mut cmd = bin();
    cmd.arg("eval").arg("--config").arg(repo_path("config"));
    let out = run_with_stdin(cmd, input);
    assert!(out.status.success());
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), 5, "{lines:?}");
    for line in &lines[..4] {
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON line");
        assert!(v["error"].is_string(), "{line}");
    }
    let last: serde_json::Value = serde_json::from_str(&lines[4]).unwrap();
    assert_eq!(last["verdict"], "allow");
}

#[test]
fn eval_refuses_an_invalid_config() {
    let dir = scratch_dir("eval-invalid");
    std::fs::write(
        dir.join("p.yaml"),
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  tier: missing\n",
    )
    .unwrap();
    let mut cmd = bin();
    cmd.arg("eval").arg("--config").arg(&dir);
    let out = run_with_stdin(cmd, "");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spec.tier"), "{err}");
}

#[test]
fn explain_walks_tiers_and_names_the_decision() {
    let out = bin()
        .arg("explain")
        .arg("--config")
        .arg(repo_path("config"))
        .args([
            "--src",
            "198.51.100.201",
            "--dst",
            "203.0.113.110",
            "--protocol",
            "tcp",
            "--src-port",
            "40000",
            "--dst-port",
            "80",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["security", "security.blocklist", "HostEndpoint/web-1"] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert!(text.to_lowercase().contains("deny"), "{text}");
}

#[test]
fn eval_compiled_and_reference_give_identical_lines() {
    let input: String = CONFIG_FLOWS
        .iter()
        .map(|(flow, _, _)| format!("{flow}\n"))
        .collect();
    let run = |extra: &[&str]| {
        let mut cmd = bin();
        cmd.arg("eval")
            .arg("--config")
            .arg(repo_path("config"))
            .args(extra);
        let out = run_with_stdin(cmd, &input);
        assert!(out.status.success());
        stdout_lines(&out)
    };
    let compiled = run(&[]);
    let reference = run(&["--reference"]);
    assert_eq!(compiled.len(), CONFIG_FLOWS.len());
    assert_eq!(compiled, reference);
}
