//! The subcommands: `run`, `validate`, `eval`, `explain`, `selector`, `status`.
//!
//! Exit codes: 0 success (for `run`: stopped by SIGTERM/SIGINT); 1 the configuration is
//! invalid, an input file could not be read, the gateway could not open or keep its ports, or
//! (`status`) no gateway answered;
//! 2 bad usage or a selector that does not parse.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::admin::{self, AdminListen};
use crate::compile;
use crate::dataplane::affinity::FifoPriority;
use crate::gateway::{self, BackendChoice, BackendKind, RunConfig};
use crate::logging::{LogFormat, Severity};
use crate::model::{self, Limits, Model, Problem};
use crate::policy::eval::{TraceEntry, TraceSide};
use crate::policy::{self, Decision, Flow};
use crate::selector::{self, Selector};

#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Bump-in-the-wire packet-filtering gateway enforcing Calico network policy",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway: forward frames between --outside and --inside, enforcing the policy
    /// of --config. Refuses to start on an invalid directory (prints every problem, exits 1).
    /// SIGHUP reloads the directory; SIGTERM/SIGINT stop, print the final counters, exit 0.
    Run(RunArgs),
    /// Load and validate a policy directory; print one line per problem as
    /// `FILE:LINE: KIND/NAME: FIELD: message`; exit 0 when valid, 1 otherwise.
    Validate {
        /// The policy directory (every *.yaml / *.yml file in it).
        dir: PathBuf,
    },
    /// Decide flows given as JSON lines; write one JSON verdict line per flow.
    Eval(EvalArgs),
    /// Explain the decision for one flow: every tier, policy and rule considered, and why.
    Explain(ExplainArgs),
    /// Evaluate a label selector against labels (or JSON lines with --batch).
    Selector(SelectorArgs),
    /// Ask a running gateway for its state (GET /status of its admin listener): policy
    /// generation, last reload, ports and backend, conntrack use, top rules by hits.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// The gateway's admin listener, HOST:PORT.
    #[arg(long, value_name = "ADDR", default_value = admin::DEFAULT_ADMIN)]
    admin: String,
    /// Print the JSON as the gateway sent it instead of the summary.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The policy directory (every *.yaml / *.yml file in it).
    #[arg(long)]
    config: PathBuf,
    /// The port facing the untrusted network.
    #[arg(long, value_name = "IF")]
    outside: String,
    /// The port facing the protected hosts.
    #[arg(long, value_name = "IF")]
    inside: String,
    /// How frames are moved [default: afxdp, falling back to afpacket with a warning when
    /// AF_XDP cannot run here; given explicitly, the backend must work or portcullis exits].
    #[arg(long, value_enum)]
    backend: Option<BackendKind>,
    /// Worker threads, one per queue of each port, each pinned to a CPU core.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: u16,
    /// Run the worker threads (only them) at real-time priority SCHED_FIFO PRIORITY (1-99),
    /// for when the ports' receive work runs in real-time threads on the workers' cores
    /// (threaded NAPI at SCHED_FIFO): the same priority lets a worker drain its rings before
    /// they take the core again. Needs CAP_SYS_NICE or RLIMIT_RTPRIO; refused, portcullis
    /// exits [default: the normal policy].
    #[arg(long, value_name = "PRIORITY")]
    worker_fifo: Option<FifoPriority>,
    /// Address of the admin HTTP listener (/metrics, /liveness, /readiness, /status) as
    /// HOST:PORT, or `off` [default: the settings' prometheusMetricsHost and
    /// prometheusMetricsPort, 127.0.0.1:9091].
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<AdminListen>,
    /// Log lines on standard error as readable text or as JSON objects.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log level: Debug, Info, Warning, Error or Fatal [default: the settings'
    /// logSeverityScreen, Info; following it across reloads].
    #[arg(long, value_name = "SEVERITY")]
    log_severity: Option<Severity>,
}

