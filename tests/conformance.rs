//! Conformance table: probes written against `SPEC.md`, one row per normative statement,
//! example, rejection rule, valid corner case and checklist item, run through the binary the
//! way an outside conformance suite runs it: `selector --batch`, `validate DIR` and
//! `eval --config DIR`. Each table reports every failing row, not just the first.
//!
//! Rows are grouped by SPEC section; a comment names the section. Where SPEC leaves a point
//! open, the row follows the reading chosen for the engine and says so.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
}

fn run_with_stdin(mut cmd: Command, stdin: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn portcullis");
    let mut pipe = child.stdin.take().expect("stdin");
    let input = stdin.to_owned();
    // Written from another thread so that a large input cannot dead-lock against the output.
    // A command that exits without reading its input (a refused configuration) closes the
    // pipe early; that broken pipe is not a failure of the row.
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(input.as_bytes());
    });
    let output = child.wait_with_output().expect("wait portcullis");
    writer.join().expect("writer thread");
    output
}

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A row name as a file name: characters other than letters, digits, `.`, `-` and `_` become
/// `_` and their hex code, so that distinct names stay distinct.
fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c.to_string()
            } else {
                format!("_{:x}", u32::from(c))
            }
        })
        .collect()
}

/// A fresh directory for one row, named after it.
fn row_dir(table: &str, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("conformance")
        .join(table)
        .join(file_name(name));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create row dir");
    dir
}

/// Fails with every collected row failure at once.
fn report(table: &str, rows: usize, failures: &[String]) {
    eprintln!("{table}: {rows} rows, {} failing", failures.len());
    assert!(
        failures.is_empty(),
        "{table}: {} of {rows} rows fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Row names become directory names, so they must stay distinct as file names too.
fn assert_unique_names<'a>(table: &str, names: impl IntoIterator<Item = &'a str>) {
    let mut seen = BTreeSet::new();
    for name in names {
        assert!(
            seen.insert(file_name(name)),
            "{table}: row name {name:?} is used twice"
        );
    }
}

// =============================================================================================
// YAML builders. Bodies are written relative to `spec:` (or to one rule) and indented here.

fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines()
        .map(|l| format!("{pad}{l}\n"))
        .collect::<String>()
}

fn resource(api: &str, kind: &str, name: &str, meta: &str, spec: Option<&str>) -> String {
    let mut doc = format!("apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: {name}\n");
    doc.push_str(&indent(meta, 2));
    if let Some(spec) = spec {
        doc.push_str("spec:\n");
        doc.push_str(&indent(spec, 2));
    }
    doc
}

const V3: &str = "projectcalico.org/v3";

fn v3(kind: &str, name: &str, spec: &str) -> String {
    resource(V3, kind, name, "", Some(spec))
}

fn gnp(name: &str, spec: &str) -> String {
    v3("GlobalNetworkPolicy", name, spec)
}

fn gnp_meta(name: &str, meta: &str, spec: &str) -> String {
    resource(V3, "GlobalNetworkPolicy", name, meta, Some(spec))
}

fn np(ns: &str, name: &str, spec: &str) -> String {
    resource(
        V3,
        "NetworkPolicy",
        name,
        &format!("namespace: {ns}"),
        Some(spec),
    )
}

fn v1(name: &str, spec: &str) -> String {
    resource("v1", "policy", name, "", Some(spec))
}

fn knp(ns: &str, name: &str, spec: &str) -> String {
    resource(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        name,
        &format!("namespace: {ns}"),
        Some(spec),
    )
}

/// One list item (`- ...`) from a multi-line body.
fn item(body: &str) -> String {
    let mut lines = body.lines();
    let first = lines.next().unwrap_or_default();
    let mut out = format!("- {first}\n");
    for line in lines {
        out.push_str(&format!("  {line}\n"));
    }
    out
}

/// A GlobalNetworkPolicy `p` with one ingress rule.
fn rule(body: &str) -> String {
    gnp("p", &format!("ingress:\n{}", indent(&item(body), 2)))
}

/// A GlobalNetworkPolicy with `selector` and one rule per body in `direction`.
fn gnp_rules(name: &str, selector: &str, direction: &str, rules: &[&str]) -> String {
    let mut spec = format!("selector: \"{selector}\"\n{direction}:\n");
    for body in rules {
        spec.push_str(&indent(&item(body), 2));
    }
    gnp(name, &spec)
}

fn labels_meta(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let mut meta = "labels:\n".to_owned();
    for (k, v) in labels {
        meta.push_str(&format!("  '{k}': '{v}'\n"));
    }
    meta
}

/// A WorkloadEndpoint with orchestrator k8s; `extra` adds spec lines.
fn wep(ns: &str, name: &str, ip: &str, labels: &[(&str, &str)], extra: &str) -> String {
    let meta = format!("namespace: {ns}\n{}", labels_meta(labels));
    let spec =
        format!("orchestrator: k8s\ninterfaceName: cali-{name}\nipNetworks: ['{ip}']\n{extra}");
    resource(V3, "WorkloadEndpoint", name, &meta, Some(&spec))
}

fn hep(name: &str, ip: &str, labels: &[(&str, &str)], extra: &str) -> String {
    let spec = format!("node: node-1\nexpectedIPs: ['{ip}']\n{extra}");
    resource(V3, "HostEndpoint", name, &labels_meta(labels), Some(&spec))
}

fn namespace(name: &str, labels: &[(&str, &str)]) -> String {
    resource("v1", "Namespace", name, &labels_meta(labels), None)
}

fn network_set(ns: &str, name: &str, nets: &str, labels: &[(&str, &str)]) -> String {
    let meta = format!("namespace: {ns}\n{}", labels_meta(labels));
    resource(
        V3,
        "NetworkSet",
        name,
        &meta,
        Some(&format!("nets: {nets}")),
    )
}

fn global_set(name: &str, nets: &str, labels: &[(&str, &str)]) -> String {
    resource(
        V3,
        "GlobalNetworkSet",
        name,
        &labels_meta(labels),
        Some(&format!("nets: {nets}")),
    )
}

fn tier(name: &str, spec: &str) -> String {
    v3("Tier", name, if spec.is_empty() { "{}" } else { spec })
}

fn profile(name: &str, spec: &str) -> String {
    v3("Profile", name, spec)
}

fn gateway(spec: &str) -> String {
    resource(
        "portcullis/v1",
        "GatewayConfiguration",
        "default",
        "",
        Some(spec),
    )
}

fn felix(spec: &str) -> String {
    v3("FelixConfiguration", "default", spec)
}

fn docs(parts: &[String]) -> String {
    parts.join("---\n")
}

// =============================================================================================
// §1 Selector language, through `selector --batch`.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sel {
    /// `{"match":true}`
    T,
    /// `{"match":false}`
    F,
    /// `{"error":...}`
    E,
}
use Sel::{E, F, T};

type SelectorRow = (&'static str, &'static [(&'static str, &'static str)], Sel);

/// A selector row with owned text: selector, labels, expected answer.
type OwnedSelectorRow = (String, Vec<(String, String)>, Sel);

/// §1.1 lexical rules, §1.2 grammar and precedence, §1.3 evaluation, §8 items 1-6.
const SELECTOR_ROWS: &[SelectorRow] = &[
    // §1.1 whitespace: only space and tab, even at the end; blank means all() (§8 item 1).
    ("", &[], T),
    ("   ", &[], T),
    ("\t", &[], T),
    ("a == 'x'\n", &[("a", "x")], E),
    ("a == 'x'\r", &[("a", "x")], E),
    ("a == 'x'\u{c}", &[("a", "x")], E),
    ("a\u{a0}== 'x'", &[("a", "x")], E),
    ("a\t==\t'x'", &[("a", "x")], T),
    ("\n", &[], E),
    // §1.1 label names: [A-Za-z0-9_./-], any first character, case-sensitive.
    ("123 == 'x'", &[("123", "x")], T),
    ("-x == 'x'", &[("-x", "x")], T),
    ("./- == 'x'", &[("./-", "x")], T),
    ("a:b == 'x'", &[], E),
    ("a@b == 'x'", &[], E),
    ("A == 'x'", &[("a", "x")], F),
    ("a == 'X'", &[("a", "x")], F),
    // §1.1 string literals: either quote, no escapes (§8 item 2), any bytes inside.
    ("a == \"x'y\"", &[("a", "x'y")], T),
    ("a == 'x\"y'", &[("a", "x\"y")], T),
    ("a == ''", &[("a", "")], T),
    ("a == ''", &[], F),
    ("a == 'x", &[], E),
    ("a == \"a\\\"b\"", &[], E),
    ("a == 'a\\'", &[("a", "a\\")], T),
    ("a == '&&{,} \u{e9}'", &[("a", "&&{,} \u{e9}")], T),
    // §1.1 punctuation: single = & | are errors, != is greedy.
    ("a = 'x'", &[], E),
    ("a == 'x' & b == 'y'", &[], E),
    ("a == 'x' | b == 'y'", &[], E),
    ("a !== 'x'", &[], E),
    ("a != 'x'", &[], T),
    ("a != 'x'", &[("a", "x")], F),
    // §1.1 function-like keywords: only directly before "(", exact case.
    ("has (a)", &[], E),
    ("has( a )", &[("a", "")], T),
    ("has(a)", &[("a", "")], T),
    ("has(a)", &[], F),
    ("has(\ta\t)", &[("a", "1")], T),
    ("all( )", &[], T),
    ("all()", &[], T),
    ("global( )", &[], T),
    ("global()", &[], T),
    ("HAS(a)", &[("a", "1")], E),
    ("All()", &[], E),
    ("has(a, b)", &[], E),
    ("has()", &[], E),
    ("all(a)", &[], E),
    ("global(a)", &[], E),
    // §1.1 operator words: after a label, any gap or none, then a word boundary.
    ("a in{\"x\"}", &[("a", "x")], T),
    ("a contains\"x\"", &[("a", "yxy")], T),
    ("a inx {\"x\"}", &[], E),
    ("a startswith 'x'", &[("a", "xy")], T),
    ("a endswith 'y'", &[("a", "xy")], T),
    ("a notin {'x'}", &[("a", "y")], T),
    ("a starts with 'x'", &[("a", "xy")], T),
    ("a starts \t  with 'x'", &[("a", "xy")], T),
    ("a ends\twith 'y'", &[("a", "xy")], T),
    ("a not  in {'x'}", &[("a", "x")], F),
    ("a not in {'x'}", &[], T),
    ("a Contains 'x'", &[], E),
    ("a IN {'x'}", &[], E),
    ("a contains 'x'", &[], F),
    ("a contains ''", &[("a", "q")], T),
    ("a starts with ''", &[("a", "")], T),
    ("a ends with ''", &[], F),
    // §1.1 keywords are label names anywhere else (§8 item 5).
    ("has == \"x\"", &[("has", "x")], T),
    ("all == \"x\"", &[("all", "x")], T),
    ("global == \"x\"", &[("global", "x")], T),
    ("in in {\"x\"}", &[("in", "x")], T),
    ("contains contains \"x\"", &[("contains", "x")], T),
    ("not in {\"x\"}", &[("not", "y")], F),
    ("not in {\"x\"}", &[("not", "x")], T),
    ("not in {\"x\"}", &[], F),
    ("starts with \"x\"", &[], E),
    ("a startswith\"x\"", &[("a", "x")], T),
    ("a startswithx \"x\"", &[], E),
    // §1.2 sets: empty, trailing comma, duplicates; malformed sets (§8 item 6).
    ("a in {}", &[("a", "x")], F),
    ("a in {}", &[], F),
    ("a not in {}", &[], T),
    ("a not in {}", &[("a", "x")], T),
    ("a in {'x',}", &[("a", "x")], T),
    ("a in {'x','x'}", &[("a", "x")], T),
    ("a in {,}", &[], E),
    ("a in {'a' 'b'}", &[], E),
    ("a in {x}", &[], E),
    ("a in ('a')", &[], E),
    ("a in {'a',,}", &[], E),
    // §1.2 values must be quoted strings; no bare labels or leftover tokens.
    ("a == b", &[], E),
    ("a == 1", &[], E),
    ("\"a\" == a", &[], E),
    ("a", &[("a", "x")], E),
    ("()", &[], E),
    ("has(a) has(b)", &[], E),
    ("a == \"x\" ,", &[], E),
    // §1.2 precedence: ! then && then || (§8 item 3); §1.3 missing labels (§8 item 4).
    ("!a == 'x'", &[], T),
    ("!a == 'x'", &[("a", "x")], F),
    ("!!a == 'x'", &[("a", "x")], T),
    ("!!!a == 'x'", &[("a", "x")], F),
    ("! a == 'x'", &[], T),
    ("!a == \"x\" && b == \"y\"", &[("b", "y")], T),
    ("!a == \"x\" && b == \"y\"", &[("a", "x"), ("b", "y")], F),
    ("a == 'x' || b == 'y' && c == 'z'", &[("a", "x")], T),
    ("(a == 'x' || b == 'y') && c == 'z'", &[("a", "x")], F),
    ("!(a == 'x' || b == 'y')", &[], T),
    ("!has(a)", &[], T),
    ("!all()", &[], F),
    // Dangling operators and unbalanced parentheses.
    ("a == 'x' &&", &[], E),
    ("&& a == 'x'", &[], E),
    ("(a == 'x'", &[], E),
    ("a == 'x')", &[], E),
    ("((((a == 'x'))))", &[("a", "x")], T),
    // Mixed corners.
    ("a.b/c-d_e == 'x'", &[("a.b/c-d_e", "x")], T),
    ("a == 'x' || ", &[], E),
    ("a ==", &[], E),
    ("a == '\u{e9}'", &[("a", "\u{e9}")], T),
    ("a == 'x'\t", &[("a", "x")], T),
    (" a == 'x' ", &[("a", "x")], T),
    ("a==\"x\"&&b!=\"y\"", &[("a", "x")], T),
    ("a ! = 'x'", &[], E),
    ("a in {'x' , 'y' , }", &[("a", "y")], T),
    ("a in { }", &[("a", "y")], F),
    ("a notin{}", &[], T),
    ("has(a)&&has(b)", &[("a", ""), ("b", "")], T),
    ("has(a)||has(b)", &[], F),
    ("a.in == 'x'", &[("a.in", "x")], T),
    ("ain == 'x'", &[("ain", "x")], T),
    ("a in in {'x'}", &[], E),
    ("a not", &[], E),
    ("a not {'x'}", &[], E),
    ("a nOt in {'x'}", &[], E),
    ("a == 'x' && (b == 'y' || !has(c))", &[("a", "x")], T),
    ("a starts with 'x' ends with 'y'", &[], E),
    ("has(a.b/c)", &[("a.b/c", "")], T),
    ("has(a:b)", &[], E),
    ("has('a')", &[], E),
    ("a == \"\"", &[("a", "")], T),
    ("a != \"\"", &[], T),
    ("a not in {'', 'x'}", &[("a", "")], F),
    ("a in {''}", &[("a", "")], T),
    ("all()&&all()", &[], T),
    ("global()||a=='x'", &[], T),
    ("a containsx 'x'", &[], E),
    ("a contains 'x' ", &[("a", "x")], T),
    ("a\u{3000}== 'x'", &[], E),
    ("a == 'x'\u{2028}", &[], E),
    ("a == 'x\ny'", &[("a", "x\ny")], T),
    ("a == 'x' \u{b}", &[], E),
    ("a\u{e9} == 'x'", &[], E),
    ("a+b == 'x'", &[], E),
    ("(all())", &[], T),
    ("!(all())", &[], F),
    ("!", &[], E),
    ("!()", &[], E),
    ("a == 'x' && && b == 'y'", &[], E),
    ("a ||| b", &[], E),
    ("a == 'x' || || b == 'y'", &[], E),
    // More lexical and grammar corners: keywords as labels, operator spacing, stray tokens.
    ("a in {,\"x\"}", &[], E),
    ("a == 'x' && !", &[], E),
    ("has(a)b", &[], E),
    ("a ==\t\"x\"", &[("a", "x")], T),
    ("all()all()", &[], E),
    ("a == 'x' b == 'y'", &[], E),
    ("a contains", &[], E),
    ("a not\tin {}", &[], T),
    ("a not in{'x'}", &[("a", "x")], F),
    ("a in {'x'}x", &[], E),
    ("a'x'", &[], E),
    ("'a' == 'b'", &[], E),
    ("a in {'x'", &[], E),
    ("a in 'x'", &[], E),
    ("a contains {'x'}", &[], E),
    ("has(a", &[], E),
    ("has a)", &[], E),
    ("all ()", &[], E),
    ("global ()", &[], E),
    ("hasx(a)", &[], E),
    ("! ! a == 'x'", &[("a", "x")], T),
    ("!\t(a == 'x')", &[], T),
    ("a in {'x'} && b in {}", &[("a", "x")], F),
    ("a==''", &[("a", "")], T),
    ("a in {\"x\",'y'}", &[("a", "y")], T),
    ("a in {\"x'}", &[], E),
    ("a == \"x'", &[], E),
    ("a == 'x\"", &[], E),
    ("(((a == 'x')))", &[("a", "x")], T),
    ("((a == 'x')", &[], E),
    ("a != 'x' || has(b)", &[("a", "x")], F),
    ("a ! = 'x'", &[], E),
    ("a =! 'x'", &[], E),
    ("a <> 'x'", &[], E),
    ("a contains 'X'", &[("a", "x")], F),
    ("a starts with 'xy'", &[("a", "x")], F),
    ("a ends with 'yz'", &[("a", "xyz")], T),
    ("a starts with 'xyz'", &[("a", "xyz")], T),
    ("a contains 'xyz'", &[("a", "xyz")], T),
    ("a in {'xyz'}", &[("a", "xy")], F),
    ("has(a)||", &[], E),
    ("||has(a)", &[], E),
    ("&&", &[], E),
    ("!!", &[], E),
    (")", &[], E),
    ("{}", &[], E),
    (",", &[], E),
    ("a == 'x' )(", &[], E),
    ("a in {} {}", &[], E),
    ("a in {'a'}, b", &[], E),
    ("a == 'x'&&b == 'y'", &[("a", "x"), ("b", "y")], T),
    ("a == 'x'||b == 'y'", &[("b", "y")], T),
    ("a==\"x\"", &[("a", "x")], T),
    ("a.b == 'x'", &[("a.b", "x")], T),
    ("a/b == 'x'", &[("a/b", "x")], T),
    ("a_b == 'x'", &[("a_b", "x")], T),
    ("9 == 'x'", &[("9", "x")], T),
    ("- == 'x'", &[("-", "x")], T),
    (". == 'x'", &[(".", "x")], T),
    ("/ == 'x'", &[("/", "x")], T),
    ("_ == 'x'", &[("_", "x")], T),
    ("a-b in {'x'}", &[("a-b", "x")], T),
    ("starts == 'x'", &[("starts", "x")], T),
    ("with == 'x'", &[("with", "x")], T),
    ("ends with == 'x'", &[], E),
    ("not == 'x'", &[("not", "x")], T),
    ("notin notin {'x'}", &[("notin", "y")], T),
    ("startswith startswith 'x'", &[("startswith", "xy")], T),
    ("endswith endswith 'y'", &[("endswith", "xy")], T),
    ("a not in in", &[], E),
    ("not not in {'x'}", &[], T),
    ("a not inx {}", &[], E),
    ("a startswith\t'x'", &[("a", "x")], T),
    ("a starts\twith'x'", &[("a", "x")], T),
    ("a in{}", &[], F),
    ("a notin{'x',}", &[], T),
];

/// Rows too long to write out: nesting depth (§1.2 [DESIGN] 1000 levels), the 512-character
/// label limit (§1.1).
fn generated_selector_rows() -> Vec<OwnedSelectorRow> {
    let long = "a".repeat(512);
    vec![
        (
            format!("{}a == 'x'{}", "(".repeat(1000), ")".repeat(1000)),
            vec![("a".into(), "x".into())],
            T,
        ),
        (format!("{}all()", "!".repeat(1001)), vec![], F),
        (format!("{}all()", "!".repeat(1000)), vec![], T),
        (
            format!("{}has(a){}", "!(".repeat(500), ")".repeat(500)),
            vec![],
            F,
        ),
        (
            format!("{long} == 'x'"),
            vec![(long.clone(), "x".into())],
            T,
        ),
        (format!("{long}b == 'x'"), vec![], E),
        (
            format!("has({long})"),
            vec![(long.clone(), String::new())],
            T,
        ),
    ]
}

#[test]
fn selector_table() {
    let mut rows: Vec<OwnedSelectorRow> = SELECTOR_ROWS
        .iter()
        .map(|(s, labels, want)| {
            let labels = labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            ((*s).to_owned(), labels, *want)
        })
        .collect();
    rows.extend(generated_selector_rows());
    let input: String = rows
        .iter()
        .map(|(selector, labels, _)| {
            let labels: serde_json::Map<String, Value> = labels
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                .collect();
            format!("{}\n", json!({ "selector": selector, "labels": labels }))
        })
        .collect();
    let mut cmd = bin();
    cmd.args(["selector", "--batch"]);
    let out = run_with_stdin(cmd, &input);
    assert!(
        out.status.success(),
        "selector --batch exit {:?}",
        out.status
    );
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), rows.len(), "one answer per line");
    let mut failures = Vec::new();
    for ((selector, labels, want), line) in rows.iter().zip(&lines) {
        let reply: Value = serde_json::from_str(line).expect("JSON reply");
        let got = match (&reply["match"], &reply["error"]) {
            (Value::Bool(true), _) => T,
            (Value::Bool(false), _) => F,
            (_, Value::String(_)) => E,
            _ => panic!("unexpected reply {line}"),
        };
        if got != *want {
            let shown: String = selector.chars().take(80).collect();
            failures.push(format!("  {shown:?} {labels:?}: want {want:?}, got {line}"));
        }
    }
    report("selector", rows.len(), &failures);
}