#[derive(Debug, Args)]
struct EvalArgs {
    /// The policy directory.
    #[arg(long)]
    config: PathBuf,
    /// File of flow JSON lines (default: standard input), e.g.
    /// {"src":"198.51.100.10","dst":"203.0.113.5","protocol":"tcp","srcPort":40000,"dstPort":6379}
    #[arg(long)]
    flows: Option<PathBuf>,
    /// Output format: one JSON line per flow, or one readable line per flow.
    #[arg(long, value_enum, default_value_t = OutputFormat::Json)]
    output: OutputFormat,
    /// Decide with the slow reference evaluator instead of the compiled snapshot the
    /// gateway uses (both give the same answers; this is for cross-checking).
    #[arg(long)]
    reference: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OutputFormat {
    Json,
    Text,
}

#[derive(Debug, Args)]
struct ExplainArgs {
    /// The policy directory.
    #[arg(long)]
    config: PathBuf,
    /// Source address.
    #[arg(long)]
    src: IpAddr,
    /// Destination address.
    #[arg(long)]
    dst: IpAddr,
    /// Protocol name (tcp, udp, icmp, icmpv6, sctp, udplite; any case) or number.
    #[arg(long)]
    protocol: String,
    #[arg(long)]
    src_port: Option<u16>,
    #[arg(long)]
    dst_port: Option<u16>,
    #[arg(long)]
    icmp_type: Option<u8>,
    #[arg(long)]
    icmp_code: Option<u8>,
}

#[derive(Debug, Args)]
struct SelectorArgs {
    /// The selector expression, e.g. "role == 'db' && has(tier)".
    #[arg(required_unless_present = "batch", conflicts_with = "batch")]
    expr: Option<String>,
    /// Labels as k=v,k2=v2 (empty for none).
    #[arg(long, default_value = "", conflicts_with = "batch")]
    labels: String,
    /// Read {"selector":...,"labels":{...}} JSON lines from standard input; write
    /// {"match":true|false} or {"error":...} per line.
    #[arg(long)]
    batch: bool,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => Ok(gateway::run(&run_config(args))),
        Command::Validate { dir } => run_validate(&dir),
        Command::Eval(args) => run_eval(&args),
        Command::Explain(args) => run_explain(&args),
        Command::Selector(args) => run_selector(&args),
        Command::Status(args) => run_status(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("portcullis: {err}");
            ExitCode::from(1)
        }
    }
}

fn run_config(args: RunArgs) -> RunConfig {
    RunConfig {
        config_dir: args.config,
        outside: args.outside,
        inside: args.inside,
        backend: match args.backend {
            Some(kind) => BackendChoice::Explicit(kind),
            None => BackendChoice::Default,
        },
        workers: usize::from(args.workers),
        worker_fifo: args.worker_fifo,
        admin_listen: args.admin_listen,
        log_format: args.log_format,
        log_severity: args.log_severity,
    }
}