// =============================================================================================
// §6 Validation, through `validate DIR`: exit 0 when valid; exit 1 and a problem line
// `FILE:LINE: KIND/NAME: FIELD: message` at the offending field otherwise.

#[derive(Debug, Clone)]
enum Want {
    Valid,
    /// Invalid, with a problem line at this field.
    Bad(&'static str),
    /// Invalid, with a problem line naming this `KIND/NAME` at this field.
    BadAt(String, &'static str),
    /// Invalid; where is not part of the contract.
    BadAny,
}
use Want::{Bad, BadAny, BadAt, Valid};

struct ValidateRow {
    name: String,
    files: Vec<(String, String)>,
    want: Want,
}

fn v(name: impl Into<String>, yaml: impl Into<String>, want: Want) -> ValidateRow {
    ValidateRow {
        name: name.into(),
        files: vec![("a.yaml".to_owned(), yaml.into())],
        want,
    }
}

fn vfiles(name: &str, files: &[(&str, String)], want: Want) -> ValidateRow {
    ValidateRow {
        name: name.to_owned(),
        files: files
            .iter()
            .map(|(f, text)| ((*f).to_owned(), text.clone()))
            .collect(),
        want,
    }
}

fn ok_or(ok: bool, field: &'static str) -> Want {
    if ok { Valid } else { Bad(field) }
}

/// A rule of `p` with `protocol` (if any) and a destination port list.
fn ports_rule(protocol: Option<&str>, key: &str, ports: &str) -> String {
    let protocol = protocol
        .map(|p| format!("protocol: {p}\n"))
        .unwrap_or_default();
    rule(&format!(
        "action: Allow\n{protocol}destination:\n  {key}: {ports}"
    ))
}

fn icmp_rule(protocol: Option<&str>, key: &str, icmp: &str) -> String {
    let protocol = protocol
        .map(|p| format!("protocol: {p}\n"))
        .unwrap_or_default();
    rule(&format!("action: Allow\n{protocol}{key}: {icmp}"))
}

fn label_gnp(key: &str, value: &str) -> String {
    gnp_meta(
        "p",
        &format!("labels:\n  '{key}': '{value}'"),
        "selector: all()",
    )
}

fn wep_spec(spec: &str) -> String {
    resource(
        V3,
        "WorkloadEndpoint",
        "w",
        "namespace: default",
        Some(spec),
    )
}

fn hep_spec(spec: &str) -> String {
    v3("HostEndpoint", "h", spec)
}

/// §6 Names.
fn name_rows(rows: &mut Vec<ValidateRow>) {
    let gnp_names: &[(&str, bool)] = &[
        ("a", true),
        ("a.b", true),
        ("a-b.c-d", true),
        ("1a", true),
        ("A", false),
        ("a.b.c", false),
        ("a_b", false),
        ("-a", false),
        ("a-", false),
        ("a..b", false),
        (".a", false),
        ("a.", false),
    ];
    for (name, ok) in gnp_names {
        rows.push(v(
            format!("gnp-name-{name}"),
            gnp(name, "selector: all()"),
            ok_or(*ok, "metadata.name"),
        ));
    }
    rows.push(v("gnp-name-253", gnp(&"a".repeat(253), "{}"), Valid));
    rows.push(v(
        "gnp-name-254",
        gnp(&"a".repeat(254), "{}"),
        Bad("metadata.name"),
    ));
    let np_names: &[(&str, bool)] = &[
        ("a", true),
        ("a.b", true),
        ("knp.default.foo", true),
        ("knp.default.foo.bar", true),
        ("A", false),
        ("a.b.c", false),
        ("a_b", false),
    ];
    for (name, ok) in np_names {
        rows.push(v(
            format!("np-name-{name}"),
            np("default", name, "selector: all()"),
            if *ok {
                Valid
            } else {
                BadAt(format!("NetworkPolicy/{name}"), "metadata.name")
            },
        ));
    }
    let tier_names: &[(&str, bool)] = &[
        ("t", true),
        ("t-1", true),
        ("t.x", false),
        ("T", false),
        ("t_1", false),
    ];
    for (name, ok) in tier_names {
        rows.push(v(
            format!("tier-name-{name}"),
            tier(name, "order: 1"),
            ok_or(*ok, "metadata.name"),
        ));
    }
    rows.push(v("tier-name-63", tier(&"a".repeat(63), ""), Valid));
    rows.push(v(
        "tier-name-64",
        tier(&"a".repeat(64), ""),
        Bad("metadata.name"),
    ));
    let v1_names: &[(&str, bool)] = &[
        ("Allow_X.v2", true),
        ("a/b", true),
        ("a b", false),
        ("a@b", false),
    ];
    for (name, ok) in v1_names {
        rows.push(v(
            format!("v1-name-{name}"),
            v1(&format!("'{name}'"), "selector: all()"),
            ok_or(*ok, "metadata.name"),
        ));
    }
    rows.push(v("v1-name-128", v1(&"a".repeat(128), "{}"), Valid));
    rows.push(v(
        "v1-name-129",
        v1(&"a".repeat(129), "{}"),
        Bad("metadata.name"),
    ));
    // Other v3 kinds: DNS subdomain.
    let others: &[(&str, &str)] = &[
        ("GlobalNetworkSet", "nets: [192.0.2.0/24]"),
        ("Profile", "ingress: []"),
        ("HostEndpoint", "node: n\ninterfaceName: eth0"),
    ];
    for (kind, spec) in others {
        rows.push(v(
            format!("{kind}-name-dots"),
            v3(kind, "a.b.c", spec),
            Valid,
        ));
        rows.push(v(
            format!("{kind}-name-upper"),
            v3(kind, "Abc", spec),
            Bad("metadata.name"),
        ));
        rows.push(v(
            format!("{kind}-name-underscore"),
            v3(kind, "a_b", spec),
            Bad("metadata.name"),
        ));
    }
    // Tier-prefixed policy names: both forms accepted ([DESIGN], v3.32).
    rows.push(vfiles(
        "tier-prefixed-name",
        &[
            ("t.yaml", tier("sec", "order: 10")),
            ("p.yaml", gnp("sec.allow", "tier: sec\nselector: all()")),
        ],
        Valid,
    ));
    rows.push(vfiles(
        "tier-unprefixed-name",
        &[
            ("t.yaml", tier("sec", "order: 10")),
            ("p.yaml", gnp("allow", "tier: sec\nselector: all()")),
        ],
        Valid,
    ));
}

/// §6 Labels.
fn label_rows(rows: &mut Vec<ValidateRow>) {
    let keys: &[(&str, bool)] = &[
        ("app", true),
        ("example.com/app", true),
        ("a.com/X", true),
        ("a_b", true),
        ("1", true),
        ("a b", false),
        ("-a", false),
        ("_a", false),
        ("a/b/c", false),
        ("example.com/", false),
        ("/a", false),
        ("A.com/x", false),
    ];
    for (key, ok) in keys {
        rows.push(v(
            format!("label-key-{key}"),
            label_gnp(key, "v"),
            if *ok { Valid } else { BadAny },
        ));
    }
    rows.push(v("label-key-63", label_gnp(&"k".repeat(63), "v"), Valid));
    rows.push(v("label-key-64", label_gnp(&"k".repeat(64), "v"), BadAny));
    let values: &[(&str, bool)] = &[
        ("", true),
        ("A", true),
        ("a-_.b", true),
        ("a b", false),
        ("a-", false),
        ("_a", false),
        ("é", false),
    ];
    for (value, ok) in values {
        rows.push(v(
            format!("label-value-{value}"),
            label_gnp("app", value),
            ok_or(*ok, "metadata.labels.app"),
        ));
    }
    rows.push(v(
        "label-value-63",
        label_gnp("app", &"a".repeat(63)),
        Valid,
    ));
    rows.push(v(
        "label-value-64",
        label_gnp("app", &"a".repeat(64)),
        Bad("metadata.labels.app"),
    ));
    rows.push(v(
        "network-set-namespace-label",
        network_set(
            "default",
            "s",
            "[192.0.2.0/24]",
            &[("projectcalico.org/namespace", "x")],
        ),
        BadAt(
            "NetworkSet/s".into(),
            "metadata.labels.projectcalico.org/namespace",
        ),
    ));
    rows.push(v(
        "global-set-namespace-label",
        global_set(
            "s",
            "[192.0.2.0/24]",
            &[("projectcalico.org/namespace", "x")],
        ),
        BadAt(
            "GlobalNetworkSet/s".into(),
            "metadata.labels.projectcalico.org/namespace",
        ),
    ));
    rows.push(v(
        "wep-label-value",
        wep("default", "w", "192.0.2.1", &[("k", "a b")], ""),
        BadAt("WorkloadEndpoint/w".into(), "metadata.labels.k"),
    ));
}

/// §6 Selectors and §1.4 context restrictions.
fn selector_field_rows(rows: &mut Vec<ValidateRow>) {
    let src =
        |field: &str, sel: &str| rule(&format!("action: Allow\nsource:\n  {field}: \"{sel}\""));
    rows.push(v(
        "sel-single-equals",
        gnp("p", "selector: role = 'db'"),
        Bad("spec.selector"),
    ));
    rows.push(v(
        "sel-unbalanced",
        gnp("p", "selector: (role == 'db'"),
        Bad("spec.selector"),
    ));
    rows.push(v(
        "sel-block-literal-trailing-newline",
        gnp("p", "selector: |\n  role == 'db'"),
        Bad("spec.selector"),
    ));
    rows.push(v(
        "sel-folded-keep-newline",
        gnp("p", "selector: >\n  role == 'db'"),
        Bad("spec.selector"),
    ));
    rows.push(v(
        "sel-folded-strip",
        gnp("p", "selector: >-\n  role == 'db'"),
        Valid,
    ));
    rows.push(v("sel-empty", gnp("p", "selector: ''"), Valid));
    rows.push(v(
        "sel-trailing-comma-set",
        gnp("p", "selector: a in {'x',}"),
        Valid,
    ));
    rows.push(v(
        "sel-global-policy-selector",
        gnp("p", "selector: global()"),
        Bad("spec.selector"),
    ));
    rows.push(v(
        "sel-global-gnp-namespace-selector",
        gnp("p", "namespaceSelector: global()"),
        Bad("spec.namespaceSelector"),
    ));
    rows.push(v(
        "sel-global-gnp-sa-selector",
        gnp("p", "serviceAccountSelector: global()"),
        Bad("spec.serviceAccountSelector"),
    ));
    rows.push(v(
        "sel-global-np-sa-selector",
        np("default", "p", "serviceAccountSelector: global()"),
        Bad("spec.serviceAccountSelector"),
    ));
    rows.push(v(
        "sel-global-np-selector",
        np("default", "p", "selector: global()"),
        Bad("spec.selector"),
    ));
    rows.push(v(
        "sel-global-rule-selector",
        src("selector", "global()"),
        Bad("spec.ingress[0].source.selector"),
    ));
    rows.push(v(
        "sel-global-rule-not-selector",
        src("notSelector", "global()"),
        Bad("spec.ingress[0].source.notSelector"),
    ));
    rows.push(v(
        "sel-global-rule-sa-selector",
        rule("action: Allow\nsource:\n  serviceAccounts:\n    selector: global()"),
        Bad("spec.ingress[0].source.serviceAccounts.selector"),
    ));
    rows.push(v(
        "sel-global-rule-ns",
        src("namespaceSelector", "global()"),
        Valid,
    ));
    rows.push(v(
        "sel-global-rule-ns-space",
        src("namespaceSelector", "global( )"),
        Valid,
    ));
    rows.push(v(
        "sel-global-rule-ns-tab",
        src("namespaceSelector", "global(\\t)"),
        Valid,
    ));
    rows.push(v(
        "sel-global-rule-ns-around",
        src("namespaceSelector", " global() "),
        Valid,
    ));
    rows.push(v(
        "sel-global-dest-ns",
        rule("action: Allow\ndestination:\n  namespaceSelector: global()"),
        Valid,
    ));
    for (name, sel) in [
        ("and", "global() && a == 'x'"),
        ("or", "global() || global()"),
        ("not", "!global()"),
        ("double-not", "!!global()"),
        ("paren", "(global())"),
    ] {
        rows.push(v(
            format!("sel-global-rule-ns-{name}"),
            src("namespaceSelector", sel),
            Bad("spec.ingress[0].source.namespaceSelector"),
        ));
    }
    rows.push(v(
        "sel-global-as-label",
        src("selector", "global == 'x'"),
        Valid,
    ));
    rows.push(v(
        "sel-global-in-literal",
        gnp("p", "selector: \"a == 'global('\""),
        Bad("spec.selector"),
    ));
    rows.push(v(
        "sel-np-rule-global-ns",
        np(
            "default",
            "p",
            "ingress:\n  - action: Allow\n    source:\n      namespaceSelector: global()",
        ),
        Valid,
    ));
    rows.push(v(
        "sel-profile-rule-global-ns",
        profile(
            "pr",
            "ingress:\n  - action: Allow\n    source:\n      namespaceSelector: global()",
        ),
        Valid,
    ));
    rows.push(v(
        "sel-profile-rule-bad",
        profile(
            "pr",
            "ingress:\n  - action: Allow\n    source:\n      selector: 'a ='",
        ),
        Bad("spec.ingress[0].source.selector"),
    ));
    rows.push(v(
        "sel-rule-not-selector-bad",
        rule("action: Allow\ndestination:\n  notSelector: a =="),
        Bad("spec.ingress[0].destination.notSelector"),
    ));
    rows.push(v(
        "sel-v1-global",
        v1("p", "selector: global()"),
        Bad("spec.selector"),
    ));
    // §1.4 [DESIGN]: 1024 characters, counted as characters.
    let long = |n: usize, ch: &str| format!("selector: \"a == '{}'\"", ch.repeat(n - 7));
    rows.push(v("sel-length-1024", gnp("p", &long(1024, "x")), Valid));
    rows.push(v(
        "sel-length-1025",
        gnp("p", &long(1025, "x")),
        Bad("spec.selector"),
    ));
    rows.push(v("sel-length-1024-utf8", gnp("p", &long(1024, "é")), Valid));
    rows.push(v(
        "sel-length-1025-utf8",
        gnp("p", &long(1025, "é")),
        Bad("spec.selector"),
    ));
    rows.push(v(
        "sel-length-1025-rule",
        rule(&format!("action: Allow\nsource:\n  {}", long(1025, "x"))),
        Bad("spec.ingress[0].source.selector"),
    ));
}

/// §6 Actions, types, ipVersion.
fn action_type_rows(rows: &mut Vec<ValidateRow>) {
    for (action, ok) in [
        ("Allow", true),
        ("Deny", true),
        ("Log", true),
        ("Pass", true),
        ("allow", false),
        ("Reject", false),
        ("DENY", false),
        ("", false),
    ] {
        rows.push(v(
            format!("v3-action-{action}"),
            rule(&format!("action: '{action}'")),
            ok_or(ok, "spec.ingress[0].action"),
        ));
    }
    for (action, ok) in [
        ("allow", true),
        ("deny", true),
        ("log", true),
        ("pass", true),
        ("Allow", false),
        ("next-tier", false),
    ] {
        rows.push(v(
            format!("v1-action-{action}"),
            v1("p", &format!("ingress:\n  - action: {action}")),
            ok_or(ok, "spec.ingress[0].action"),
        ));
    }
    rows.push(v(
        "profile-action-lower",
        profile("pr", "ingress:\n  - action: allow"),
        Bad("spec.ingress[0].action"),
    ));
    for (name, types, want) in [
        ("ingress", "[Ingress]", Valid),
        ("egress", "[Egress]", Valid),
        ("both", "[Ingress, Egress]", Valid),
        ("empty", "[]", Valid),
        ("lower", "[ingress]", Bad("spec.types[0]")),
        ("repeat", "[Ingress, Ingress]", Bad("spec.types[1]")),
        ("unknown", "[Foo]", Bad("spec.types[0]")),
        ("scalar", "Ingress", BadAny),
    ] {
        rows.push(v(
            format!("types-{name}"),
            gnp("p", &format!("types: {types}")),
            want,
        ));
    }
    rows.push(v(
        "types-np-lower",
        np("default", "p", "types: [egress]"),
        Bad("spec.types[0]"),
    ));
    rows.push(v(
        "types-v1-lower",
        v1("p", "types: [ingress, egress]"),
        Valid,
    ));
    rows.push(v(
        "types-v1-repeat",
        v1("p", "types: [ingress, ingress]"),
        BadAny,
    ));
    for (version, ok) in [
        ("4", true),
        ("6", true),
        ("5", false),
        ("0", false),
        ("'4'", false),
    ] {
        rows.push(v(
            format!("ip-version-{version}"),
            rule(&format!("action: Allow\nipVersion: {version}")),
            ok_or(ok, "spec.ingress[0].ipVersion"),
        ));
    }
}

/// §6 Protocol.
fn protocol_rows(rows: &mut Vec<ValidateRow>) {
    for (protocol, ok) in [
        ("TCP", true),
        ("UDP", true),
        ("ICMP", true),
        ("ICMPv6", true),
        ("SCTP", true),
        ("UDPLite", true),
        ("tcp", false),
        ("Tcp", false),
        ("icmpv6", false),
        ("ICMPV6", false),
        ("GRE", false),
        ("0", false),
        ("1", true),
        ("255", true),
        ("256", false),
        ("-1", false),
        ("'6'", true),
        ("'0'", false),
        ("'256'", false),
        ("6.0", false),
    ] {
        rows.push(v(
            format!("protocol-{protocol}"),
            rule(&format!("action: Allow\nprotocol: {protocol}")),
            ok_or(ok, "spec.ingress[0].protocol"),
        ));
        rows.push(v(
            format!("not-protocol-{protocol}"),
            rule(&format!("action: Allow\nnotProtocol: {protocol}")),
            ok_or(ok, "spec.ingress[0].notProtocol"),
        ));
    }
    for (protocol, ok) in [
        ("tcp", true),
        ("udplite", true),
        ("icmpv6", true),
        ("6", true),
        ("TCP", false),
        ("ICMP", false),
        ("0", false),
    ] {
        rows.push(v(
            format!("v1-protocol-{protocol}"),
            v1(
                "p",
                &format!("ingress:\n  - action: allow\n    protocol: {protocol}"),
            ),
            ok_or(ok, "spec.ingress[0].protocol"),
        ));
    }
}

/// §6 Ports.
fn port_rows(rows: &mut Vec<ValidateRow>) {
    const FIRST: &str = "spec.ingress[0].destination.ports[0]";
    for (ports, ok) in [
        ("[1]", true),
        ("[65535]", true),
        ("[0]", false),
        ("[65536]", false),
        ("[-1]", false),
        ("['80']", true),
        ("['8000:9000']", true),
        ("[8000:9000]", true),
        ("['80:80']", true),
        ("['1:65535']", true),
        ("['9000:8000']", false),
        ("['0:10']", false),
        ("['1:65536']", false),
        ("['1:2:3']", false),
        ("[':80']", false),
        ("['80:']", false),
        ("[' 80']", false),
        ("[80.5]", false),
        ("[http]", true),
        ("[http-alt]", true),
        ("[a1]", true),
        ("[abcdefghijklmno]", true),
        ("[abcdefghijklmnop]", false),
        ("[HTTP]", false),
        ("['8000-9000']", false),
        ("[a--b]", false),
        ("[-ab]", false),
        ("[ab-]", false),
    ] {
        rows.push(v(
            format!("port-{ports}"),
            ports_rule(Some("TCP"), "ports", ports),
            ok_or(ok, FIRST),
        ));
    }
    for (protocol, ok) in [
        ("TCP", true),
        ("UDP", true),
        ("SCTP", true),
        ("6", true),
        ("17", true),
        ("132", true),
        ("'6'", true),
        ("ICMP", false),
        ("ICMPv6", false),
        ("UDPLite", false),
        ("136", false),
        ("1", false),
    ] {
        rows.push(v(
            format!("ports-protocol-{protocol}"),
            ports_rule(Some(protocol), "ports", "[80]"),
            if ok { Valid } else { BadAny },
        ));
        rows.push(v(
            format!("named-ports-protocol-{protocol}"),
            ports_rule(Some(protocol), "ports", "[http]"),
            if ok { Valid } else { BadAny },
        ));
    }
    rows.push(v(
        "ports-no-protocol",
        ports_rule(None, "ports", "[80]"),
        BadAny,
    ));
    rows.push(v(
        "not-ports-no-protocol",
        ports_rule(None, "notPorts", "[80]"),
        BadAny,
    ));
    rows.push(v(
        "source-ports-no-protocol",
        rule("action: Allow\nsource:\n  ports: ['1:2']"),
        BadAny,
    ));
    rows.push(v(
        "named-ports-no-protocol",
        ports_rule(None, "ports", "[http, https]"),
        Valid,
    ));
    rows.push(v(
        "named-not-ports-no-protocol",
        ports_rule(None, "notPorts", "[http]"),
        Valid,
    ));
    rows.push(v(
        "named-and-number-no-protocol",
        ports_rule(None, "ports", "[http, 80]"),
        BadAny,
    ));
    rows.push(v(
        "ports-not-protocol-only",
        rule("action: Allow\nnotProtocol: TCP\ndestination:\n  ports: [80]"),
        BadAny,
    ));
    rows.push(v(
        "empty-ports-icmp",
        ports_rule(Some("ICMP"), "ports", "[]"),
        Valid,
    ));
    rows.push(v(
        "empty-ports-no-protocol",
        ports_rule(None, "ports", "[]"),
        Valid,
    ));
    rows.push(v(
        "v1-ports",
        v1("p", "ingress:\n  - action: allow\n    protocol: tcp\n    destination:\n      ports: [80, '1:2', http]"),
        Valid,
    ));
    rows.push(v(
        "v1-ports-no-protocol",
        v1(
            "p",
            "ingress:\n  - action: allow\n    destination:\n      ports: [80]",
        ),
        BadAny,
    ));
    rows.push(v(
        "v1-ports-udplite",
        v1("p", "ingress:\n  - action: allow\n    protocol: udplite\n    destination:\n      ports: [80]"),
        BadAny,
    ));
    rows.push(v(
        "v1-port-0",
        v1(
            "p",
            "ingress:\n  - action: allow\n    protocol: tcp\n    destination:\n      ports: [0]",
        ),
        BadAny,
    ));
    rows.push(v(
        "v1-port-dash-name",
        v1("p", "ingress:\n  - action: allow\n    protocol: tcp\n    destination:\n      ports: ['8000-9000']"),
        BadAny,
    ));
}

/// §6 ICMP.
fn icmp_rows(rows: &mut Vec<ValidateRow>) {
    for (name, protocol, icmp, want) in [
        ("type-0", Some("ICMP"), "{type: 0}", Valid),
        ("type-254", Some("ICMP"), "{type: 254}", Valid),
        (
            "type-255",
            Some("ICMP"),
            "{type: 255}",
            Bad("spec.ingress[0].icmp.type"),
        ),
        (
            "type-negative",
            Some("ICMP"),
            "{type: -1}",
            Bad("spec.ingress[0].icmp.type"),
        ),
        ("code-255", Some("ICMP"), "{type: 8, code: 255}", Valid),
        (
            "code-256",
            Some("ICMP"),
            "{type: 8, code: 256}",
            Bad("spec.ingress[0].icmp.code"),
        ),
        (
            "code-without-type",
            Some("ICMP"),
            "{code: 0}",
            Bad("spec.ingress[0].icmp.code"),
        ),
        ("icmpv6", Some("ICMPv6"), "{type: 128}", Valid),
        ("number-1", Some("'1'"), "{type: 8}", Valid),
        ("number-58", Some("58"), "{type: 128}", Valid),
        ("empty", Some("ICMP"), "{}", Valid),
        ("no-protocol", None, "{type: 8}", BadAny),
        ("tcp", Some("TCP"), "{type: 8}", BadAny),
        ("type-string", Some("ICMP"), "{type: '8'}", BadAny),
    ] {
        rows.push(v(
            format!("icmp-{name}"),
            icmp_rule(protocol, "icmp", icmp),
            want,
        ));
    }
    for (name, icmp, want) in [
        ("pair", "{type: 8, code: 1}", Valid),
        (
            "type-255",
            "{type: 255}",
            Bad("spec.ingress[0].notICMP.type"),
        ),
        (
            "code-256",
            "{type: 8, code: 256}",
            Bad("spec.ingress[0].notICMP.code"),
        ),
        (
            "code-without-type",
            "{code: 1}",
            Bad("spec.ingress[0].notICMP.code"),
        ),
    ] {
        rows.push(v(
            format!("not-icmp-{name}"),
            icmp_rule(Some("ICMP"), "notICMP", icmp),
            want,
        ));
    }
    for (name, body, ok) in [
        ("icmp-v4", "protocol: ICMP\nipVersion: 4", true),
        ("icmp-v6", "protocol: ICMP\nipVersion: 6", false),
        ("icmpv6-v4", "protocol: ICMPv6\nipVersion: 4", false),
        ("icmpv6-v6", "protocol: ICMPv6\nipVersion: 6", true),
        ("not-icmp-v6", "notProtocol: ICMP\nipVersion: 6", false),
        ("not-icmpv6-v4", "notProtocol: ICMPv6\nipVersion: 4", false),
        ("number-1-v6", "protocol: 1\nipVersion: 6", false),
        ("number-58-v4", "protocol: 58\nipVersion: 4", false),
    ] {
        rows.push(v(
            format!("icmp-family-{name}"),
            rule(&format!("action: Allow\n{body}")),
            if ok { Valid } else { BadAny },
        ));
    }
    rows.push(v(
        "v1-icmp-type-255",
        v1(
            "p",
            "ingress:\n  - action: allow\n    protocol: icmp\n    icmp: {type: 255}",
        ),
        BadAny,
    ));
    rows.push(v(
        "v1-icmp-pair",
        v1(
            "p",
            "ingress:\n  - action: allow\n    protocol: icmp\n    icmp: {type: 8, code: 0}",
        ),
        Valid,
    ));
    rows.push(v(
        "v1-icmp-no-protocol",
        v1("p", "ingress:\n  - action: allow\n    icmp: {type: 8}"),
        BadAny,
    ));
}

/// §6 CIDRs in rules.
fn cidr_rows(rows: &mut Vec<ValidateRow>) {
    for (nets, ok) in [
        ("[192.0.2.0/24]", true),
        ("[192.0.2.5]", true),
        ("[192.0.2.5/32]", true),
        ("['2001:db8::/32']", true),
        ("['2001:DB8::/32']", true),
        ("['2001:db8::1']", true),
        ("[0.0.0.0/0]", true),
        ("['::/0']", true),
        ("[192.0.2.5/24]", false),
        ("['2001:db8::1/32']", false),
        ("[192.0.2.0/33]", false),
        ("[not-a-cidr]", false),
        ("['']", false),
    ] {
        rows.push(v(
            format!("nets-{nets}"),
            rule(&format!("action: Allow\nsource:\n  nets: {nets}")),
            ok_or(ok, "spec.ingress[0].source.nets[0]"),
        ));
    }
    for (nets, want) in [
        ("[10.0.0.0/8]", Valid),
        ("[0.0.0.0/1]", Valid),
        ("[0.0.0.0/0]", Bad("spec.ingress[0].destination.notNets[0]")),
        ("['::/0']", Bad("spec.ingress[0].destination.notNets[0]")),
        ("['0::/0']", Bad("spec.ingress[0].destination.notNets[0]")),
        (
            "[10.0.0.0/8, 0.0.0.0/0]",
            Bad("spec.ingress[0].destination.notNets[1]"),
        ),
        (
            "[192.0.2.5/24]",
            Bad("spec.ingress[0].destination.notNets[0]"),
        ),
    ] {
        rows.push(v(
            format!("not-nets-{nets}"),
            rule(&format!("action: Allow\ndestination:\n  notNets: {nets}")),
            want,
        ));
    }
    for (name, body, ok) in [
        (
            "mixed-in-list",
            "source:\n  nets: [192.0.2.0/24, '2001:db8::/32']",
            false,
        ),
        (
            "mixed-across-sides",
            "source:\n  nets: [192.0.2.0/24]\ndestination:\n  nets: ['2001:db8::/32']",
            false,
        ),
        (
            "mixed-nets-not-nets",
            "source:\n  nets: [192.0.2.0/24]\n  notNets: ['2001:db8::/32']",
            false,
        ),
        (
            "ip-version-disagrees",
            "ipVersion: 6\nsource:\n  nets: [192.0.2.0/24]",
            false,
        ),
        (
            "ip-version-agrees",
            "ipVersion: 6\nsource:\n  nets: ['2001:db8::/32']",
            true,
        ),
        (
            "icmp-v6-cidr",
            "protocol: ICMP\nsource:\n  nets: ['2001:db8::/32']",
            false,
        ),
        (
            "icmpv6-v4-cidr",
            "protocol: ICMPv6\nsource:\n  nets: [192.0.2.0/24]",
            false,
        ),
    ] {
        rows.push(v(
            format!("cidr-{name}"),
            rule(&format!("action: Allow\n{body}")),
            if ok { Valid } else { BadAny },
        ));
    }
    let v1_rule = |body: &str| {
        v1(
            "p",
            &format!(
                "ingress:\n  - action: allow\n    source:\n{}",
                indent(body, 6)
            ),
        )
    };
    rows.push(v(
        "v1-nets-host-bits",
        v1_rule("nets: [192.0.2.5/24]"),
        Valid,
    ));
    rows.push(v("v1-net-host-bits", v1_rule("net: 192.0.2.5/24"), Valid));
    rows.push(v(
        "v1-net-and-nets",
        v1_rule("net: 192.0.2.0/24\nnets: [198.51.100.0/24]"),
        BadAny,
    ));
    rows.push(v(
        "v1-not-net-and-not-nets",
        v1_rule("notNet: 192.0.2.0/24\nnotNets: [198.51.100.0/24]"),
        BadAny,
    ));
    rows.push(v(
        "v1-net-and-not-nets",
        v1_rule("net: 192.0.2.0/24\nnotNets: [198.51.100.0/24]"),
        BadAny,
    ));
    rows.push(v(
        "v1-not-nets-catch-all",
        v1_rule("notNets: [0.0.0.0/0]"),
        BadAny,
    ));
    rows.push(v(
        "v1-not-net-catch-all",
        v1_rule("notNet: 0.0.0.0/0"),
        BadAny,
    ));
    rows.push(v(
        "v1-mixed-family",
        v1_rule("nets: [10.0.0.0/8, '2001:db8::/32']"),
        BadAny,
    ));
    rows.push(v(
        "v1-ip-version-disagrees",
        v1(
            "p",
            "ingress:\n  - action: allow\n    ipVersion: 6\n    source:\n      nets: [10.0.0.0/8]",
        ),
        BadAny,
    ));
}

/// §6 doNotTrack, preDNAT, applyOnForward; Tiers.
fn stage_and_tier_rows(rows: &mut Vec<ValidateRow>) {
    for (name, spec, want) in [
        ("dnt-aof", "doNotTrack: true\napplyOnForward: true", Valid),
        ("dnt-no-aof", "doNotTrack: true", Bad("spec.applyOnForward")),
        ("pre-dnat-aof", "preDNAT: true\napplyOnForward: true", Valid),
        (
            "pre-dnat-no-aof",
            "preDNAT: true",
            Bad("spec.applyOnForward"),
        ),
        (
            "dnt-and-pre-dnat",
            "doNotTrack: true\npreDNAT: true\napplyOnForward: true",
            BadAny,
        ),
        (
            "pre-dnat-egress-rules",
            "preDNAT: true\napplyOnForward: true\negress:\n  - action: Allow",
            Bad("spec.egress"),
        ),
        (
            "pre-dnat-types-egress",
            "preDNAT: true\napplyOnForward: true\ntypes: [Egress]",
            BadAny,
        ),
        (
            "pre-dnat-types-ingress",
            "preDNAT: true\napplyOnForward: true\ntypes: [Ingress]\ningress:\n  - action: Deny",
            Valid,
        ),
        ("aof-alone", "applyOnForward: true", Valid),
    ] {
        rows.push(v(format!("gnp-{name}"), gnp("p", spec), want));
    }
    rows.push(v(
        "np-do-not-track",
        np("default", "p", "doNotTrack: true"),
        BadAny,
    ));
    rows.push(v(
        "np-pre-dnat",
        np("default", "p", "preDNAT: true"),
        BadAny,
    ));
    rows.push(v(
        "np-apply-on-forward",
        np("default", "p", "applyOnForward: true"),
        BadAny,
    ));
    rows.push(v("v1-do-not-track", v1("p", "doNotTrack: true"), Valid));
    rows.push(v(
        "v1-do-not-track-and-pre-dnat",
        v1("p", "doNotTrack: true\npreDNAT: true"),
        BadAny,
    ));
    rows.push(v(
        "v1-pre-dnat-egress",
        v1("p", "preDNAT: true\negress:\n  - action: allow"),
        BadAny,
    ));
    rows.push(v(
        "v1-apply-on-forward",
        v1("p", "applyOnForward: true"),
        BadAny,
    ));
    for (name, tier_spec, want) in [
        ("default-action-deny", "defaultAction: Deny", Valid),
        ("default-action-pass", "defaultAction: Pass", Valid),
        (
            "default-action-allow",
            "defaultAction: Allow",
            Bad("spec.defaultAction"),
        ),
        (
            "default-action-lower",
            "defaultAction: pass",
            Bad("spec.defaultAction"),
        ),
        ("no-order", "", Valid),
        ("float-order", "order: 10.5", Valid),
        ("negative-order", "order: -1.5", Valid),
    ] {
        rows.push(v(format!("tier-{name}"), tier("t", tier_spec), want));
    }
    rows.push(v(
        "default-tier-declared",
        tier("default", "order: 1000000\ndefaultAction: Deny"),
        Valid,
    ));
    rows.push(v(
        "default-tier-without-order",
        tier("default", "defaultAction: Deny"),
        Bad("spec.order"),
    ));
    rows.push(v(
        "default-tier-without-default-action",
        tier("default", "order: 1000000"),
        Valid,
    ));
    rows.push(v(
        "default-tier-other-order",
        tier("default", "order: 100\ndefaultAction: Deny"),
        Bad("spec.order"),
    ));
    rows.push(v(
        "default-tier-pass",
        tier("default", "order: 1000000\ndefaultAction: Pass"),
        Bad("spec.defaultAction"),
    ));
    rows.push(v("policy-order-float", gnp("p", "order: 10.5"), Valid));
    rows.push(v("policy-order-exponent", gnp("p", "order: 1e3"), Valid));
    rows.push(v("policy-order-string", gnp("p", "order: '10'"), BadAny));
}

/// §6 Endpoints and sets.
fn endpoint_rows(rows: &mut Vec<ValidateRow>) {
    for (name, spec, want) in [
        ("ok", "node: n\ninterfaceName: eth0", Valid),
        ("ips-only", "node: n\nexpectedIPs: [192.0.2.1]", Valid),
        ("ipv6", "node: n\nexpectedIPs: ['2001:db8::1']", Valid),
        ("no-node", "interfaceName: eth0", Bad("spec.node")),
        ("empty-node", "node: ''\ninterfaceName: eth0", BadAny),
        ("no-interface-no-ips", "node: n", BadAny),
        (
            "ip-slash-32",
            "node: n\nexpectedIPs: [192.0.2.1/32]",
            Bad("spec.expectedIPs[0]"),
        ),
        (
            "ip-slash-128",
            "node: n\nexpectedIPs: ['2001:db8::1/128']",
            Bad("spec.expectedIPs[0]"),
        ),
        (
            "ip-bad",
            "node: n\nexpectedIPs: [nope]",
            Bad("spec.expectedIPs[0]"),
        ),
        (
            "named-port",
            "node: n\ninterfaceName: eth0\nports:\n  - {name: ssh, port: 22, protocol: TCP}",
            Valid,
        ),
        (
            "named-port-bad-name",
            "node: n\ninterfaceName: eth0\nports:\n  - {name: 'a--b', port: 22, protocol: TCP}",
            Bad("spec.ports[0].name"),
        ),
    ] {
        rows.push(v(format!("hep-{name}"), hep_spec(spec), want));
    }
    let port = |p: &str| format!("interfaceName: c0\nipNetworks: [192.0.2.1]\nports:\n  - {p}");
    for (name, spec, want) in [
        (
            "slash-32",
            "interfaceName: c0\nipNetworks: [192.0.2.1/32]".to_owned(),
            Valid,
        ),
        (
            "bare",
            "interfaceName: c0\nipNetworks: [192.0.2.1]".to_owned(),
            Valid,
        ),
        (
            "slash-128",
            "interfaceName: c0\nipNetworks: ['2001:db8::1/128']".to_owned(),
            Valid,
        ),
        (
            "both-families",
            "interfaceName: c0\nipNetworks: [192.0.2.7/32, '2001:db8::7']".to_owned(),
            Valid,
        ),
        ("no-addresses", "interfaceName: c0".to_owned(), Valid),
        (
            "slash-24",
            "interfaceName: c0\nipNetworks: [192.0.2.0/24]".to_owned(),
            Bad("spec.ipNetworks[0]"),
        ),
        (
            "slash-31",
            "interfaceName: c0\nipNetworks: [192.0.2.0/31]".to_owned(),
            Bad("spec.ipNetworks[0]"),
        ),
        (
            "slash-127",
            "interfaceName: c0\nipNetworks: ['2001:db8::/127']".to_owned(),
            Bad("spec.ipNetworks[0]"),
        ),
        (
            "no-interface",
            "ipNetworks: [192.0.2.1/32]".to_owned(),
            Bad("spec.interfaceName"),
        ),
        (
            "interface-15",
            "interfaceName: abcdefghijklmno".to_owned(),
            Valid,
        ),
        (
            "interface-16",
            "interfaceName: abcdefghijklmnop".to_owned(),
            Bad("spec.interfaceName"),
        ),
        (
            "interface-chars",
            "interfaceName: A_b.c-1".to_owned(),
            Valid,
        ),
        (
            "interface-colon",
            "interfaceName: 'a:b'".to_owned(),
            Bad("spec.interfaceName"),
        ),
        (
            "port-tcp",
            port("{name: http, port: 80, protocol: TCP}"),
            Valid,
        ),
        (
            "port-udp",
            port("{name: dns, port: 53, protocol: UDP}"),
            Valid,
        ),
        (
            "port-sctp",
            port("{name: s, port: 9, protocol: SCTP}"),
            Valid,
        ),
        (
            "port-number-6",
            port("{name: http, port: 80, protocol: 6}"),
            Valid,
        ),
        (
            "port-icmp",
            port("{name: p, port: 9, protocol: ICMP}"),
            Bad("spec.ports[0].protocol"),
        ),
        (
            "port-udplite",
            port("{name: p, port: 9, protocol: UDPLite}"),
            Bad("spec.ports[0].protocol"),
        ),
        (
            "port-lower-tcp",
            port("{name: http, port: 80, protocol: tcp}"),
            Bad("spec.ports[0].protocol"),
        ),
        (
            "port-upper-name",
            port("{name: HTTP, port: 80, protocol: TCP}"),
            Bad("spec.ports[0].name"),
        ),
        (
            "port-0",
            port("{name: http, port: 0, protocol: TCP}"),
            Bad("spec.ports[0].port"),
        ),
    ] {
        rows.push(v(format!("wep-{name}"), wep_spec(&spec), want));
    }
    for (name, doc, want) in [
        (
            "ns-set-non-canonical",
            network_set("default", "s", "[192.0.2.5/24]", &[]),
            Valid,
        ),
        (
            "global-set-non-canonical",
            global_set("s", "[192.0.2.5/24, '2001:db8::1/32', 192.0.2.9]", &[]),
            Valid,
        ),
        (
            "global-set-bad-prefix",
            global_set("s", "[192.0.2.0/33]", &[]),
            Bad("spec.nets[0]"),
        ),
        (
            "global-set-bad",
            global_set("s", "[192.0.2.1, foo]", &[]),
            Bad("spec.nets[1]"),
        ),
    ] {
        rows.push(v(name, doc, want));
    }
}

/// §6 v1 policy odds and ends, §6 KNP, §7.
fn v1_and_knp_rows(rows: &mut Vec<ValidateRow>) {
    for (name, spec, want) in [
        (
            "tag",
            "ingress:\n  - action: allow\n    source:\n      tag: x",
            Bad("spec.ingress[0].source.tag"),
        ),
        (
            "not-tag",
            "ingress:\n  - action: allow\n    source:\n      notTag: x",
            Bad("spec.ingress[0].source.notTag"),
        ),
        ("types-capitalised", "types: [Ingress]", BadAny),
        ("order", "order: 10.5", Valid),
        ("tier", "tier: x", BadAny),
        ("namespace-selector", "namespaceSelector: all()", BadAny),
    ] {
        rows.push(v(format!("v1-{name}"), v1("p", spec), want));
    }
    let k = |spec: &str| knp("default", "k", spec);
    for (name, spec, want) in [
        ("types", "podSelector: {}\npolicyTypes: [Ingress]", Valid),
        ("no-types", "podSelector: {}\ningress:\n  - {}", Valid),
        (
            "types-lower",
            "podSelector: {}\npolicyTypes: [ingress]",
            Bad("spec.policyTypes[0]"),
        ),
        (
            "end-port-below",
            "podSelector: {}\ningress:\n  - ports:\n    - {port: 9000, endPort: 8000}",
            Bad("spec.ingress[0].ports[0].endPort"),
        ),
        (
            "end-port-equal",
            "podSelector: {}\ningress:\n  - ports:\n    - {port: 9000, endPort: 9000}",
            Valid,
        ),
        (
            "end-port-range",
            "podSelector: {}\ningress:\n  - ports:\n    - {port: 8000, endPort: 9000, protocol: UDP}",
            Valid,
        ),
        (
            "named-port",
            "podSelector: {}\ningress:\n  - ports:\n    - {port: http}",
            Valid,
        ),
        (
            "sctp",
            "podSelector: {}\negress:\n  - ports:\n    - {port: 80, protocol: SCTP}",
            Valid,
        ),
        (
            "protocol-lower",
            "podSelector: {}\negress:\n  - ports:\n    - {port: 80, protocol: tcp}",
            BadAny,
        ),
        (
            "port-65536",
            "podSelector: {}\ningress:\n  - ports:\n    - port: 65536",
            BadAny,
        ),
        (
            "ip-block",
            "podSelector: {}\ningress:\n  - from:\n    - ipBlock: {cidr: 192.0.2.0/24, except: [192.0.2.8/29]}",
            Valid,
        ),
        (
            "ip-block-host-bits",
            "podSelector: {}\ningress:\n  - from:\n    - ipBlock: {cidr: 192.0.2.5/24}",
            Valid,
        ),
        (
            "ip-block-bad",
            "podSelector: {}\ningress:\n  - from:\n    - ipBlock: {cidr: nope}",
            BadAny,
        ),
        (
            "match-expressions",
            "podSelector:\n  matchExpressions:\n    - {key: app, operator: In, values: [a, b]}\n    - {key: x, operator: DoesNotExist}",
            Valid,
        ),
        (
            "match-expressions-bad-operator",
            "podSelector:\n  matchExpressions:\n    - {key: app, operator: Foo, values: [a]}",
            BadAny,
        ),
        (
            "both-selectors",
            "podSelector: {}\ningress:\n  - from:\n    - podSelector: {matchLabels: {a: b}}\n      namespaceSelector: {}",
            Valid,
        ),
        ("empty-rule", "podSelector: {}\negress:\n  - {}", Valid),
        (
            "match-labels-bad-value",
            "podSelector:\n  matchLabels: {app: 'a b'}",
            BadAny,
        ),
    ] {
        rows.push(v(format!("knp-{name}"), k(spec), want));
    }
    rows.push(v(
        "knp-bad-name",
        knp("default", "Bad_Name", "podSelector: {}"),
        BadAt("NetworkPolicy/Bad_Name".into(), "metadata.name"),
    ));
}

/// §6 cross-resource checks [DESIGN], unsupported features, kinds and fields (§A4, §2.1).
fn directory_rows(rows: &mut Vec<ValidateRow>) {
    rows.push(vfiles(
        "duplicate-endpoint-address",
        &[
            ("a.yaml", hep("h1", "192.0.2.1", &[], "")),
            ("b.yaml", wep("default", "w", "192.0.2.1/32", &[], "")),
        ],
        BadAny,
    ));
    rows.push(vfiles(
        "duplicate-endpoint-address-ipv6-spellings",
        &[
            ("a.yaml", hep("h1", "2001:db8::1", &[], "")),
            ("b.yaml", hep("h2", "2001:DB8:0::1", &[], "")),
        ],
        BadAny,
    ));
    rows.push(v(
        "undefined-tier",
        gnp("p", "tier: nope\nselector: all()"),
        Bad("spec.tier"),
    ));
    rows.push(v(
        "tier-default-named",
        gnp("p", "tier: default\nselector: all()"),
        Valid,
    ));
    rows.push(v(
        "undefined-profile-wep",
        wep("default", "w", "192.0.2.1", &[], "profiles: [nope]"),
        BadAt("WorkloadEndpoint/w".into(), "spec.profiles[0]"),
    ));
    rows.push(v(
        "undefined-profile-hep",
        hep_spec("node: n\ninterfaceName: e\nprofiles: [nope]"),
        BadAt("HostEndpoint/h".into(), "spec.profiles[0]"),
    ));
    rows.push(vfiles(
        "defined-profile",
        &[
            (
                "a.yaml",
                hep_spec("node: n\ninterfaceName: e\nprofiles: [p1]"),
            ),
            ("b.yaml", profile("p1", "ingress: []")),
        ],
        Valid,
    ));
    rows.push(v(
        "unsupported-services",
        rule("action: Allow\nsource:\n  services: {name: x, namespace: y}"),
        Bad("spec.ingress[0].source.services"),
    ));
    rows.push(v(
        "unsupported-http",
        rule("action: Allow\nhttp: {methods: [GET]}"),
        Bad("spec.ingress[0].http"),
    ));
    rows.push(v("unknown-kind", v3("Foo", "x", "a: 1"), BadAny));
    rows.push(v(
        "unknown-api-version",
        resource(
            "projectcalico.org/v2",
            "GlobalNetworkPolicy",
            "x",
            "",
            Some("{}"),
        ),
        BadAny,
    ));
    rows.push(v(
        "unknown-spec-field",
        gnp("p", "selectr: all()"),
        Bad("spec.selectr"),
    ));
    rows.push(v(
        "unknown-rule-field",
        rule("action: Allow\nprotocl: TCP"),
        Bad("spec.ingress[0].protocl"),
    ));
    rows.push(v("yaml-syntax-error", "apiVersion: [\n", BadAny));
    rows.push(v(
        "document-without-kind",
        "apiVersion: v1\nmetadata: {name: x}\n",
        BadAny,
    ));
    rows.push(v("scalar-document", "hello\n", BadAny));
    rows.push(v(
        "name-missing",
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {}\nspec: {}\n",
        Bad("metadata.name"),
    ));
    rows.push(v(
        "defined-twice",
        docs(&[gnp("a", "{}"), gnp("a", "{}")]),
        BadAt("GlobalNetworkPolicy/a".into(), "metadata.name"),
    ));
    rows.push(v(
        "same-name-other-namespace",
        docs(&[np("a", "p", "{}"), np("b", "p", "{}")]),
        Valid,
    ));
    rows.push(v(
        "same-name-gnp-and-np",
        docs(&[np("default", "p", "{}"), gnp("p", "{}")]),
        Valid,
    ));
    rows.push(v(
        "same-name-np-and-knp",
        docs(&[
            np("default", "x", "{}"),
            knp("default", "x", "podSelector: {}"),
        ]),
        Valid,
    ));
    rows.push(v(
        "np-without-namespace",
        resource(V3, "NetworkPolicy", "p", "", Some("selector: all()")),
        Valid,
    ));
    rows.push(v(
        "namespace-resource",
        namespace("ns1", &[("team", "a")]),
        Valid,
    ));
    rows.push(v(
        "namespace-bad-label",
        namespace("ns1", &[("a b", "x")]),
        BadAny,
    ));
    let many_rules = format!("ingress:\n{}", "  - action: Allow\n".repeat(200));
    rows.push(v("many-rules", gnp("p", &many_rules), Valid));
    let bomb = "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n\
                c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n\
                e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n\
                g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]\n";
    rows.push(v("limit-alias-expansion", bomb, BadAny));
    rows.push(v(
        "limit-nesting",
        format!("a: {}{}\n", "[".repeat(200), "]".repeat(200)),
        BadAny,
    ));
    rows.push(v(
        "yaml-anchors",
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  \
         ingress:\n    - &r {action: Allow, protocol: TCP}\n  egress:\n    - *r\n",
        Valid,
    ));
}

/// §6 valid corner cases that must not be rejected, and directory packaging (§2.1, §A3).
fn corner_case_rows(rows: &mut Vec<ValidateRow>) {
    let list_item = |doc: String| item(doc.trim_end()).trim_end().to_owned();
    rows.push(v(
        "cc-named-ports-no-protocol",
        ports_rule(None, "ports", "[http]"),
        Valid,
    ));
    rows.push(v(
        "cc-protocol-6-with-ports",
        ports_rule(Some("6"), "ports", "[80]"),
        Valid,
    ));
    rows.push(v(
        "cc-empty-ports-any-protocol",
        ports_rule(Some("UDPLite"), "ports", "[]"),
        Valid,
    ));
    rows.push(v(
        "cc-trailing-comma",
        gnp("p", "selector: a in {'x', 'y',}"),
        Valid,
    ));
    rows.push(v(
        "cc-global-with-space",
        rule("action: Allow\nsource:\n  namespaceSelector: global( )"),
        Valid,
    ));
    rows.push(v("cc-order-10-5", gnp("p", "order: 10.5"), Valid));
    rows.push(v("cc-tier-without-order", tier("t", ""), Valid));
    rows.push(v(
        "cc-knp-without-policy-types",
        knp("default", "k", "podSelector: {}\negress:\n  - {}"),
        Valid,
    ));
    rows.push(vfiles(
        "cc-yml-extension",
        &[("a.yml", gnp("p", "{}"))],
        Valid,
    ));
    rows.push(vfiles(
        "cc-several-files",
        &[
            ("10-tier.yaml", tier("t", "order: 5")),
            ("20-policy.yaml", gnp("p", "tier: t\nselector: all()")),
            ("30-endpoint.yml", hep("h", "203.0.113.1", &[], "")),
        ],
        Valid,
    ));
    rows.push(v(
        "cc-kind-list",
        format!(
            "apiVersion: v1\nkind: List\nitems:\n{}\n{}\n",
            list_item(gnp("p", "selector: all()")),
            list_item(tier("t", "order: 5"))
        ),
        Valid,
    ));
    rows.push(v(
        "cc-kind-list-bad-item",
        format!(
            "apiVersion: v1\nkind: List\nitems:\n{}\n",
            list_item(rule("action: allow"))
        ),
        Bad("spec.ingress[0].action"),
    ));
    rows.push(v(
        "cc-empty-list",
        "apiVersion: v1\nkind: List\nitems: []\n",
        Valid,
    ));
    rows.push(v(
        "cc-multi-document",
        docs(&[gnp("a", "{}"), gnp("b", "{}")]),
        Valid,
    ));
    rows.push(v(
        "cc-document-end-marker",
        format!("{}...\n", gnp("a", "{}")),
        Valid,
    ));
    rows.push(v("cc-empty-document", "---\n", Valid));
    rows.push(v("cc-comments-only", "# nothing here\n", Valid));
    rows.push(vfiles("cc-empty-directory", &[], Valid));
    rows.push(vfiles(
        "cc-other-files-ignored",
        &[
            ("notes.txt", "garbage: [".to_owned()),
            ("a.yaml", gnp("p", "{}")),
        ],
        Valid,
    ));
    rows.push(vfiles(
        "cc-hidden-files-ignored",
        &[
            (".hidden.yaml", "garbage: [".to_owned()),
            ("a.yaml", gnp("p", "{}")),
        ],
        Valid,
    ));
    rows.push(vfiles(
        "cc-bad-file-among-good",
        &[
            ("a.yaml", gnp("p", "{}")),
            ("b.yaml", "kind: [\n".to_owned()),
        ],
        BadAny,
    ));
}

/// §A4 settings resources.
fn settings_rows(rows: &mut Vec<ValidateRow>) {
    rows.push(v(
        "gateway-every-field",
        gateway(
            "unmatchedTrafficAction: Allow\nantiSpoof: false\ninsideNets: [192.0.2.0/24]\n\
             allowedEtherTypes: [0x88cc]\nconntrackMaxEntries: 2000\n\
             conntrackTimeouts: {tcpSynSent: 30s, tcpEstablished: 120h, tcpFinWait: 1m, \
             tcpCloseWait: 1m, tcpTimeWait: 2m, tcpClose: 10s, udpUnreplied: 30s, \
             udpReplied: 3m, icmp: 30s, other: 10m}\n\
             tcpLoosePickup: false\nrevalidateOnReload: true\nfragmentTrackerMaxEntries: 10\n\
             logRateLimitPerSecond: 5",
        ),
        Valid,
    ));
    rows.push(v(
        "gateway-action-lower",
        gateway("unmatchedTrafficAction: allow"),
        Bad("spec.unmatchedTrafficAction"),
    ));
    rows.push(v("gateway-unknown-field", gateway("foo: 1"), BadAny));
    rows.push(v(
        "gateway-bad-duration",
        gateway("conntrackTimeouts: {tcpClose: 5d}"),
        BadAny,
    ));
    rows.push(v(
        "gateway-wrong-api-version",
        v3("GatewayConfiguration", "default", "antiSpoof: true"),
        BadAny,
    ));
    rows.push(v(
        "felix-failsafe",
        felix(
            "failsafeInboundHostPorts: [{protocol: TCP, port: 22}]\nfailsafeOutboundHostPorts: none\n\
             logSeverityScreen: Info\nprometheusMetricsEnabled: true\nprometheusMetricsPort: 9091",
        ),
        Valid,
    ));
    rows.push(v(
        "felix-empty-failsafe",
        felix("failsafeInboundHostPorts: []"),
        Valid,
    ));
    rows.push(v(
        "felix-failsafe-bad-port",
        felix("failsafeInboundHostPorts: [{protocol: TCP, port: 70000}]"),
        BadAny,
    ));
    rows.push(v("felix-unknown-field", felix("fooBar: 1"), BadAny));
    rows.push(v(
        "felix-other-calico-field",
        felix("bpfEnabled: true"),
        Valid,
    ));
}

fn validate_rows() -> Vec<ValidateRow> {
    let mut rows = Vec::new();
    name_rows(&mut rows);
    label_rows(&mut rows);
    selector_field_rows(&mut rows);
    action_type_rows(&mut rows);
    protocol_rows(&mut rows);
    port_rows(&mut rows);
    icmp_rows(&mut rows);
    cidr_rows(&mut rows);
    stage_and_tier_rows(&mut rows);
    endpoint_rows(&mut rows);
    v1_and_knp_rows(&mut rows);
    directory_rows(&mut rows);
    corner_case_rows(&mut rows);
    settings_rows(&mut rows);
    rows
}

/// A problem line split into its parts: `FILE:LINE: KIND/NAME: FIELD: message`.
struct ProblemLine {
    file: String,
    line: usize,
    resource: String,
    field: String,
}

fn parse_problem_line(text: &str) -> Option<ProblemLine> {
    let mut parts = text.splitn(4, ": ");
    let location = parts.next()?;
    let resource = parts.next()?.to_owned();
    let field = parts.next()?.to_owned();
    parts.next()?;
    let (file, line) = location.rsplit_once(':')?;
    Some(ProblemLine {
        file: file.to_owned(),
        line: line.parse().ok()?,
        resource,
        field,
    })
}

/// What is wrong with one row's outcome, if anything.
fn check_validate_row(row: &ValidateRow, dir: &Path, out: &Output) -> Option<String> {
    let lines = stdout_lines(out);
    let code = out.status.code();
    if matches!(row.want, Valid) {
        return (code != Some(0) || !lines.is_empty())
            .then(|| format!("want valid, got exit {code:?}: {lines:?}"));
    }
    if code != Some(1) || lines.is_empty() {
        return Some(format!(
            "want exit 1 with problems, got exit {code:?}: {lines:?}"
        ));
    }
    let mut parsed = Vec::new();
    for line in &lines {
        let Some(p) = parse_problem_line(line) else {
            return Some(format!(
                "not FILE:LINE: KIND/NAME: FIELD: message: {line:?}"
            ));
        };
        let in_dir = Path::new(&p.file).starts_with(dir);
        let resource_ok = p.resource == "-" || p.resource.split_once('/').is_some();
        if !in_dir || !resource_ok || p.field.is_empty() {
            return Some(format!("malformed problem line {line:?}"));
        }
        parsed.push(p);
    }
    let found = |resource: Option<&str>, field: &str| {
        parsed
            .iter()
            .any(|p| p.field == field && p.line >= 1 && resource.is_none_or(|r| p.resource == r))
    };
    match &row.want {
        Bad(field) if !found(None, field) => Some(format!("no problem at {field}: {lines:?}")),
        BadAt(resource, field) if !found(Some(resource), field) => {
            Some(format!("no problem for {resource} at {field}: {lines:?}"))
        }
        _ => None,
    }
}

#[test]
fn validate_table() {
    let rows = validate_rows();
    assert_unique_names("validate", rows.iter().map(|r| r.name.as_str()));
    let mut failures = Vec::new();
    for row in &rows {
        let dir = row_dir("validate", &row.name);
        for (file, text) in &row.files {
            std::fs::write(dir.join(file), text).expect("write row file");
        }
        let out = bin()
            .arg("validate")
            .arg(&dir)
            .output()
            .expect("run validate");
        if let Some(why) = check_validate_row(row, &dir, &out) {
            failures.push(format!("  {}: {why}", row.name));
        }
    }
    report("validate", rows.len(), &failures);
}

// =============================================================================================
// §2–§5, §7, §A1, §A4 semantics, through `eval --config DIR`: the verdict of each flow, and
// where it matters what decided it (policy, default or stage, as named in the trace).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Allow,
    Deny,
    /// An `{"error": ...}` line.
    Error,
}

#[derive(Debug, Clone)]
enum Why {
    /// A trace entry names this policy (`KIND/NAME` or `KIND/NAMESPACE/NAME`) as the decider.
    Policy(String),
    /// A trace entry names this default (`tier-end`, `failsafe`, `workload-allow`, ...).
    Default(&'static str),
    /// A trace entry was decided in this stage (`failsafe`, `untracked`, `preDNAT`, ...).
    Stage(&'static str),
    /// The decision carries a note (mixed address families).
    Note,
}

struct Probe {
    flow: String,
    expect: Expect,
    why: Vec<Why>,
}

impl Probe {
    fn by(mut self, policy: &str) -> Probe {
        self.why.push(Why::Policy(policy.to_owned()));
        self
    }

    fn because(mut self, default: &'static str) -> Probe {
        self.why.push(Why::Default(default));
        self
    }

    fn at(mut self, stage: &'static str) -> Probe {
        self.why.push(Why::Stage(stage));
        self
    }

    fn noted(mut self) -> Probe {
        self.why.push(Why::Note);
        self
    }
}

fn allow(flow: String) -> Probe {
    Probe {
        flow,
        expect: Expect::Allow,
        why: Vec::new(),
    }
}

fn deny(flow: String) -> Probe {
    Probe {
        flow,
        expect: Expect::Deny,
        why: Vec::new(),
    }
}

fn error(line: &str) -> Probe {
    Probe {
        flow: line.to_owned(),
        expect: Expect::Error,
        why: Vec::new(),
    }
}

fn flow_line(src: &str, dst: &str, protocol: Value, fields: &[(&str, u32)]) -> String {
    let mut object = json!({ "src": src, "dst": dst, "protocol": protocol });
    for (k, v) in fields {
        object[*k] = json!(v);
    }
    object.to_string()
}

fn tcp(src: &str, dst: &str, dst_port: u32) -> String {
    flow_line(
        src,
        dst,
        json!("tcp"),
        &[("srcPort", 40000), ("dstPort", dst_port)],
    )
}

fn tcp_from(src: &str, src_port: u32, dst: &str, dst_port: u32) -> String {
    flow_line(
        src,
        dst,
        json!("tcp"),
        &[("srcPort", src_port), ("dstPort", dst_port)],
    )
}

fn udp(src: &str, dst: &str, dst_port: u32) -> String {
    flow_line(
        src,
        dst,
        json!("udp"),
        &[("srcPort", 40000), ("dstPort", dst_port)],
    )
}

fn udp_from(src: &str, src_port: u32, dst: &str, dst_port: u32) -> String {
    flow_line(
        src,
        dst,
        json!("udp"),
        &[("srcPort", src_port), ("dstPort", dst_port)],
    )
}

/// A flow of `protocol` (a name in any case, or a number) with a destination port.
fn ported(src: &str, dst: &str, protocol: Value, dst_port: u32) -> String {
    flow_line(src, dst, protocol, &[("dstPort", dst_port)])
}

fn bare(src: &str, dst: &str, protocol: Value) -> String {
    flow_line(src, dst, protocol, &[])
}

fn icmp(src: &str, dst: &str, icmp_type: u32, code: u32) -> String {
    flow_line(
        src,
        dst,
        json!("icmp"),
        &[("icmpType", icmp_type), ("icmpCode", code)],
    )
}

fn icmp6(src: &str, dst: &str, icmp_type: u32, code: u32) -> String {
    flow_line(
        src,
        dst,
        json!("icmpv6"),
        &[("icmpType", icmp_type), ("icmpCode", code)],
    )
}

fn icmp_type_only(src: &str, dst: &str, icmp_type: u32) -> String {
    flow_line(src, dst, json!("icmp"), &[("icmpType", icmp_type)])
}

struct EvalCase {
    name: &'static str,
    docs: Vec<String>,
    probes: Vec<Probe>,
}

fn case(name: &'static str, docs: Vec<String>, probes: Vec<Probe>) -> EvalCase {
    EvalCase { name, docs, probes }
}

/// Outside addresses that belong to no endpoint and no set (unless a case adds one).
const EXT: &str = "198.51.100.7";
const EXT2: &str = "198.51.100.8";
const EXT6: &str = "2001:db8:ffff::7";
/// Workload addresses.
const W1: &str = "192.0.2.1";
const W2: &str = "192.0.2.2";
const W3: &str = "192.0.2.3";
const W4: &str = "192.0.2.4";
const W5: &str = "192.0.2.5";
const W6: &str = "2001:db8::1";
/// Host endpoint addresses.
const H1: &str = "203.0.113.1";
const H2: &str = "203.0.113.2";

fn gnp_p(name: &str) -> String {
    format!("GlobalNetworkPolicy/{name}")
}

/// §4.3 defaults, §4.4 flow verdict, §3.4/§A4 failsafe ports, §A1 unmatched traffic.
fn default_and_failsafe_cases() -> Vec<EvalCase> {
    let ends = || {
        vec![
            wep("default", "a", W1, &[], ""),
            wep("default", "b", W2, &[], ""),
            hep("h", H1, &[], ""),
            hep("h2", H2, &[], ""),
        ]
    };
    vec![
        case(
            "defaults",
            ends(),
            vec![
                allow(tcp(W1, W2, 80)).because("workload-allow"),
                allow(tcp(EXT, W2, 80)),
                allow(tcp(W1, EXT, 80)),
                deny(tcp(EXT, H1, 80)).because("host-deny"),
                deny(tcp(H1, EXT, 80)).because("host-deny"),
                deny(tcp(W1, H1, 80)),
                deny(tcp(EXT, EXT2, 80)).because("unmatched-traffic"),
                deny(tcp(W1, "2001:db8::99", 80)).noted(),
                allow(icmp(EXT, W1, 8, 0)),
                deny(icmp(EXT, H1, 8, 0)),
            ],
        ),
        case(
            "failsafe-defaults",
            ends(),
            vec![
                allow(tcp(EXT, H1, 22)).at("failsafe").because("failsafe"),
                allow(udp(EXT, H1, 68)).at("failsafe"),
                allow(tcp(EXT, H1, 179)),
                allow(tcp(EXT, H1, 2379)),
                allow(tcp(EXT, H1, 2380)),
                allow(tcp(EXT, H1, 5473)),
                allow(tcp(EXT, H1, 6443)),
                allow(tcp(EXT, H1, 6666)),
                allow(tcp(EXT, H1, 6667)),
                deny(tcp(EXT, H1, 6668)),
                deny(udp(EXT, H1, 22)),
                deny(udp(EXT, H1, 67)),
                deny(udp(EXT, H1, 53)),
                deny(ported(EXT, H1, json!("sctp"), 22)),
                allow(udp(H1, EXT, 53)).at("failsafe"),
                allow(udp(H1, EXT, 67)),
                allow(tcp(H1, EXT, 179)),
                allow(tcp(H1, EXT, 6667)),
                deny(udp(H1, EXT, 68)),
                deny(tcp(H1, EXT, 22)),
                // Destination port only: a failsafe source port opens nothing.
                deny(tcp_from(EXT, 22, H1, 1000)),
                deny(udp_from(H1, 53, EXT, 1000)),
                // Each host side on its own: the sender's egress is not a failsafe for 22.
                deny(tcp(H1, H2, 22)),
                allow(tcp(H1, H2, 179)),
                allow(tcp(W1, H1, 22)),
                allow(udp(H1, W1, 53)),
                // Failsafe ports are for host endpoints only.
                allow(tcp(EXT, W1, 22)),
            ],
        ),
        case(
            "failsafe-disabled",
            vec![
                felix("failsafeInboundHostPorts: none\nfailsafeOutboundHostPorts: none"),
                hep("h", H1, &[], ""),
            ],
            vec![deny(tcp(EXT, H1, 22)), deny(udp(H1, EXT, 53))],
        ),
        case(
            "failsafe-custom",
            vec![
                felix(
                    "failsafeInboundHostPorts: [{protocol: TCP, port: 8080}]\n\
                     failsafeOutboundHostPorts: [{protocol: UDP, port: 123}]",
                ),
                hep("h", H1, &[], ""),
            ],
            vec![
                deny(tcp(EXT, H1, 22)),
                allow(tcp(EXT, H1, 8080)),
                allow(udp(H1, EXT, 123)),
                deny(udp(H1, EXT, 53)),
            ],
        ),
        case(
            "failsafe-ahead-of-all-policy",
            vec![
                hep("h", H1, &[("role", "h")], ""),
                gnp(
                    "deny-all",
                    "selector: role == 'h'\ningress:\n  - action: Deny\negress:\n  - action: Deny",
                ),
                gnp(
                    "dnt-deny",
                    "selector: role == 'h'\ndoNotTrack: true\napplyOnForward: true\n\
                     ingress:\n  - action: Deny\negress:\n  - action: Deny",
                ),
                gnp(
                    "pre-deny",
                    "selector: role == 'h'\npreDNAT: true\napplyOnForward: true\ningress:\n  - action: Deny",
                ),
            ],
            vec![
                allow(tcp(EXT, H1, 22)).at("failsafe"),
                allow(udp(H1, EXT, 53)).at("failsafe"),
                deny(tcp(EXT, H1, 80))
                    .by(&gnp_p("dnt-deny"))
                    .at("untracked"),
            ],
        ),
        case(
            "unmatched-traffic-allow",
            vec![
                gateway("unmatchedTrafficAction: Allow"),
                wep("default", "a", W1, &[], ""),
                hep("h", H1, &[], ""),
            ],
            vec![
                allow(tcp(EXT, EXT2, 80)).because("unmatched-traffic"),
                deny(tcp(EXT, H1, 80)),
                allow(tcp(EXT, W1, 80)),
            ],
        ),
    ]
}

/// §2.2–§2.4 effective labels and address ownership, seen through policy selectors.
fn label_cases() -> Vec<EvalCase> {
    let deny_in =
        |name: &str, selector: &str| gnp_rules(name, selector, "ingress", &["action: Deny"]);
    let allow_prof = |name: &str, labels: &str| {
        profile(
            name,
            &format!(
                "labelsToApply: {labels}\ningress:\n  - action: Allow\negress:\n  - action: Allow"
            ),
        )
    };
    vec![
        case(
            "labels-workload",
            vec![
                namespace("prod", &[("team", "a")]),
                wep(
                    "prod",
                    "w1",
                    W1,
                    &[("pcns.team", "b"), ("pcsa.x", "y"), ("app", "x")],
                    "serviceAccountName: sa1\n",
                ),
                // Sorted before `inherited`: they would allow if own pcns./pcsa. labels stayed.
                gnp_rules(
                    "a-own-pcns",
                    "pcns.team == 'b'",
                    "ingress",
                    &["action: Allow"],
                ),
                gnp_rules("a-own-pcsa", "pcsa.x == 'y'", "ingress", &["action: Allow"]),
                deny_in(
                    "inherited",
                    "app == 'x' && pcns.team == 'a' && pcns.projectcalico.org/name == 'prod' && \
                     projectcalico.org/namespace == 'prod' && projectcalico.org/orchestrator == 'k8s' && \
                     projectcalico.org/serviceaccount == 'sa1' && pcsa.projectcalico.org/name == 'sa1'",
                ),
            ],
            vec![deny(tcp(EXT, W1, 1)).by(&gnp_p("inherited"))],
        ),
        case(
            "labels-namespace-resource-absent",
            vec![
                wep("dev", "w2", W2, &[], ""),
                deny_in("by-name", "pcns.projectcalico.org/name == 'dev'"),
            ],
            vec![deny(tcp(EXT, W2, 1)).by(&gnp_p("by-name"))],
        ),
        case(
            "labels-namespace-cannot-be-spoofed",
            vec![
                wep(
                    "prod",
                    "w1",
                    W1,
                    &[("projectcalico.org/namespace", "spoof")],
                    "",
                ),
                deny_in("spoofed", "projectcalico.org/namespace == 'spoof'"),
            ],
            vec![allow(tcp(EXT, W1, 1)).because("workload-allow")],
        ),
        case(
            "labels-orchestrator-empty",
            vec![
                resource(
                    V3,
                    "WorkloadEndpoint",
                    "w",
                    "namespace: default",
                    Some(&format!("interfaceName: c0\nipNetworks: ['{W1}']")),
                ),
                deny_in(
                    "empty",
                    "has(projectcalico.org/orchestrator) && projectcalico.org/orchestrator == ''",
                ),
            ],
            vec![deny(tcp(EXT, W1, 1)).by(&gnp_p("empty"))],
        ),
        case(
            "labels-profiles",
            vec![
                wep(
                    "default",
                    "w1",
                    W1,
                    &[("app", "own")],
                    "profiles: [p1, p2]\n",
                ),
                hep("h1", H1, &[("app", "own")], "profiles: [p2, p1]\n"),
                allow_prof("p1", "{app: p1, k: p1, m: p1}"),
                allow_prof("p2", "{app: p2, k: p2, n: p2}"),
                deny_in(
                    "first-profile-p1",
                    "app == 'own' && k == 'p1' && m == 'p1' && n == 'p2'",
                ),
                deny_in(
                    "first-profile-p2",
                    "app == 'own' && k == 'p2' && m == 'p1' && n == 'p2'",
                ),
            ],
            vec![
                deny(tcp(EXT, W1, 1)).by(&gnp_p("first-profile-p1")),
                deny(tcp(EXT, H1, 1)).by(&gnp_p("first-profile-p2")),
            ],
        ),
        case(
            "labels-host-no-namespace",
            vec![
                hep("h1", H1, &[("a", "b")], ""),
                deny_in(
                    "namespaced",
                    "has(projectcalico.org/namespace) || has(projectcalico.org/orchestrator)",
                ),
                gnp_rules("pass", "a == 'b'", "ingress", &["action: Pass"]),
            ],
            vec![deny(tcp(EXT, H1, 1)).because("host-deny")],
        ),
        case(
            "address-spellings",
            vec![
                resource(
                    V3,
                    "WorkloadEndpoint",
                    "w",
                    "namespace: default\nlabels: {a: b}",
                    Some("interfaceName: c0\nipNetworks: ['2001:DB8:0:0::0001/128']"),
                ),
                gnp_rules(
                    "p",
                    "a == 'b'",
                    "ingress",
                    &["action: Allow\nsource:\n  nets: ['2001:db8:ffff::/48']"],
                ),
            ],
            vec![
                allow(tcp("2001:db8:ffff::9", "2001:db8::1", 1)).by(&gnp_p("p")),
                allow(tcp("2001:DB8:FFFF:0::9", "2001:0db8:0000::1", 1)),
                deny(tcp("2001:db8:fffe::9", "2001:db8::1", 1)).because("tier-end"),
            ],
        ),
        case(
            "multi-address-endpoints",
            vec![
                resource(
                    V3,
                    "WorkloadEndpoint",
                    "w",
                    "namespace: default\nlabels: {a: b}",
                    Some(&format!(
                        "interfaceName: c0\norchestrator: k8s\nipNetworks: [{W1}/32, '{W6}/128']"
                    )),
                ),
                resource(
                    V3,
                    "HostEndpoint",
                    "h",
                    "",
                    Some(&format!("node: n\nexpectedIPs: [{H1}, {H2}]")),
                ),
                gnp_rules(
                    "v6-only",
                    "a == 'b'",
                    "ingress",
                    &["action: Allow\nipVersion: 6"],
                ),
                gnp_rules(
                    "second-ip",
                    "!has(a)",
                    "ingress",
                    &[&format!("action: Allow\ndestination:\n  nets: [{H2}/32]")],
                ),
            ],
            vec![
                deny(tcp(EXT, W1, 1)),
                allow(tcp(EXT6, W6, 1)).by(&gnp_p("v6-only")),
                deny(tcp(EXT, H1, 1)),
                allow(tcp(EXT, H2, 1)).by(&gnp_p("second-ip")),
            ],
        ),
        case(
            "network-sets-never-endpoints",
            vec![global_set("g", "[198.51.100.0/24]", &[("s", "1")])],
            vec![deny(tcp(EXT, EXT2, 1)).because("unmatched-traffic")],
        ),
    ]
}

/// §3.1 which policies select an endpoint; §8 items 9–11.
fn selection_cases() -> Vec<EvalCase> {
    vec![
        case(
            "gnp-namespace-selector-all-excludes-hosts",
            vec![
                wep("default", "w1", W1, &[], ""),
                hep("h1", H1, &[], ""),
                gnp(
                    "ns-all",
                    "namespaceSelector: all()\ningress:\n  - action: Deny",
                ),
                gnp(
                    "pass-hosts",
                    "selector: \"!has(projectcalico.org/namespace)\"\ningress:\n  - action: Log",
                ),
            ],
            vec![
                deny(tcp(EXT, W1, 1)).by(&gnp_p("ns-all")),
                deny(tcp(EXT, H1, 1)).because("tier-end"),
            ],
        ),
        case(
            "gnp-namespace-selector-labels",
            vec![
                namespace("prod", &[("team", "a")]),
                namespace("dev", &[("team", "b")]),
                wep("prod", "w1", W1, &[], ""),
                wep("dev", "w2", W2, &[], ""),
                gnp(
                    "ns-a",
                    "namespaceSelector: team == 'a'\nselector: all()\ningress:\n  - action: Deny",
                ),
            ],
            vec![
                deny(tcp(EXT, W1, 1)).by(&gnp_p("ns-a")),
                allow(tcp(EXT, W2, 1)).because("workload-allow"),
            ],
        ),
        case(
            "gnp-service-account-selector",
            vec![
                wep("default", "w1", W1, &[], "serviceAccountName: s1\n"),
                wep("default", "w2", W2, &[], ""),
                hep("h", H1, &[], ""),
                gnp(
                    "sa-all",
                    "serviceAccountSelector: all()\ningress:\n  - action: Deny",
                ),
                gnp(
                    "sa-s1",
                    "serviceAccountSelector: projectcalico.org/name == 's1'\negress:\n  - action: Deny",
                ),
            ],
            vec![
                deny(tcp(EXT, W1, 1)).by(&gnp_p("sa-all")),
                allow(tcp(EXT, W2, 1)),
                deny(tcp(W1, EXT, 1)).by(&gnp_p("sa-s1")),
                allow(tcp(W2, EXT, 1)),
            ],
        ),
        case(
            "np-own-namespace-only",
            vec![
                wep("a", "w1", W1, &[], ""),
                wep("b", "w2", W2, &[], ""),
                hep("h", H1, &[("x", "y")], ""),
                np(
                    "a",
                    "sel-all",
                    "selector: all()\ningress:\n  - action: Deny",
                ),
                np("b", "no-sel", "ingress:\n  - action: Deny"),
                np(
                    "a",
                    "hosts",
                    "selector: x == 'y'\ningress:\n  - action: Allow",
                ),
            ],
            vec![
                deny(tcp(EXT, W1, 1)).by("NetworkPolicy/a/sel-all"),
                deny(tcp(EXT, W2, 1)).by("NetworkPolicy/b/no-sel"),
                deny(tcp(EXT, H1, 1)).because("host-deny"),
            ],
        ),
        case(
            "np-default-namespace",
            vec![
                wep("default", "w1", W1, &[], ""),
                wep("b", "w2", W2, &[], ""),
                resource(
                    V3,
                    "NetworkPolicy",
                    "x",
                    "",
                    Some("selector: all()\ningress:\n  - action: Deny"),
                ),
            ],
            vec![deny(tcp(EXT, W1, 1)), allow(tcp(EXT, W2, 1))],
        ),
        case(
            "v1-policy-like-gnp",
            vec![
                wep("default", "w1", W1, &[("r", "x")], ""),
                hep("h", H1, &[("r", "x")], ""),
                v1(
                    "Allow_X.v2",
                    "selector: r == 'x'\ningress:\n  - action: allow\n    protocol: tcp\n    destination:\n      ports: [80]",
                ),
            ],
            vec![
                allow(tcp(EXT, W1, 80)).by("policy/Allow_X.v2"),
                deny(tcp(EXT, W1, 81)).because("tier-end"),
                allow(tcp(EXT, H1, 80)),
            ],
        ),
        case(
            "knp-selects-k8s-pods-only",
            vec![
                resource(
                    V3,
                    "WorkloadEndpoint",
                    "cni",
                    "namespace: default",
                    Some(&format!(
                        "orchestrator: cni\ninterfaceName: c0\nipNetworks: ['{W1}']"
                    )),
                ),
                wep("default", "pod", W2, &[], ""),
                hep("h", H1, &[], ""),
                knp("default", "k", "podSelector: {}\npolicyTypes: [Ingress]"),
            ],
            vec![
                allow(tcp(EXT, W1, 1)).because("workload-allow"),
                deny(tcp(EXT, W2, 1)).because("tier-end"),
                deny(tcp(EXT, H1, 1)).because("host-deny"),
            ],
        ),
        case(
            "do-not-track-and-pre-dnat-ignored-for-workloads",
            vec![
                wep("default", "w", W1, &[("r", "h")], ""),
                gnp(
                    "u",
                    "selector: r == 'h'\ndoNotTrack: true\napplyOnForward: true\ningress:\n  - action: Deny",
                ),
                gnp(
                    "pd",
                    "selector: r == 'h'\npreDNAT: true\napplyOnForward: true\ningress:\n  - action: Deny",
                ),
            ],
            vec![allow(tcp(EXT, W1, 1)).because("workload-allow")],
        ),
    ]
}

/// §3.2 types defaulting; §8 item 12.
fn types_cases() -> Vec<EvalCase> {
    let ends = || {
        vec![
            wep("default", "w1", W1, &[("app", "w")], ""),
            wep("default", "w2", W2, &[("app", "v")], ""),
        ]
    };
    let with = |spec: &str| {
        let mut d = ends();
        d.push(gnp("p", &format!("selector: app == 'w'\n{spec}")));
        d
    };
    vec![
        case(
            "types-no-rules-is-ingress",
            with(""),
            vec![
                deny(tcp(EXT, W1, 1)).because("tier-end"),
                allow(tcp(W1, EXT, 1)),
                allow(tcp(EXT, W2, 1)),
            ],
        ),
        case(
            "types-egress-rules-only-is-egress",
            with("egress:\n  - action: Deny\n    protocol: UDP"),
            vec![
                allow(tcp(EXT, W1, 1)),
                deny(udp(W1, EXT, 1)).by(&gnp_p("p")),
                deny(tcp(W1, EXT, 1)).because("tier-end"),
            ],
        ),
        case(
            "types-both-rule-lists",
            with(
                "ingress:\n  - action: Allow\n    protocol: TCP\negress:\n  - action: Allow\n    protocol: UDP",
            ),
            vec![
                allow(tcp(EXT, W1, 1)),
                deny(udp(EXT, W1, 1)),
                allow(udp(W1, EXT, 1)),
                deny(tcp(W1, EXT, 1)),
            ],
        ),
        case(
            "types-explicit-ignores-other-rules",
            with(
                "types: [Egress]\ningress:\n  - action: Deny\negress:\n  - action: Allow\n    protocol: UDP",
            ),
            vec![
                allow(tcp(EXT, W1, 1)),
                deny(tcp(W1, EXT, 1)),
                allow(udp(W1, EXT, 1)),
            ],
        ),
        case(
            "types-ingress-with-egress-rules",
            with("types: [Ingress]\negress:\n  - action: Deny"),
            vec![
                deny(tcp(EXT, W1, 1)).because("tier-end"),
                allow(tcp(W1, EXT, 1)),
            ],
        ),
        case(
            "types-empty-list-defaults",
            with("types: []\negress:\n  - action: Deny"),
            vec![allow(tcp(EXT, W1, 1)), deny(tcp(W1, EXT, 1))],
        ),
    ]
}

/// §4.1, §4.2 ordering; §4.3 tier end; §8 items 13, 16, 17.
fn ordering_cases() -> Vec<EvalCase> {
    let ends = || {
        vec![
            wep("default", "w1", W1, &[("app", "w")], ""),
            wep("default", "w2", W2, &[("app", "v")], ""),
        ]
    };
    let pol = |name: &str, spec: &str| gnp(name, &format!("selector: app == 'w'\n{spec}"));
    let port_rule = |action: &str, ports: &str| {
        format!(
            "  - action: {action}\n    protocol: TCP\n    destination:\n      ports: [{ports}]\n"
        )
    };
    let mut cases = Vec::new();
    let mut d = ends();
    d.extend([
        pol(
            "a-udp-deny",
            "order: 1\ningress:\n  - action: Deny\n    protocol: UDP",
        ),
        pol(
            "b-allow-80",
            &format!("order: 2\ningress:\n{}", port_rule("Allow", "80")),
        ),
        gnp(
            "c-other",
            "order: 0\nselector: app == 'v'\ningress:\n  - action: Allow",
        ),
    ]);
    cases.push(case(
        "tier-end-denies",
        d,
        vec![
            allow(tcp(EXT, W1, 80)).by(&gnp_p("b-allow-80")),
            deny(udp(EXT, W1, 80)).by(&gnp_p("a-udp-deny")),
            deny(tcp(EXT, W1, 81)).because("tier-end"),
            allow(tcp(EXT, W2, 81)).by(&gnp_p("c-other")),
        ],
    ));
    let mut d = ends();
    d.extend([
        tier("t0", "order: 10"),
        tier("t1", "order: 10"),
        tier("t4", "order: 10.5"),
        tier("t2", "order: 2000000"),
        tier("t3", ""),
        pol(
            "t0.p",
            &format!(
                "tier: t0\ningress:\n{}{}",
                port_rule("Pass", "1,2,3,4,11"),
                port_rule("Allow", "10")
            ),
        ),
        pol("t1.p", "tier: t1\ningress:\n  - action: Pass"),
        pol(
            "t4.p",
            &format!(
                "tier: t4\ningress:\n{}{}",
                port_rule("Pass", "1,2,3,4"),
                port_rule("Deny", "11")
            ),
        ),
        pol(
            "d",
            &format!("ingress:\n{}  - action: Pass\n", port_rule("Deny", "1")),
        ),
        pol(
            "t2.p",
            &format!(
                "tier: t2\ningress:\n{}  - action: Allow\n",
                port_rule("Deny", "2")
            ),
        ),
        pol("t3.p", "tier: t3\ningress:\n  - action: Deny"),
    ]);
    cases.push(case(
        "tier-order-numeric-then-name-then-unordered",
        d,
        vec![
            allow(tcp(EXT, W1, 10)).by(&gnp_p("t0.p")),
            deny(tcp(EXT, W1, 12)).because("tier-end"),
            deny(tcp(EXT, W1, 11)).by(&gnp_p("t4.p")),
            deny(tcp(EXT, W1, 1)).by(&gnp_p("d")),
            deny(tcp(EXT, W1, 2)).by(&gnp_p("t2.p")),
            allow(tcp(EXT, W1, 3)).by(&gnp_p("t2.p")),
        ],
    ));
    let mut d = ends();
    d.extend([
        tier("b", "order: 5"),
        tier("a", "order: 5"),
        pol("pa", "tier: a\ningress:\n  - action: Allow"),
        pol("pb", "tier: b\ningress:\n  - action: Deny"),
    ]);
    cases.push(case(
        "tier-tie-by-name",
        d,
        vec![allow(tcp(EXT, W1, 1)).by(&gnp_p("pa"))],
    ));
    let mut d = ends();
    d.extend([
        tier("a", "order: 1000000"),
        tier("z", "order: 1000000"),
        pol("pa", "tier: a\ningress:\n  - action: Pass"),
        pol("pz", "tier: z\ningress:\n  - action: Allow"),
        pol("pd", "ingress:\n  - action: Deny"),
    ]);
    cases.push(case(
        "default-tier-order-one-million",
        d,
        vec![deny(tcp(EXT, W1, 1)).by(&gnp_p("pd"))],
    ));
    let mut d = ends();
    d.extend([
        tier("a", ""),
        tier("b", "order: 1e300"),
        pol("pa", "tier: a\ningress:\n  - action: Allow"),
        pol("pb", "tier: b\ningress:\n  - action: Deny"),
        pol("pd", "ingress:\n  - action: Pass"),
    ]);
    cases.push(case(
        "unordered-tier-last",
        d,
        vec![deny(tcp(EXT, W1, 1)).by(&gnp_p("pb"))],
    ));
    let mut d = ends();
    d.extend([
        tier("default", "order: 1000000\ndefaultAction: Deny"),
        tier("early", "order: 999999.5"),
        pol("early.p", "tier: early\ningress:\n  - action: Pass"),
        pol("late", "ingress:\n  - action: Allow\n    protocol: UDP"),
    ]);
    cases.push(case(
        "default-tier-declared",
        d,
        vec![
            allow(udp(EXT, W1, 1)).by(&gnp_p("late")),
            deny(tcp(EXT, W1, 1)).because("tier-end"),
        ],
    ));
    let mut d = ends();
    d.extend([
        pol("p100", "order: 100\ningress:\n  - action: Deny"),
        pol(
            "p20",
            "order: 20\ningress:\n  - action: Allow\n    protocol: TCP",
        ),
        pol("a0", "ingress:\n  - action: Allow"),
        pol(
            "p1",
            "order: 20\ningress:\n  - action: Deny\n    protocol: UDP",
        ),
        pol(
            "p0",
            "order: 20.5\ningress:\n  - action: Allow\n    protocol: UDP",
        ),
    ]);
    cases.push(case(
        "policy-order-numeric",
        d,
        vec![
            allow(tcp(EXT, W1, 1)).by(&gnp_p("p20")),
            deny(udp(EXT, W1, 1)).by(&gnp_p("p1")),
            deny(ported(EXT, W1, json!("sctp"), 1)).by(&gnp_p("p100")),
        ],
    ));
    let mut d = ends();
    d.extend([
        pol("a9", "ingress:\n  - action: Deny\n    protocol: TCP"),
        pol("a10", "ingress:\n  - action: Allow\n    protocol: TCP"),
        pol("b", "ingress:\n  - action: Allow\n    protocol: UDP"),
        pol("a-x", "ingress:\n  - action: Deny\n    protocol: UDP"),
        pol(
            "z",
            "order: 1e9\ningress:\n  - action: Deny\n    protocol: SCTP",
        ),
        pol("a", "ingress:\n  - action: Allow\n    protocol: SCTP"),
    ]);
    cases.push(case(
        "policy-unordered-last-then-bytewise-names",
        d,
        vec![
            allow(tcp(EXT, W1, 1)).by(&gnp_p("a10")),
            deny(udp(EXT, W1, 1)).by(&gnp_p("a-x")),
            deny(ported(EXT, W1, json!("sctp"), 1)).by(&gnp_p("z")),
        ],
    ));
    let mut d = ends();
    d.extend([
        knp(
            "default",
            "k",
            "podSelector: {matchLabels: {app: w}}\ningress:\n  - ports:\n    - port: 80",
        ),
        pol("g1001", "order: 1001\ningress:\n  - action: Deny"),
        pol(
            "g999",
            &format!("order: 999\ningress:\n{}", port_rule("Deny", "81")),
        ),
        pol("gnone", "ingress:\n  - action: Allow"),
    ]);
    cases.push(case(
        "knp-order-1000",
        d,
        vec![
            allow(tcp(EXT, W1, 80)).by("KubernetesNetworkPolicy/default/k"),
            deny(tcp(EXT, W1, 81)).by(&gnp_p("g999")),
            deny(tcp(EXT, W1, 82)).by(&gnp_p("g1001")),
        ],
    ));
    cases
}

/// §4.3 Pass, Log, tier defaultAction, profiles; §8 items 13–15, 23, 24.
fn pass_log_profile_cases() -> Vec<EvalCase> {
    let prof_rules = |name: &str, rules: &str| profile(name, rules);
    vec![
        case(
            "pass-skips-to-next-applicable-tier",
            vec![
                wep("default", "w1", W1, &[("app", "w")], ""),
                wep("default", "w2", W2, &[("app", "v")], ""),
                tier("t1", "order: 1"),
                tier("t2", "order: 2"),
                tier("t3", "order: 3"),
                gnp(
                    "p1",
                    "tier: t1\nselector: all()\ningress:\n  - action: Pass",
                ),
                gnp(
                    "p2",
                    "tier: t2\nselector: app == 'v'\ningress:\n  - action: Deny",
                ),
                gnp(
                    "p3",
                    "tier: t3\nselector: app == 'w'\ntypes: [Egress]\negress:\n  - action: Deny",
                ),
            ],
            vec![
                allow(tcp(EXT, W1, 1)).because("workload-allow"),
                deny(tcp(EXT, W2, 1)).by(&gnp_p("p2")),
                deny(tcp(W1, EXT, 1)).by(&gnp_p("p3")),
            ],
        ),
        case(
            "pass-skips-rest-of-tier",
            vec![
                wep("default", "w1", W1, &[], ""),
                gnp("p1", "order: 1\ningress:\n  - action: Pass"),
                gnp("p2", "order: 2\ningress:\n  - action: Deny"),
            ],
            vec![allow(tcp(EXT, W1, 1)).because("workload-allow")],
        ),
        case(
            "pass-to-profiles",
            vec![
                wep("default", "w1", W1, &[("app", "w")], "profiles: [pr1]\n"),
                wep("default", "w2", W2, &[("app", "w")], ""),
                hep("h", H1, &[("app", "w")], ""),
                prof_rules(
                    "pr1",
                    "ingress:\n  - action: Deny\n    protocol: UDP\n  - action: Allow\n    protocol: TCP",
                ),
                gnp("p1", "selector: app == 'w'\ningress:\n  - action: Pass"),
            ],
            vec![
                allow(tcp(EXT, W1, 1)).by("Profile/pr1").at("profile"),
                deny(udp(EXT, W1, 1)).by("Profile/pr1"),
                deny(ported(EXT, W1, json!("sctp"), 1)).because("profiles-no-match"),
                allow(tcp(EXT, W2, 1)).because("workload-allow"),
                deny(tcp(EXT, H1, 1)).because("host-deny"),
            ],
        ),
        case(
            "profile-pass-and-log",
            vec![
                wep("default", "w1", W1, &[], "profiles: [a, b]\n"),
                prof_rules(
                    "a",
                    "ingress:\n  - action: Log\n  - action: Pass\n    protocol: TCP\n  - action: Deny",
                ),
                prof_rules("b", "ingress:\n  - action: Allow\n    protocol: TCP"),
            ],
            vec![
                allow(tcp(EXT, W1, 1)).by("Profile/b"),
                deny(udp(EXT, W1, 1)).by("Profile/a"),
            ],
        ),
        case(
            "profiles-none-match",
            vec![
                wep("default", "w1", W1, &[], "profiles: [a]\n"),
                hep("h", H1, &[], "profiles: [b]\n"),
                prof_rules("a", "ingress:\n  - action: Allow\n    protocol: UDP"),
                prof_rules(
                    "b",
                    "ingress:\n  - action: Allow\n    protocol: UDP\negress:\n  - action: Allow",
                ),
            ],
            vec![
                deny(tcp(EXT, W1, 1)).because("profiles-no-match"),
                deny(tcp(W1, EXT, 1)).because("profiles-no-match"),
                allow(udp(EXT, W1, 1)).by("Profile/a"),
                allow(udp(EXT, H1, 1)).by("Profile/b"),
                allow(tcp(H1, EXT, 1)).by("Profile/b"),
                deny(tcp(EXT, H1, 1)).because("profiles-no-match"),
            ],
        ),
        case(
            "tier-default-action-pass",
            vec![
                wep("default", "w1", W1, &[], ""),
                hep("h", H1, &[], ""),
                tier("t1", "order: 1\ndefaultAction: Pass"),
                gnp(
                    "p1",
                    "tier: t1\nselector: all()\ningress:\n  - action: Deny\n    protocol: UDP",
                ),
            ],
            vec![
                allow(tcp(EXT, W1, 1)).because("workload-allow"),
                deny(udp(EXT, W1, 1)).by(&gnp_p("p1")),
                deny(tcp(EXT, H1, 1)).because("host-deny"),
            ],
        ),
        case(
            "log-never-decides",
            vec![
                wep("default", "w1", W1, &[], ""),
                wep("default", "w2", W2, &[("only", "log")], ""),
                gnp(
                    "p1",
                    "selector: \"!has(only)\"\ningress:\n  - action: Log\n  - action: Allow\n    protocol: TCP",
                ),
                gnp("p2", "selector: only == 'log'\ningress:\n  - action: Log"),
            ],
            vec![
                allow(tcp(EXT, W1, 1)).by(&gnp_p("p1")),
                deny(udp(EXT, W1, 1)).because("tier-end"),
                deny(tcp(EXT, W2, 1)).because("tier-end"),
            ],
        ),
        case(
            "deny-only-policy-isolates",
            vec![
                wep("default", "w1", W1, &[], ""),
                gnp("d", "ingress:\n  - action: Deny\n    protocol: UDP"),
            ],
            vec![
                deny(tcp(EXT, W1, 1)).because("tier-end"),
                deny(udp(EXT, W1, 1)).by(&gnp_p("d")),
            ],
        ),
        case(
            "pass-in-last-tier-host",
            vec![
                hep("h", H1, &[], ""),
                gnp("p1", "ingress:\n  - action: Pass"),
            ],
            vec![deny(tcp(EXT, H1, 1)).because("host-deny")],
        ),
    ]
}

/// §3.3 host endpoint stages: untracked, preDNAT, normal [DESIGN]; §8 item 25.
fn stage_cases() -> Vec<EvalCase> {
    let ports = |action: &str, port: u32| {
        format!(
            "  - action: {action}\n    protocol: TCP\n    destination:\n      ports: [{port}]\n"
        )
    };
    let dnt = |name: &str, spec: &str| {
        gnp(
            name,
            &format!("doNotTrack: true\napplyOnForward: true\nselector: r == 'h'\n{spec}"),
        )
    };
    let pre = |name: &str, spec: &str| {
        gnp(
            name,
            &format!("preDNAT: true\napplyOnForward: true\nselector: r == 'h'\n{spec}"),
        )
    };
    vec![
        case(
            "stages-in-order",
            vec![
                hep("h", H1, &[("r", "h")], ""),
                wep("default", "w", W1, &[("r", "h")], ""),
                dnt(
                    "u",
                    &format!(
                        "ingress:\n{}{}egress:\n{}{}",
                        ports("Allow", 1),
                        ports("Deny", 2),
                        ports("Allow", 5),
                        ports("Deny", 6)
                    ),
                ),
                pre(
                    "pd",
                    &format!("ingress:\n{}{}", ports("Allow", 3), ports("Deny", 4)),
                ),
                gnp(
                    "n",
                    &format!(
                        "selector: r == 'h'\ningress:\n{}{}  - action: Allow\negress:\n{}  - action: Allow\n",
                        ports("Deny", 1),
                        ports("Deny", 3),
                        ports("Deny", 5)
                    ),
                ),
            ],
            vec![
                allow(tcp(EXT, H1, 1)).by(&gnp_p("u")).at("untracked"),
                deny(tcp(EXT, H1, 2)).by(&gnp_p("u")).at("untracked"),
                allow(tcp(EXT, H1, 3)).by(&gnp_p("pd")).at("preDNAT"),
                deny(tcp(EXT, H1, 4)).by(&gnp_p("pd")).at("preDNAT"),
                allow(tcp(EXT, H1, 7)).by(&gnp_p("n")).at("normal"),
                allow(tcp(H1, EXT, 5)).by(&gnp_p("u")).at("untracked"),
                deny(tcp(H1, EXT, 6)).by(&gnp_p("u")),
                allow(tcp(H1, EXT, 7)).by(&gnp_p("n")),
                // A workload sees only the normal policy.
                deny(tcp(EXT, W1, 1)).by(&gnp_p("n")),
                allow(tcp(EXT, W1, 2)).by(&gnp_p("n")),
                allow(tcp(EXT, W1, 4)).by(&gnp_p("n")),
                deny(tcp(W1, EXT, 5)).by(&gnp_p("n")),
                allow(tcp(W1, EXT, 6)).by(&gnp_p("n")),
            ],
        ),
        case(
            "untracked-tier-end-is-pass",
            vec![
                hep("h", H1, &[("r", "h")], ""),
                dnt("u", "ingress:\n  - action: Deny\n    protocol: UDP"),
                gnp("n", "selector: r == 'h'\ningress:\n  - action: Allow"),
            ],
            vec![
                allow(tcp(EXT, H1, 1)).by(&gnp_p("n")).at("normal"),
                deny(udp(EXT, H1, 1)).by(&gnp_p("u")),
            ],
        ),
        case(
            "pre-dnat-alone",
            vec![
                hep("h", H1, &[("r", "h")], ""),
                pre("pd", "ingress:\n  - action: Allow\n    protocol: UDP"),
            ],
            vec![
                allow(udp(EXT, H1, 1)).by(&gnp_p("pd")),
                deny(tcp(EXT, H1, 1)).because("host-deny"),
            ],
        ),
        case(
            "pre-dnat-pass-to-next-tier",
            vec![
                hep("h", H1, &[("r", "h")], ""),
                tier("t1", "order: 1"),
                pre("pd", "tier: t1\ningress:\n  - action: Pass"),
                pre("pd2", "ingress:\n  - action: Allow"),
            ],
            vec![allow(udp(EXT, H1, 1)).by(&gnp_p("pd2")).at("preDNAT")],
        ),
        case(
            "host-to-host",
            vec![
                hep("h", H1, &[("r", "h")], ""),
                hep("h2", H2, &[("r", "g")], ""),
                gnp("e", "selector: r == 'h'\negress:\n  - action: Allow"),
                gnp(
                    "i",
                    "selector: r == 'g'\ningress:\n  - action: Allow\n    protocol: TCP",
                ),
            ],
            vec![
                allow(tcp(H1, H2, 1)),
                deny(udp(H1, H2, 1)).by(&gnp_p("e")).because("tier-end"),
                deny(tcp(H2, H1, 1)),
            ],
        ),
    ]
}

/// One workload of each family labelled `app: w`, selected by policy `p` with the given ingress rule.
fn one_rule(rule_body: &str, extra: Vec<String>) -> Vec<String> {
    let mut d = vec![
        wep("default", "w4", W1, &[("app", "w")], ""),
        wep("default", "w6", W6, &[("app", "w")], ""),
    ];
    d.extend(extra);
    d.push(gnp_rules("p", "app == 'w'", "ingress", &[rule_body]));
    d
}

/// §5 protocol, ipVersion, nets, ports, icmp; §8 items 20, 21, 26, 27; §9 ICMP without type.
fn rule_match_cases() -> Vec<EvalCase> {
    let p = || gnp_p("p");
    vec![
        case(
            "protocol-names-any-case-and-numbers",
            one_rule("action: Allow\nprotocol: UDPLite", vec![]),
            vec![
                allow(ported(EXT, W1, json!("udplite"), 1)).by(&p()),
                allow(ported(EXT, W1, json!("UDPLITE"), 1)),
                allow(ported(EXT, W1, json!("UdpLite"), 1)),
                allow(ported(EXT, W1, json!(136), 1)),
                allow(ported(EXT, W1, json!("136"), 1)),
                deny(udp(EXT, W1, 1)).because("tier-end"),
            ],
        ),
        case(
            "protocol-number",
            one_rule("action: Allow\nprotocol: 47", vec![]),
            vec![
                allow(bare(EXT, W1, json!(47))),
                allow(bare(EXT, W1, json!("47"))),
                deny(tcp(EXT, W1, 1)),
            ],
        ),
        case(
            "protocol-digit-string",
            one_rule("action: Allow\nprotocol: '17'", vec![]),
            vec![
                allow(udp(EXT, W1, 5)),
                allow(ported(EXT, W1, json!("UDP"), 5)),
                deny(tcp(EXT, W1, 5)),
            ],
        ),
        case(
            "protocol-sctp-ports",
            one_rule(
                "action: Allow\nprotocol: SCTP\ndestination:\n  ports: [5]",
                vec![],
            ),
            vec![
                allow(ported(EXT, W1, json!("sctp"), 5)),
                allow(ported(EXT, W1, json!(132), 5)),
                deny(ported(EXT, W1, json!("sctp"), 6)),
            ],
        ),
        case(
            "not-protocol",
            one_rule("action: Allow\nnotProtocol: TCP", vec![]),
            vec![
                allow(udp(EXT, W1, 1)),
                allow(icmp(EXT, W1, 8, 0)),
                allow(icmp6(EXT6, W6, 128, 0)),
                deny(tcp(EXT, W1, 1)),
            ],
        ),
        case(
            "not-protocol-icmp",
            one_rule("action: Allow\nnotProtocol: ICMP", vec![]),
            vec![
                allow(udp(EXT, W1, 1)),
                deny(icmp(EXT, W1, 8, 0)),
                allow(icmp6(EXT6, W6, 128, 0)),
                allow(udp(EXT6, W6, 1)),
            ],
        ),
        case(
            "protocol-icmp-is-ipv4-only",
            one_rule("action: Allow\nprotocol: ICMP", vec![]),
            vec![
                allow(icmp(EXT, W1, 8, 0)),
                allow(bare(EXT, W1, json!("icmp"))),
                deny(icmp6(EXT6, W6, 128, 0)),
            ],
        ),
        case(
            "protocol-icmpv6",
            one_rule("action: Allow\nprotocol: ICMPv6", vec![]),
            vec![
                allow(icmp6(EXT6, W6, 128, 0)),
                allow(bare(EXT6, W6, json!(58))),
                deny(icmp(EXT, W1, 8, 0)),
            ],
        ),
        case(
            "ip-version-4",
            one_rule("action: Allow\nipVersion: 4", vec![]),
            vec![allow(tcp(EXT, W1, 1)), deny(tcp(EXT6, W6, 1))],
        ),
        case(
            "ip-version-6",
            one_rule("action: Allow\nipVersion: 6", vec![]),
            vec![deny(tcp(EXT, W1, 1)), allow(tcp(EXT6, W6, 1))],
        ),
        case(
            "not-nets-family",
            one_rule("action: Allow\nsource:\n  notNets: [192.0.2.0/24]", vec![]),
            vec![
                allow(tcp(EXT, W1, 1)),
                deny(tcp(EXT6, W6, 1)),
                deny(tcp("192.0.2.9", W1, 1)),
            ],
        ),
        case(
            "nets-family-destination",
            one_rule("action: Allow\ndestination:\n  nets: [0.0.0.0/0]", vec![]),
            vec![allow(tcp(EXT, W1, 1)), deny(tcp(EXT6, W6, 1))],
        ),
        case(
            "nets-ipv6-spellings",
            one_rule(
                "action: Allow\nsource:\n  nets: ['2001:DB8:FFFF::/64']",
                vec![],
            ),
            vec![
                allow(tcp(EXT6, W6, 1)),
                allow(tcp("2001:db8:ffff:0:0:0:0:7", W6, 1)),
                deny(tcp("2001:db8:fffe::7", W6, 1)),
                deny(tcp(EXT, W1, 1)),
            ],
        ),
        case(
            "nets-and-not-nets",
            one_rule(
                "action: Allow\nsource:\n  nets: [198.51.100.0/24]\n  notNets: [198.51.100.0/28]",
                vec![],
            ),
            vec![allow(tcp("198.51.100.20", W1, 1)), deny(tcp(EXT, W1, 1))],
        ),
        case(
            "nets-bare-ip",
            one_rule("action: Allow\nsource:\n  nets: [198.51.100.7]", vec![]),
            vec![allow(tcp(EXT, W1, 1)), deny(tcp(EXT2, W1, 1))],
        ),
        case(
            "source-criteria-test-source-address",
            one_rule(
                "action: Allow\nsource:\n  nets: [192.0.2.1/32]\ndestination:\n  nets: [192.0.2.2/32]",
                vec![wep("default", "w2", W2, &[("app", "w")], "")],
            ),
            vec![allow(tcp(W1, W2, 1)), deny(tcp(W2, W1, 1))],
        ),
        case(
            "destination-ports",
            one_rule(
                "action: Allow\nprotocol: TCP\ndestination:\n  ports: [80, '8000:8080', 65535, 1]",
                vec![],
            ),
            vec![
                allow(tcp(EXT, W1, 80)),
                allow(tcp(EXT, W1, 8000)),
                allow(tcp(EXT, W1, 8080)),
                deny(tcp(EXT, W1, 8081)),
                allow(tcp(EXT, W1, 65535)),
                allow(tcp(EXT, W1, 1)),
                deny(tcp(EXT, W1, 0)),
                deny(tcp_from(EXT, 80, W1, 81)),
                deny(udp(EXT, W1, 80)),
            ],
        ),
        case(
            "source-ports",
            one_rule(
                "action: Allow\nprotocol: UDP\nsource:\n  ports: ['1000:2000']",
                vec![],
            ),
            vec![
                allow(udp_from(EXT, 1500, W1, 1)),
                deny(udp_from(EXT, 999, W1, 1500)),
            ],
        ),
        case(
            "not-ports",
            one_rule(
                "action: Allow\nprotocol: TCP\ndestination:\n  notPorts: [80, '90:99']",
                vec![],
            ),
            vec![
                deny(tcp(EXT, W1, 80)),
                deny(tcp(EXT, W1, 95)),
                allow(tcp(EXT, W1, 81)),
                allow(tcp(EXT, W1, 100)),
            ],
        ),
        case(
            "ports-and-not-ports",
            one_rule(
                "action: Allow\nprotocol: TCP\ndestination:\n  ports: ['80:90']\n  notPorts: [85]",
                vec![],
            ),
            vec![allow(tcp(EXT, W1, 84)), deny(tcp(EXT, W1, 85))],
        ),
        case(
            "empty-ports-any-port",
            one_rule(
                "action: Allow\nprotocol: ICMP\ndestination:\n  ports: []",
                vec![],
            ),
            vec![allow(icmp(EXT, W1, 8, 0))],
        ),
        case(
            "icmp-type-any-code",
            one_rule("action: Allow\nprotocol: ICMP\nicmp: {type: 8}", vec![]),
            vec![
                allow(icmp(EXT, W1, 8, 0)),
                allow(icmp(EXT, W1, 8, 5)),
                allow(icmp_type_only(EXT, W1, 8)),
                deny(icmp(EXT, W1, 0, 0)),
                deny(bare(EXT, W1, json!("icmp"))),
            ],
        ),
        case(
            "icmp-type-and-code",
            one_rule(
                "action: Allow\nprotocol: ICMP\nicmp: {type: 3, code: 4}",
                vec![],
            ),
            vec![
                allow(icmp(EXT, W1, 3, 4)),
                deny(icmp(EXT, W1, 3, 3)),
                deny(icmp(EXT, W1, 4, 4)),
            ],
        ),
        case(
            "not-icmp-type",
            one_rule("action: Allow\nprotocol: ICMP\nnotICMP: {type: 8}", vec![]),
            vec![
                deny(icmp(EXT, W1, 8, 0)),
                allow(icmp(EXT, W1, 0, 0)),
                deny(bare(EXT, W1, json!("icmp"))),
            ],
        ),
        case(
            "not-icmp-exact-pair",
            one_rule(
                "action: Allow\nprotocol: ICMP\nnotICMP: {type: 3, code: 4}",
                vec![],
            ),
            vec![
                deny(icmp(EXT, W1, 3, 4)),
                allow(icmp(EXT, W1, 3, 3)),
                allow(icmp(EXT, W1, 4, 4)),
            ],
        ),
        case(
            "icmpv6-type",
            one_rule("action: Allow\nprotocol: ICMPv6\nicmp: {type: 128}", vec![]),
            vec![
                allow(icmp6(EXT6, W6, 128, 0)),
                deny(icmp6(EXT6, W6, 129, 0)),
                allow(flow_line(EXT6, W6, json!("ICMPv6"), &[("icmpType", 128)])),
            ],
        ),
    ]
}

/// Entities for rule-selector cases: two labelled namespaces, pods, a non-k8s workload, a host,
/// a namespaced set and two global sets that overlap.
fn entities() -> Vec<String> {
    vec![
        namespace("a", &[("team", "x")]),
        namespace("b", &[("team", "y")]),
        wep("a", "wa", W1, &[("app", "db")], ""),
        resource(
            V3,
            "WorkloadEndpoint",
            "wa-cni",
            "namespace: a\nlabels: {app: web}",
            Some(&format!(
                "orchestrator: cni\ninterfaceName: c9\nipNetworks: ['{W4}']"
            )),
        ),
        wep("b", "wb", W2, &[("app", "web")], ""),
        hep("h", H1, &[("app", "web")], ""),
        network_set("a", "set-a", "[198.51.100.0/28]", &[("kind", "set")]),
        global_set("gset", "[198.51.100.16/28]", &[("kind", "set")]),
        global_set("gwide", "[198.51.100.0/24]", &[("kind", "wide")]),
    ]
}

const IN_SET_A: &str = "198.51.100.1";
const IN_GSET: &str = "198.51.100.17";
const IN_GWIDE_ONLY: &str = "198.51.100.100";
const NOWHERE: &str = "198.51.101.1";

fn np_source(source: &str) -> Vec<String> {
    let mut d = entities();
    d.push(np(
        "a",
        "p",
        &format!(
            "selector: app == 'db'\ningress:\n  - action: Allow\n    source:\n{}",
            indent(source, 6)
        ),
    ));
    d
}

fn gnp_source(source: &str) -> Vec<String> {
    let mut d = entities();
    d.push(gnp_rules(
        "p",
        "app == 'db'",
        "ingress",
        &[&format!("action: Allow\nsource:\n{}", indent(source, 2))],
    ));
    d
}

/// §5 positive selectors (IP-set semantics), namespace scoping, notSelector; §8 items 7–10.
fn rule_selector_cases() -> Vec<EvalCase> {
    vec![
        case(
            "np-selector-all-is-own-namespace",
            np_source("selector: all()"),
            vec![
                allow(tcp(W4, W1, 1)).by("NetworkPolicy/a/p"),
                allow(tcp(IN_SET_A, W1, 1)),
                deny(tcp(W2, W1, 1)),
                deny(tcp(H1, W1, 1)),
                deny(tcp(IN_GSET, W1, 1)),
                deny(tcp(IN_GWIDE_ONLY, W1, 1)),
                deny(tcp(NOWHERE, W1, 1)),
            ],
        ),
        case(
            "np-negated-selector-never-matches-unknown-addresses",
            np_source("selector: app != 'zzz'"),
            vec![
                allow(tcp(W4, W1, 1)),
                allow(tcp(IN_SET_A, W1, 1)),
                deny(tcp(W2, W1, 1)),
                deny(tcp(IN_GWIDE_ONLY, W1, 1)),
                deny(tcp(NOWHERE, W1, 1)),
            ],
        ),
        case(
            "np-namespace-selector-all",
            np_source("namespaceSelector: all()"),
            vec![
                allow(tcp(W2, W1, 1)),
                allow(tcp(IN_SET_A, W1, 1)),
                deny(tcp(IN_GSET, W1, 1)),
                deny(tcp(IN_GWIDE_ONLY, W1, 1)),
                deny(tcp(NOWHERE, W1, 1)),
            ],
        ),
        case(
            "np-namespace-selector-global",
            np_source("namespaceSelector: global()"),
            vec![
                deny(tcp(W2, W1, 1)),
                deny(tcp(W4, W1, 1)),
                allow(tcp(IN_GSET, W1, 1)),
                allow(tcp(IN_GWIDE_ONLY, W1, 1)),
                // In set-a and in gwide: the union decides.
                allow(tcp(IN_SET_A, W1, 1)),
                deny(tcp(NOWHERE, W1, 1)),
            ],
        ),
        case(
            "np-namespace-selector-global-and-selector",
            np_source("namespaceSelector: global()\nselector: kind == 'set'"),
            vec![
                allow(tcp(IN_GSET, W1, 1)),
                deny(tcp(IN_SET_A, W1, 1)),
                deny(tcp(IN_GWIDE_ONLY, W1, 1)),
            ],
        ),
        case(
            "np-namespace-selector-labels",
            np_source("namespaceSelector: team == 'y'\nselector: app == 'web'"),
            vec![allow(tcp(W2, W1, 1)), deny(tcp(W4, W1, 1))],
        ),
        case(
            "np-not-selector-only-is-scoped",
            np_source("notSelector: app == 'web'"),
            vec![
                deny(tcp(W4, W1, 1)),
                deny(tcp(W2, W1, 1)),
                allow(tcp(IN_SET_A, W1, 1)),
                deny(tcp(IN_GWIDE_ONLY, W1, 1)),
                deny(tcp(NOWHERE, W1, 1)),
            ],
        ),
        case(
            "gnp-not-selector-only-reaches-outside",
            gnp_source("notSelector: app == 'web'"),
            vec![
                deny(tcp(W4, W1, 1)),
                deny(tcp(W2, W1, 1)),
                allow(tcp(IN_GWIDE_ONLY, W1, 1)),
                allow(tcp(NOWHERE, W1, 1)),
            ],
        ),
        case(
            "gnp-selector-all-every-entity",
            gnp_source("selector: all()"),
            vec![
                allow(tcp(W2, W1, 1)),
                allow(tcp(IN_GWIDE_ONLY, W1, 1)),
                deny(tcp(NOWHERE, W1, 1)),
            ],
        ),
        case(
            "gnp-namespace-selector-all",
            gnp_source("namespaceSelector: all()"),
            vec![
                allow(tcp(W2, W1, 1)),
                allow(tcp(IN_SET_A, W1, 1)),
                deny(tcp(IN_GWIDE_ONLY, W1, 1)),
            ],
        ),
        case(
            "gnp-namespace-selector-global",
            gnp_source("namespaceSelector: global()"),
            vec![
                deny(tcp(W2, W1, 1)),
                allow(tcp(IN_GWIDE_ONLY, W1, 1)),
                allow(tcp(IN_SET_A, W1, 1)),
            ],
        ),
        case(
            "gnp-selector-union-of-sets",
            gnp_source("selector: kind == 'set'"),
            vec![
                allow(tcp(IN_SET_A, W1, 1)),
                allow(tcp(IN_GSET, W1, 1)),
                deny(tcp(IN_GWIDE_ONLY, W1, 1)),
            ],
        ),
        case(
            "gnp-not-selector-union-of-sets",
            gnp_source("notSelector: kind == 'wide'"),
            vec![deny(tcp(IN_SET_A, W1, 1)), allow(tcp(NOWHERE, W1, 1))],
        ),
        case(
            "set-labels",
            gnp_source(
                "selector: pcns.team == 'x' && projectcalico.org/namespace == 'a' && kind == 'set'",
            ),
            vec![allow(tcp(IN_SET_A, W1, 1)), deny(tcp(IN_GSET, W1, 1))],
        ),
        case(
            "global-set-has-no-namespace",
            gnp_source("selector: has(projectcalico.org/namespace) && kind == 'set'"),
            vec![deny(tcp(IN_GSET, W1, 1)), allow(tcp(IN_SET_A, W1, 1))],
        ),
        case(
            "destination-selector",
            {
                let mut d = entities();
                d.push(gnp_rules(
                    "p",
                    "app == 'db'",
                    "egress",
                    &["action: Allow\ndestination:\n  selector: app == 'web'"],
                ));
                d.push(gnp_rules(
                    "q",
                    "app == 'web'",
                    "ingress",
                    &["action: Allow"],
                ));
                d
            },
            vec![
                allow(tcp(W1, W2, 1)),
                allow(tcp(W1, H1, 1)),
                deny(tcp(W1, EXT, 1)).because("tier-end"),
            ],
        ),
        case(
            "service-account-names-and-selector",
            {
                let mut d = entities();
                d.push(wep(
                    "a",
                    "robot-a",
                    "192.0.2.9",
                    &[],
                    "serviceAccountName: robot\n",
                ));
                d.push(wep(
                    "b",
                    "robot-b",
                    "192.0.2.10",
                    &[],
                    "serviceAccountName: robot\n",
                ));
                d.push(np("a", "names", "selector: app == 'db'\ningress:\n  - action: Allow\n    protocol: TCP\n    source:\n      serviceAccounts:\n        names: [robot]"));
                d.push(gnp_rules("selector", "app == 'db'", "ingress", &["action: Allow\nprotocol: UDP\nsource:\n  serviceAccounts:\n    selector: projectcalico.org/name == 'robot'"]));
                d
            },
            vec![
                allow(tcp("192.0.2.9", W1, 1)).by("NetworkPolicy/a/names"),
                deny(tcp("192.0.2.10", W1, 1)),
                deny(tcp(W4, W1, 1)),
                allow(udp("192.0.2.10", W1, 1)).by(&gnp_p("selector")),
                deny(udp(W4, W1, 1)),
            ],
        ),
    ]
}

/// §5 named ports per endpoint and per protocol; §8 item 22.
fn named_port_cases() -> Vec<EvalCase> {
    let ends = || {
        vec![
            wep(
                "default",
                "wa",
                W1,
                &[("app", "web")],
                "ports:\n  - {name: http, port: 8080, protocol: TCP}\n  - {name: dns, port: 53, protocol: UDP}\n",
            ),
            wep(
                "default",
                "wb",
                W2,
                &[("app", "web")],
                "ports:\n  - {name: http, port: 8081, protocol: TCP}\n  - {name: http, port: 9090, protocol: UDP}\n",
            ),
            wep(
                "default",
                "wc",
                W3,
                &[("app", "db")],
                "ports:\n  - {name: http, port: 7070, protocol: TCP}\n",
            ),
            hep(
                "h",
                H1,
                &[("app", "web")],
                "ports:\n  - {name: http, port: 6060, protocol: TCP}\n",
            ),
        ]
    };
    let with = |selector: &str, direction: &str, body: &str| {
        let mut d = ends();
        d.push(gnp_rules("p", selector, direction, &[body]));
        d
    };
    vec![
        case(
            "named-port-no-protocol",
            with(
                "app == 'web'",
                "ingress",
                "action: Allow\ndestination:\n  ports: [http]",
            ),
            vec![
                allow(tcp(EXT, W1, 8080)),
                deny(tcp(EXT, W1, 8081)),
                allow(tcp(EXT, W2, 8081)),
                deny(tcp(EXT, W2, 8080)),
                allow(udp(EXT, W2, 9090)),
                deny(tcp(EXT, W2, 9090)),
                allow(tcp(EXT, H1, 6060)),
                deny(udp(EXT, W1, 8080)),
            ],
        ),
        case(
            "named-port-tcp-only",
            with(
                "app == 'web'",
                "ingress",
                "action: Allow\nprotocol: TCP\ndestination:\n  ports: [http, 1000]",
            ),
            vec![
                allow(tcp(EXT, W1, 8080)),
                deny(udp(EXT, W2, 9090)),
                allow(tcp(EXT, W1, 1000)),
            ],
        ),
        case(
            "named-port-udp-only",
            with(
                "app == 'web'",
                "ingress",
                "action: Allow\nprotocol: UDP\ndestination:\n  ports: [http, dns]",
            ),
            vec![
                allow(udp(EXT, W2, 9090)),
                deny(tcp(EXT, W2, 8081)),
                allow(udp(EXT, W1, 53)),
            ],
        ),
        case(
            "named-port-of-selected-endpoints-only",
            with(
                "all()",
                "egress",
                "action: Allow\ndestination:\n  selector: app == 'db'\n  ports: [http]",
            ),
            vec![
                allow(tcp(W1, W3, 7070)),
                deny(tcp(W1, W2, 8081)),
                deny(tcp(W1, W3, 8080)),
            ],
        ),
        case(
            "named-port-external-never",
            with(
                "all()",
                "egress",
                "action: Allow\ndestination:\n  ports: [http]",
            ),
            vec![
                deny(tcp(W1, EXT, 8080)),
                allow(tcp(W1, W2, 8081)),
                deny(tcp(W1, W2, 8080)),
            ],
        ),
        case(
            "named-port-source",
            with(
                "app == 'web'",
                "ingress",
                "action: Allow\nsource:\n  ports: [http]",
            ),
            vec![
                allow(tcp_from(W3, 7070, W1, 1)),
                deny(tcp_from(W3, 8080, W1, 1)),
                deny(tcp_from(EXT, 8080, W1, 1)),
            ],
        ),
        case(
            "named-not-ports",
            with(
                "app == 'web'",
                "ingress",
                "action: Allow\nprotocol: TCP\ndestination:\n  notPorts: [http]",
            ),
            vec![deny(tcp(EXT, W1, 8080)), allow(tcp(EXT, W1, 8081))],
        ),
        case(
            "named-port-without-selector-any-endpoint",
            {
                let mut d = ends();
                d.push(np("default", "p", "selector: all()\negress:\n  - action: Allow\n    destination:\n      ports: [http]"));
                d.push(gnp(
                    "open-hosts",
                    "selector: \"!has(projectcalico.org/namespace)\"\ningress:\n  - action: Allow",
                ));
                d
            },
            vec![
                allow(tcp(W1, W2, 8081)),
                allow(tcp(W1, H1, 6060)).by("NetworkPolicy/default/p"),
                deny(tcp(W1, H1, 8080)),
            ],
        ),
    ]
}

/// §7 Kubernetes NetworkPolicy conversion; §8 items 18, 19.
fn knp_cases() -> Vec<EvalCase> {
    let ends = || {
        vec![
            namespace("prod", &[("env", "prod")]),
            namespace("dev", &[("env", "dev")]),
            namespace("qa", &[]),
            wep(
                "prod",
                "p1",
                W1,
                &[("app", "db")],
                "ports:\n  - {name: pg, port: 5432, protocol: TCP}\n",
            ),
            wep("prod", "p2", W2, &[("app", "web")], ""),
            wep("dev", "d1", W3, &[("app", "web")], ""),
            resource(
                V3,
                "WorkloadEndpoint",
                "c1",
                "namespace: prod\nlabels: {app: web}",
                Some(&format!(
                    "orchestrator: cni\ninterfaceName: c9\nipNetworks: ['{W4}']"
                )),
            ),
            wep("qa", "q1", W5, &[("app", "web")], ""),
            hep("h", H1, &[("app", "web")], ""),
            network_set("prod", "s", "[198.51.100.0/25]", &[("app", "web")]),
            global_set("g", "[198.51.100.128/25]", &[("app", "web")]),
        ]
    };
    let with = |spec: &str| {
        let mut d = ends();
        d.push(knp("prod", "k", spec));
        d
    };
    let k = || "KubernetesNetworkPolicy/prod/k";
    const SET: &str = "198.51.100.5";
    const GSET: &str = "198.51.100.200";
    vec![
        case(
            "knp-default-deny-ingress",
            with("podSelector: {}\npolicyTypes: [Ingress]"),
            vec![
                deny(tcp(W2, W1, 1)).because("tier-end"),
                deny(tcp(W1, W2, 1)),
                allow(tcp(W1, EXT, 1)),
                allow(tcp(EXT, W3, 1)),
                allow(tcp(EXT, W4, 1)),
            ],
        ),
        case(
            "knp-ports-protocols",
            with(
                "podSelector: {matchLabels: {app: db}}\ningress:\n  - ports:\n    - port: 5432\n    \
                 - {protocol: UDP}\n    - {port: 7000, endPort: 7002, protocol: SCTP}",
            ),
            vec![
                allow(tcp(EXT, W1, 5432)).by(k()),
                allow(udp(EXT, W1, 5432)),
                allow(udp(EXT, W1, 1)),
                deny(tcp(EXT, W1, 1)),
                allow(ported(EXT, W1, json!("sctp"), 7000)),
                allow(ported(EXT, W1, json!("sctp"), 7002)),
                deny(ported(EXT, W1, json!("sctp"), 7003)),
                deny(icmp(EXT, W1, 8, 0)),
            ],
        ),
        case(
            "knp-named-port",
            with("podSelector: {matchLabels: {app: db}}\ningress:\n  - ports:\n    - port: pg"),
            vec![
                allow(tcp(EXT, W1, 5432)),
                deny(tcp(EXT, W1, 5433)),
                deny(udp(EXT, W1, 5432)),
            ],
        ),
        case(
            "knp-empty-ports-every-protocol",
            with("podSelector: {matchLabels: {app: db}}\ningress:\n  - ports: []"),
            vec![
                allow(icmp(EXT, W1, 8, 0)),
                allow(udp(EXT, W1, 1)),
                allow(bare(EXT, W1, json!(47))),
            ],
        ),
        case(
            "knp-empty-rule-allows-everything",
            with("podSelector: {matchLabels: {app: db}}\ningress:\n  - {}"),
            vec![
                allow(icmp(EXT, W1, 8, 0)),
                allow(tcp(W3, W1, 1)),
                allow(tcp(GSET, W1, 1)),
            ],
        ),
        case(
            "knp-pod-selector-peer-is-own-namespace-pods",
            with(
                "podSelector: {matchLabels: {app: db}}\ningress:\n  - from:\n    - podSelector: {matchLabels: {app: web}}",
            ),
            vec![
                allow(tcp(W2, W1, 1)),
                deny(tcp(W3, W1, 1)),
                deny(tcp(W4, W1, 1)),
                deny(tcp(SET, W1, 1)),
                deny(tcp(GSET, W1, 1)),
                deny(tcp(EXT, W1, 1)),
            ],
        ),
        case(
            "knp-namespace-selector-empty-is-every-pod",
            with(
                "podSelector: {matchLabels: {app: db}}\ningress:\n  - from:\n    - namespaceSelector: {}",
            ),
            vec![
                allow(tcp(W2, W1, 1)),
                allow(tcp(W3, W1, 1)),
                allow(tcp(W5, W1, 1)),
                deny(tcp(W4, W1, 1)),
                deny(tcp(SET, W1, 1)),
                deny(tcp(GSET, W1, 1)),
                deny(tcp(EXT, W1, 1)),
            ],
        ),
        case(
            "knp-namespace-and-pod-selector",
            with(
                "podSelector: {matchLabels: {app: db}}\ningress:\n  - from:\n    \
                 - namespaceSelector: {matchLabels: {env: dev}}\n      podSelector: {matchLabels: {app: web}}",
            ),
            vec![
                deny(tcp(W2, W1, 1)),
                allow(tcp(W3, W1, 1)),
                deny(tcp(W5, W1, 1)),
            ],
        ),
        case(
            "knp-peers-are-alternatives",
            with(
                "podSelector: {matchLabels: {app: db}}\ningress:\n  - from:\n    \
                 - namespaceSelector: {matchLabels: {env: dev}}\n    - podSelector: {matchLabels: {app: web}}",
            ),
            vec![
                allow(tcp(W2, W1, 1)),
                allow(tcp(W3, W1, 1)),
                deny(tcp(W5, W1, 1)),
            ],
        ),
        case(
            "knp-namespace-match-expressions",
            with(
                "podSelector: {matchLabels: {app: db}}\ningress:\n  - from:\n    - namespaceSelector:\n        \
                 matchExpressions:\n          - {key: env, operator: NotIn, values: [dev]}",
            ),
            vec![
                deny(tcp(W3, W1, 1)),
                allow(tcp(W5, W1, 1)),
                allow(tcp(W2, W1, 1)),
                deny(tcp(H1, W1, 179)),
            ],
        ),
        case(
            "knp-ip-block-and-except",
            with(
                "podSelector: {matchLabels: {app: db}}\ningress:\n  - from:\n    \
                 - ipBlock: {cidr: 192.0.2.0/24, except: [192.0.2.2/32]}\n    - ipBlock: {cidr: 198.51.100.5/25}",
            ),
            vec![
                allow(tcp(W3, W1, 1)),
                deny(tcp(W2, W1, 1)),
                allow(tcp("192.0.2.99", W1, 1)),
                allow(tcp("198.51.100.99", W1, 1)),
                deny(tcp(GSET, W1, 1)),
            ],
        ),
        case(
            "knp-match-expressions",
            with(
                "podSelector:\n  matchExpressions:\n    - {key: app, operator: Exists}\n    \
                 - {key: app, operator: In, values: [db, x]}\npolicyTypes: [Ingress]",
            ),
            vec![deny(tcp(EXT, W1, 1)), allow(tcp(EXT, W2, 1))],
        ),
        case(
            "knp-not-in-matches-missing-key",
            {
                let mut d = ends();
                d.push(wep("prod", "p5", "192.0.2.50", &[("x", "y")], ""));
                d.push(knp(
                    "prod",
                    "k",
                    "podSelector: {matchLabels: {app: db}}\ningress:\n  - from:\n    - podSelector:\n        \
                     matchExpressions:\n          - {key: app, operator: NotIn, values: [web]}\n          \
                     - {key: zz, operator: DoesNotExist}",
                ));
                d
            },
            vec![allow(tcp("192.0.2.50", W1, 1)), deny(tcp(W2, W1, 1))],
        ),
        case(
            "knp-egress-rules-without-types-isolate-ingress",
            with(
                "podSelector: {matchLabels: {app: db}}\negress:\n  - to:\n    - ipBlock: {cidr: 198.51.100.0/24}",
            ),
            vec![
                allow(tcp(W1, EXT, 1)),
                deny(tcp(W1, "198.51.101.1", 1)),
                deny(tcp(EXT, W1, 1)).because("tier-end"),
            ],
        ),
        case(
            "knp-empty-egress-without-types",
            with("podSelector: {matchLabels: {app: db}}\negress: []"),
            vec![allow(tcp(W1, "198.51.101.1", 1)), deny(tcp(EXT, W1, 1))],
        ),
        case(
            "knp-types-egress-only",
            with("podSelector: {matchLabels: {app: db}}\npolicyTypes: [Egress]\ningress:\n  - {}"),
            vec![deny(tcp(W1, "198.51.101.1", 1)), allow(tcp(EXT, W1, 1))],
        ),
        case(
            "knp-port-without-protocol-is-tcp",
            with(
                "podSelector: {matchLabels: {app: db}}\npolicyTypes: [Egress]\negress:\n  - ports:\n    - port: 53",
            ),
            vec![allow(tcp(W1, EXT, 53)), deny(udp(W1, EXT, 53))],
        ),
        case(
            "knp-other-namespace-untouched",
            with("podSelector: {}\npolicyTypes: [Ingress]"),
            vec![allow(tcp(EXT, W3, 1)), allow(tcp(EXT, W5, 1))],
        ),
        case(
            "knp-before-unordered-gnp",
            {
                let mut d = with(
                    "podSelector: {matchLabels: {app: db}}\ningress:\n  - from:\n    - podSelector: {}",
                );
                d.push(gnp("later", "selector: all()\ningress:\n  - action: Allow"));
                d
            },
            vec![
                allow(tcp(EXT, W1, 1)).by(&gnp_p("later")),
                allow(tcp(W2, W1, 1)).by(k()),
            ],
        ),
    ]
}

/// §A3 eval input: protocol names in any case or numbers, ICMP fields, malformed lines.
fn input_cases() -> Vec<EvalCase> {
    vec![case(
        "eval-input-lines",
        vec![
            wep("default", "w", W1, &[("app", "w")], ""),
            hep("h", H1, &[], ""),
            gnp_rules(
                "p",
                "app == 'w'",
                "ingress",
                &[
                    "action: Allow\nprotocol: TCP\ndestination:\n  ports: [80]",
                    "action: Allow\nprotocol: ICMP\nicmp: {type: 8, code: 0}",
                ],
            ),
        ],
        vec![
            allow(ported(EXT, W1, json!("TCP"), 80)),
            allow(ported(EXT, W1, json!("Tcp"), 80)),
            allow(ported(EXT, W1, json!(6), 80)),
            allow(ported(EXT, W1, json!("6"), 80)),
            deny(ported(EXT, W1, json!("tcp"), 81)),
            allow(icmp(EXT, W1, 8, 0)),
            allow(flow_line(
                EXT,
                W1,
                json!("ICMP"),
                &[("icmpType", 8), ("icmpCode", 0)],
            )),
            deny(icmp(EXT, W1, 8, 1)),
            deny(bare(EXT, W1, json!(0))),
            // Tolerated: fields that do not change the question.
            allow(format!(
                r#"{{"id":1,"src":"{EXT}","dst":"{W1}","protocol":"tcp","dstPort":80}}"#
            )),
            allow(format!(
                r#"{{"src":"{EXT}","dst":"{W1}","protocol":"tcp","srcPort":null,"dstPort":80,"icmpType":null}}"#
            )),
            allow(format!(
                r#"{{"src":"{EXT}","dst":"{W1}","protocol":"icmp","icmpType":8,"icmpCode":0,"dstPort":0}}"#
            )),
            allow(format!(
                r#"{{"src":"{EXT}","dst":"{H1}","protocol":"tcp","dstPort":"22"}}"#
            ))
            .at("failsafe"),
            // Malformed lines: one error line each, and the lines after them still answered.
            error("not json"),
            error(""),
            error("   "),
            error("[]"),
            error("null"),
            error("{}"),
            error(&format!(r#"{{"src":"{EXT}","dst":"{W1}"}}"#)),
            error(&format!(r#"{{"src":"{EXT}","protocol":"tcp"}}"#)),
            error(&format!(
                r#"{{"src":"not-an-ip","dst":"{W1}","protocol":"tcp"}}"#
            )),
            error(&format!(
                r#"{{"src":"{EXT}/32","dst":"{W1}","protocol":"tcp"}}"#
            )),
            error(&format!(
                r#"{{"src":"{EXT}","dst":"{W1}","protocol":"gre"}}"#
            )),
            error(&format!(r#"{{"src":"{EXT}","dst":"{W1}","protocol":256}}"#)),
            error(&format!(r#"{{"src":"{EXT}","dst":"{W1}","protocol":-1}}"#)),
            error(&format!(
                r#"{{"src":"{EXT}","dst":"{W1}","protocol":"tcp","dstPort":65536}}"#
            )),
            error(&format!(
                r#"{{"src":"{EXT}","dst":"{W1}","protocol":"tcp","dstPort":-1}}"#
            )),
            error(&format!(
                r#"{{"src":"{EXT}","dst":"{W1}","protocol":"icmp","icmpType":256}}"#
            )),
            error(&format!(
                r#"{{"src":"{EXT}","dst":"{W1}","protocol":"icmp","icmpType":8,"icmpCode":256}}"#
            )),
            error(&format!(
                "{{\"src\":\"{EXT}\",\"dst\":\"{W1}\",\"protocol\":\"tcp\",\"dstPort\":80"
            )),
            allow(tcp(EXT, W1, 80)),
            deny(tcp(EXT, "2001:db8::99", 80)).noted(),
        ],
    )]
}

/// v1 policy rules (§5 lower-case names, §6 normalised CIDRs), set CIDRs with host bits (§6),
/// and order ties between unordered tiers and between kinds of policy (§4.1, §4.2).
fn v1_set_and_tie_cases() -> Vec<EvalCase> {
    let w = || wep("default", "w", W1, &[("a", "b")], "");
    vec![
        case(
            "v1-net-normalised",
            vec![
                w(),
                v1(
                    "p",
                    "selector: a == 'b'\ningress:\n  - action: allow\n    source:\n      net: 198.51.100.5/24\n  - action: deny",
                ),
            ],
            vec![
                allow(tcp("198.51.100.99", W1, 1)).by("policy/p"),
                deny(tcp("198.51.101.1", W1, 1)).by("policy/p"),
            ],
        ),
        case(
            "v1-not-net",
            vec![
                w(),
                v1(
                    "p",
                    "selector: a == 'b'\ningress:\n  - action: allow\n    source:\n      notNet: 198.51.100.0/24",
                ),
            ],
            vec![
                deny(tcp("198.51.100.99", W1, 1)),
                allow(tcp("198.51.101.1", W1, 1)),
            ],
        ),
        case(
            "v1-lower-case-rules",
            vec![
                w(),
                v1(
                    "p",
                    "selector: a == 'b'\ningress:\n  - action: allow\n    protocol: udp\n    destination:\n      \
                     ports: ['100:200']\n  - action: log\n  - action: pass\n    protocol: tcp",
                ),
            ],
            vec![
                allow(udp(EXT, W1, 150)).by("policy/p"),
                deny(udp(EXT, W1, 250)).because("tier-end"),
                allow(tcp(EXT, W1, 250)).because("workload-allow"),
            ],
        ),
        case(
            "set-cidr-with-host-bits",
            vec![
                w(),
                global_set("g", "[198.51.100.5/24]", &[("s", "1")]),
                gnp_rules(
                    "p",
                    "a == 'b'",
                    "ingress",
                    &["action: Allow\nsource:\n  selector: s == '1'"],
                ),
            ],
            vec![
                allow(tcp("198.51.100.99", W1, 1)),
                deny(tcp("198.51.101.1", W1, 1)),
            ],
        ),
        case(
            "host-endpoint-without-addresses-owns-none",
            vec![
                v3("HostEndpoint", "h", "node: n\ninterfaceName: eth0"),
                gnp("p", "selector: all()\ningress:\n  - action: Allow"),
            ],
            vec![deny(tcp(EXT, EXT2, 1)).because("unmatched-traffic")],
        ),
        case(
            "unordered-tiers-by-name",
            vec![
                w(),
                tier("zz", ""),
                tier("aa", ""),
                gnp(
                    "pz",
                    "tier: zz\nselector: all()\ningress:\n  - action: Deny",
                ),
                gnp(
                    "pa",
                    "tier: aa\nselector: all()\ningress:\n  - action: Allow",
                ),
                gnp("pd", "selector: all()\ningress:\n  - action: Pass"),
            ],
            vec![allow(tcp(EXT, W1, 1)).by(&gnp_p("pa"))],
        ),
        case(
            "equal-order-across-kinds-by-name",
            vec![
                w(),
                np(
                    "default",
                    "b",
                    "order: 5\nselector: all()\ningress:\n  - action: Deny",
                ),
                gnp(
                    "a",
                    "order: 5\nselector: all()\ningress:\n  - action: Allow",
                ),
            ],
            vec![allow(tcp(EXT, W1, 1)).by(&gnp_p("a"))],
        ),
    ]
}

fn eval_cases() -> Vec<EvalCase> {
    let mut cases = Vec::new();
    cases.extend(default_and_failsafe_cases());
    cases.extend(label_cases());
    cases.extend(selection_cases());
    cases.extend(types_cases());
    cases.extend(ordering_cases());
    cases.extend(pass_log_profile_cases());
    cases.extend(stage_cases());
    cases.extend(rule_match_cases());
    cases.extend(rule_selector_cases());
    cases.extend(named_port_cases());
    cases.extend(knp_cases());
    cases.extend(v1_set_and_tie_cases());
    cases.extend(input_cases());
    cases
}

/// What is wrong with one answer line, if anything.
fn check_probe(probe: &Probe, line: &str) -> Option<String> {
    let Ok(reply) = serde_json::from_str::<Value>(line) else {
        return Some(format!("not JSON: {line}"));
    };
    let got = match (&reply["verdict"], &reply["error"]) {
        (Value::String(v), _) if v == "allow" => Expect::Allow,
        (Value::String(v), _) if v == "deny" => Expect::Deny,
        (_, Value::String(_)) => Expect::Error,
        _ => return Some(format!("neither a verdict nor an error: {line}")),
    };
    if got != probe.expect {
        return Some(format!("want {:?}, got {line}", probe.expect));
    }
    let trace = reply["trace"].as_array().cloned().unwrap_or_default();
    let named = |key: &str, want: &str| trace.iter().any(|t| t[key].as_str() == Some(want));
    for why in &probe.why {
        let ok = match why {
            Why::Policy(p) => named("policy", p),
            Why::Default(d) => named("default", d),
            Why::Stage(s) => named("stage", s),
            Why::Note => reply["note"].is_string(),
        };
        if !ok {
            return Some(format!("want {why:?}, got {line}"));
        }
    }
    None
}

#[test]
fn eval_table() {
    let cases = eval_cases();
    assert_unique_names("eval", cases.iter().map(|c| c.name));
    let mut rows = 0;
    let mut failures = Vec::new();
    for case in &cases {
        let dir = row_dir("eval", case.name);
        std::fs::write(dir.join("config.yaml"), docs(&case.docs)).expect("write config");
        let input: String = case
            .probes
            .iter()
            .map(|p| format!("{}\n", p.flow))
            .collect();
        let mut cmd = bin();
        cmd.arg("eval").arg("--config").arg(&dir);
        let out = run_with_stdin(cmd, &input);
        rows += case.probes.len();
        if !out.status.success() {
            failures.push(format!(
                "  {}: eval exit {:?}: {}",
                case.name,
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            ));
            continue;
        }
        let lines = stdout_lines(&out);
        if lines.len() != case.probes.len() {
            failures.push(format!(
                "  {}: {} input lines, {} answers",
                case.name,
                case.probes.len(),
                lines.len()
            ));
            continue;
        }
        for (probe, line) in case.probes.iter().zip(&lines) {
            if let Some(why) = check_probe(probe, line) {
                failures.push(format!("  {}: {}: {why}", case.name, probe.flow));
            }
        }
    }
    report("eval", rows, &failures);
}

// =============================================================================================
// §A3 command-line contract: exit codes and output shapes.

struct CliRow {
    name: &'static str,
    args: Vec<String>,
    stdin: String,
    code: i32,
    /// Exact stdout lines, when they are part of the contract.
    stdout: Option<Vec<String>>,
    /// A fragment stderr must hold.
    stderr: Option<&'static str>,
}

fn cli(name: &'static str, args: &[&str], code: i32) -> CliRow {
    CliRow {
        name,
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        stdin: String::new(),
        code,
        stdout: None,
        stderr: None,
    }
}

impl CliRow {
    fn prints(mut self, lines: &[&str]) -> CliRow {
        self.stdout = Some(lines.iter().map(|l| (*l).to_owned()).collect());
        self
    }

    fn complains(mut self, fragment: &'static str) -> CliRow {
        self.stderr = Some(fragment);
        self
    }

    fn fed(mut self, stdin: &str) -> CliRow {
        self.stdin = stdin.to_owned();
        self
    }
}

fn cli_rows(valid: &Path, invalid: &Path, flows: &Path) -> Vec<CliRow> {
    let valid = valid.to_str().unwrap();
    let invalid = invalid.to_str().unwrap();
    let flows = flows.to_str().unwrap();
    vec![
        cli(
            "selector-true",
            &["selector", "role == 'db'", "--labels", "role=db"],
            0,
        )
        .prints(&["true"]),
        cli(
            "selector-false",
            &["selector", "role == 'db'", "--labels", "role=web"],
            0,
        )
        .prints(&["false"]),
        cli("selector-no-labels", &["selector", "role != 'db'"], 0).prints(&["true"]),
        cli("selector-global", &["selector", "global()"], 0).prints(&["true"]),
        cli(
            "selector-several-labels",
            &["selector", "a == 'x' && has(b)", "--labels", "a=x,b="],
            0,
        )
        .prints(&["true"]),
        cli("selector-parse-error", &["selector", "role = 'db'"], 2)
            .prints(&["invalid selector: a single '=' is not an operator (did you mean '=='?) at position 5"])
            .complains("position 5"),
        cli("selector-unterminated", &["selector", "a == 'x"], 2).complains("position"),
        cli("selector-trailing-newline", &["selector", "a == 'x'\n"], 2).complains("position"),
        cli("selector-batch-blank-lines", &["selector", "--batch"], 0)
            .fed("{\"selector\":\"all()\",\"labels\":{}}\n\n{\"selector\":\"has(a)\"}\n")
            .prints(&[
                r#"{"match":true}"#,
                r#"{"error":"malformed JSON: EOF while parsing a value at line 1 column 0"}"#,
                r#"{"match":false}"#,
            ]),
        cli("validate-valid", &["validate", valid], 0).prints(&[]),
        cli("validate-invalid", &["validate", invalid], 1),
        cli(
            "validate-missing-directory",
            &["validate", "/nonexistent/portcullis/dir"],
            1,
        ),
        cli(
            "eval-refuses-invalid-config",
            &["eval", "--config", invalid],
            1,
        )
        .fed(&format!("{}\n", tcp(EXT, W1, 80)))
        .prints(&[]),
        cli(
            "eval-flows-file",
            &["eval", "--config", valid, "--flows", flows],
            0,
        ),
        cli(
            "eval-missing-flows-file",
            &["eval", "--config", valid, "--flows", "/nonexistent/flows"],
            1,
        ),
    ]
}

#[test]
fn cli_contract() {
    let valid = row_dir("cli", "valid");
    std::fs::write(valid.join("a.yaml"), wep("default", "w", W1, &[], "")).unwrap();
    let invalid = row_dir("cli", "invalid");
    std::fs::write(invalid.join("a.yaml"), rule("action: allow")).unwrap();
    let flows = valid.join("flows.jsonl");
    std::fs::write(
        &flows,
        format!("{}\n{}\n", tcp(EXT, W1, 80), tcp(EXT, EXT2, 80)),
    )
    .unwrap();
    let rows = cli_rows(&valid, &invalid, &flows);
    assert_unique_names("cli", rows.iter().map(|r| r.name));
    let mut failures = Vec::new();
    for row in &rows {
        let mut cmd = bin();
        cmd.args(&row.args);
        let out = run_with_stdin(cmd, &row.stdin);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines = stdout_lines(&out);
        let mut why = Vec::new();
        if out.status.code() != Some(row.code) {
            why.push(format!("exit {:?}, want {}", out.status.code(), row.code));
        }
        if let Some(want) = &row.stdout
            && &lines != want
        {
            why.push(format!("stdout {lines:?}, want {want:?}"));
        }
        if let Some(fragment) = row.stderr
            && !stderr.contains(fragment)
        {
            why.push(format!("stderr {stderr:?} lacks {fragment:?}"));
        }
        if !why.is_empty() {
            failures.push(format!("  {}: {}", row.name, why.join("; ")));
        }
    }
    report("cli", rows.len(), &failures);
}

/// The eval answers for a flows file are the same as for the same lines on stdin, and the
/// invalid directory's problem line has the contract's shape.
#[test]
fn eval_file_and_stdin_agree_and_problem_lines_have_the_format() {
    let dir = row_dir("cli", "agree");
    std::fs::write(dir.join("a.yaml"), wep("default", "w", W1, &[], "")).unwrap();
    let input = format!("{}\n{}\nnot json\n", tcp(EXT, W1, 80), tcp(EXT, EXT2, 80));
    let flows = dir.join("flows.jsonl");
    std::fs::write(&flows, &input).unwrap();
    let from_file = bin()
        .arg("eval")
        .arg("--config")
        .arg(&dir)
        .arg("--flows")
        .arg(&flows)
        .output()
        .unwrap();
    let mut cmd = bin();
    cmd.arg("eval").arg("--config").arg(&dir);
    let from_stdin = run_with_stdin(cmd, &input);
    assert_eq!(stdout_lines(&from_file), stdout_lines(&from_stdin));
    assert_eq!(stdout_lines(&from_file).len(), 3);

    let bad = row_dir("cli", "problem-format");
    std::fs::write(
        bad.join("policy.yaml"),
        np("shop", "web", "ingress:\n  - action: allow"),
    )
    .unwrap();
    let out = bin().arg("validate").arg(&bad).output().unwrap();
    let lines = stdout_lines(&out);
    let file = bad.join("policy.yaml");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(lines.len(), 1, "{lines:?}");
    let prefix = format!(
        "{}:8: NetworkPolicy/web: spec.ingress[0].action: ",
        file.display()
    );
    assert!(
        lines[0].starts_with(&prefix),
        "{:?} does not start with {prefix:?}",
        lines[0]
    );
}