fn run_status(args: &StatusArgs) -> io::Result<ExitCode> {
    let addr = match args.admin.parse::<AdminListen>() {
        Ok(AdminListen::At(addr)) => addr,
        Ok(AdminListen::Off) => {
            eprintln!("portcullis: status needs an admin listener address, not off");
            return Ok(ExitCode::from(2));
        }
        Err(message) => {
            eprintln!("portcullis: {message}");
            return Ok(ExitCode::from(2));
        }
    };
    match admin::fetch_status(addr) {
        Ok(status) => {
            let text = if args.json {
                status.to_json() + "\n"
            } else {
                status.summary(std::time::SystemTime::now())
            };
            io::stdout().lock().write_all(text.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprintln!("portcullis: {err}");
            Ok(ExitCode::from(1))
        }
    }
}

fn run_validate(dir: &Path) -> io::Result<ExitCode> {
    match model::load_model(dir, &Limits::default()) {
        Ok(model) => {
            eprintln!(
                "{}: valid ({} resources)",
                dir.display(),
                model.resources.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            let mut out = BufWriter::new(io::stdout().lock());
            for problem in &problems {
                writeln!(out, "{problem}")?;
            }
            out.flush()?;
            eprintln!("{}: {} problem(s)", dir.display(), problems.len());
            Ok(ExitCode::from(1))
        }
    }
}

/// Load a directory for `eval`/`explain`, printing every problem when it is invalid.
fn load_or_report(dir: &Path) -> Result<Model, ExitCode> {
    model::load_model(dir, &Limits::default()).map_err(|problems| {
        report_invalid(dir, &problems);
        ExitCode::from(1)
    })
}

fn report_invalid(dir: &Path, problems: &[Problem]) {
    for problem in problems {
        eprintln!("{problem}");
    }
    eprintln!(
        "portcullis: refusing to evaluate: {} has {} problem(s)",
        dir.display(),
        problems.len()
    );
}

fn run_eval(args: &EvalArgs) -> io::Result<ExitCode> {
    let model = match load_or_report(&args.config) {
        Ok(model) => model,
        Err(code) => return Ok(code),
    };
    let resolved = match resolve_or_report(&args.config, &model) {
        Ok(resolved) => resolved,
        Err(code) => return Ok(code),
    };
    let input: Box<dyn Read> = match &args.flows {
        Some(path) => Box::new(std::fs::File::open(path).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display()))
        })?),
        None => Box::new(io::stdin()),
    };
    // The compiled snapshot is what the dataplane decides with, so eval answers with it too.
    let snapshot = (!args.reference).then(|| compile::compile(&resolved, 1));
    let output = args.output;
    for_each_line(input, |line| match Flow::from_json_line(line) {
        Ok(flow) => {
            let decision = match &snapshot {
                Some(snapshot) => compile::evaluate(snapshot, &flow),
                None => policy::evaluate(&resolved, &flow),
            };
            match output {
                OutputFormat::Json => decision.to_json_line(),
                OutputFormat::Text => decision_text(&flow, &decision),
            }
        }
        Err(message) => match output {
            OutputFormat::Json => error_line(&message),
            OutputFormat::Text => format!("error  {message}"),
        },
    })?;
    Ok(ExitCode::SUCCESS)
}

fn run_explain(args: &ExplainArgs) -> io::Result<ExitCode> {
    let flow = match explain_flow(args) {
        Ok(flow) => flow,
        Err(message) => {
            eprintln!("portcullis: {message}");
            return Ok(ExitCode::from(2));
        }
    };
    let model = match load_or_report(&args.config) {
        Ok(model) => model,
        Err(code) => return Ok(code),
    };
    let resolved = match resolve_or_report(&args.config, &model) {
        Ok(resolved) => resolved,
        Err(code) => return Ok(code),
    };
    let mut out = io::stdout().lock();
    write!(out, "{}", policy::explain(&resolved, &flow))?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The flow named by `explain`'s flags, checked exactly as an `eval` input line is.
fn explain_flow(args: &ExplainArgs) -> Result<Flow, String> {
    let mut object = serde_json::Map::new();
    object.insert("src".into(), args.src.to_string().into());
    object.insert("dst".into(), args.dst.to_string().into());
    let protocol = match args.protocol.parse::<u64>() {
        Ok(number) => serde_json::Value::from(number),
        Err(_) => serde_json::Value::from(args.protocol.as_str()),
    };
    object.insert("protocol".into(), protocol);
    let numbers = [
        ("srcPort", args.src_port.map(u64::from)),
        ("dstPort", args.dst_port.map(u64::from)),
        ("icmpType", args.icmp_type.map(u64::from)),
        ("icmpCode", args.icmp_code.map(u64::from)),
    ];
    for (name, value) in numbers {
        if let Some(value) = value {
            object.insert(name.into(), value.into());
        }
    }
    Flow::from_json_line(&serde_json::Value::Object(object).to_string())
}

/// One readable line for `eval --output text`:
/// `deny   tcp 198.51.100.201:40000 -> 203.0.113.10:80   ingress HostEndpoint/web-1: ...`.
fn decision_text(flow: &Flow, decision: &Decision) -> String {
    let sides: Vec<String> = decision.trace.iter().map(trace_entry_text).collect();
    let mut line = format!(
        "{:<6} {:<50} {}",
        decision.verdict.name(),
        flow.to_string(),
        sides.join("; ")
    );
    if let Some(note) = &decision.note {
        line.push_str(&format!(" ({note})"));
    }
    line
}

fn trace_entry_text(entry: &TraceEntry) -> String {
    let side = match entry.side {
        TraceSide::Ingress => "ingress",
        TraceSide::Egress => "egress",
        TraceSide::None => "no endpoint",
    };
    let what = match (&entry.policy, entry.rule, &entry.default) {
        (Some(policy), Some(rule), _) => {
            let tier = entry
                .tier
                .as_deref()
                .map(|t| format!("tier {t}, "))
                .unwrap_or_default();
            format!(
                "{} by {policy} rule {rule} ({tier}{})",
                entry.action.name(),
                stage_text(entry)
            )
        }
        (_, _, Some(default)) => format!(
            "{} by default: {}",
            entry.action.name(),
            default_text(*default)
        ),
        _ => entry.action.name().to_owned(),
    };
    let logged = if entry.logged.is_empty() {
        String::new()
    } else {
        format!(", logged by {} rule(s)", entry.logged.len())
    };
    match entry.endpoint.as_deref() {
        Some(endpoint) => format!("{side} {endpoint}: {what}{logged}"),
        None => format!("{side}: {what}{logged}"),
    }
}

fn stage_text(entry: &TraceEntry) -> String {
    serde_json::to_value(entry.stage)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn default_text(default: policy::eval::DefaultReason) -> String {
    serde_json::to_value(default)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Resolve a validated model, printing the problems if that fails (it should not).
fn resolve_or_report(dir: &Path, model: &Model) -> Result<policy::Resolved, ExitCode> {
    policy::resolve(model).map_err(|problems| {
        report_invalid(dir, &problems);
        ExitCode::from(1)
    })
}

fn run_selector(args: &SelectorArgs) -> io::Result<ExitCode> {
    if args.batch {
        for_each_line(io::stdin(), selector::batch_line)?;
        return Ok(ExitCode::SUCCESS);
    }
    let Some(expr) = args.expr.as_deref() else {
        eprintln!("portcullis: a selector expression is required (or --batch)");
        return Ok(ExitCode::from(2));
    };
    let labels = match parse_labels(&args.labels) {
        Ok(labels) => labels,
        Err(message) => {
            eprintln!("portcullis: --labels: {message}");
            return Ok(ExitCode::from(2));
        }
    };
    match Selector::parse(expr) {
        Ok(sel) => {
            println!("{}", sel.matches(&labels));
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            // The answer goes where `true`/`false` would have gone (SPEC A3: "prints true/false
            // or the parse error with its position"), and to stderr as every error does.
            println!("invalid selector: {err}");
            eprintln!("portcullis: invalid selector: {err}");
            Ok(ExitCode::from(2))
        }
    }
}

/// Parse `k=v,k2=v2` into a label map. A value may contain `=`; keys may not be empty.
fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for pair in text.split(',').filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(format!("{pair:?} is not of the form key=value"));
        };
        if key.is_empty() {
            return Err(format!("{pair:?} has an empty key"));
        }
        labels.insert(key.to_owned(), value.to_owned());
    }
    Ok(labels)
}

fn error_line(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

/// Answer each input line with exactly one output line, so that answers pair with questions
/// by position: a blank line is malformed input like any other and gets an error line. Output
/// is flushed whenever no more input is already buffered, so a caller that writes one line and
/// waits for the answer is served at once, while bulk input is still written in large blocks.
fn for_each_line(input: impl Read, mut answer: impl FnMut(&str) -> String) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(64 * 1024, input);
    let mut out = BufWriter::new(io::stdout().lock());
    let mut raw = Vec::new();
    loop {
        raw.clear();
        if reader.read_until(b'\n', &mut raw)? == 0 {
            break;
        }
        let reply = match std::str::from_utf8(&raw) {
            Ok(text) => answer(text.trim_end_matches(['\n', '\r'])),
            Err(_) => error_line("input line is not valid UTF-8"),
        };
        writeln!(out, "{reply}")?;
        if reader.buffer().is_empty() {
            out.flush()?;
        }
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_pairs_and_keep_equals_in_values() {
        let labels = parse_labels("role=db,expr=a=b").unwrap();
        assert_eq!(labels.get("role").map(String::as_str), Some("db"));
        assert_eq!(labels.get("expr").map(String::as_str), Some("a=b"));
        assert!(parse_labels("").unwrap().is_empty());
    }

    #[test]
    fn labels_reject_missing_equals_and_empty_key() {
        assert!(parse_labels("role").is_err());
        assert!(parse_labels("=x").is_err());
    }
}
