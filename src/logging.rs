//! The gateway's log: `tracing` events to standard error, as text or JSON lines.
//!
//! ```text
//!  tracing::info!/warn!/error! (control threads; Log-action lines, rate-limited upstream)
//!     └─► level filter (reloadable) ─► fmt layer: text | JSON ─► stderr
//! ```
//!
//! The level comes from `--log-severity` when given; else from the settings
//! (`logSeverityScreen` in FelixConfiguration, `PORTCULLIS_LOG_SEVERITY_SCREEN`), applied
//! after each successful load, so that a reload can turn debugging on and off. Before the
//! first load the level is Info.

use std::io::IsTerminal;
use std::str::FromStr;

use tracing::level_filters::LevelFilter;

use crate::pipeline::LogSink;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, Registry, fmt, reload};

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields.message`, other fields).
    Json,
}

/// A log severity: Calico's names (`Debug`, `Info`, `Warning`, `Error`, `Fatal`), any case;
/// `warn` and `trace` too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Severity(LevelFilter);

impl FromStr for Severity {
    type Err = String;

    fn from_str(text: &str) -> Result<Severity, String> {
        let level = match text.to_ascii_lowercase().as_str() {
            "trace" => LevelFilter::TRACE,
            "debug" => LevelFilter::DEBUG,
            "info" => LevelFilter::INFO,
            "warning" | "warn" => LevelFilter::WARN,
            // Fatal events do not exist in tracing; they are logged as errors.
            "error" | "fatal" => LevelFilter::ERROR,
            "none" | "off" => LevelFilter::OFF,
            _ => {
                return Err(format!(
                    "{text:?} is not a log severity: use Debug, Info, Warning, Error or Fatal"
                ));
            }
        };
        Ok(Severity(level))
    }
}

impl Severity {
    pub const INFO: Severity = Severity(LevelFilter::INFO);

    pub fn level(self) -> LevelFilter {
        self.0
    }
}

/// Log-action lines (already formatted and rate-limited by the pipeline) as Info events
/// with target `portcullis::policy_log`, so they share the log's format and destination.
/// Formatting the event allocates; the rate limit bounds how often that happens.
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingSink;

impl LogSink for TracingSink {
    fn write_line(&self, line: &str) {
        tracing::info!(target: "portcullis::policy_log", "{line}");
    }
}

/// Why the log could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("cannot install the log subscriber: {0}")]
    Install(#[from] tracing::subscriber::SetGlobalDefaultError),
}

/// The installed log: lets the settings change the level after each load.
#[derive(Debug)]
pub struct Logging {
    filter: reload::Handle<LevelFilter, Registry>,
    /// Set from the command line: settings do not override it.
    fixed: bool,
}

impl Logging {
    /// Install the process-wide subscriber. `severity` from the command line fixes the level;
    /// without it the level is Info until [`Logging::apply_setting`].
    pub fn init(format: LogFormat, severity: Option<Severity>) -> Result<Logging, LoggingError> {
        let ansi = std::io::stderr().is_terminal();
        let (subscriber, filter) = build_subscriber(format, severity, std::io::stderr, ansi);
        tracing::subscriber::set_global_default(subscriber)?;
        Ok(Logging {
            filter,
            fixed: severity.is_some(),
        })
    }

    /// Apply `logSeverityScreen` from freshly loaded settings, unless the command line fixed
    /// the level. The settings were validated, so an unknown name cannot come here; if one
    /// did, the level stays.
    pub fn apply_setting(&self, setting: &str) {
        if self.fixed {
            return;
        }
        if let Ok(severity) = setting.parse::<Severity>() {
            let _ = self.filter.modify(|level| *level = severity.level());
        }
    }

    /// The level in force.
    pub fn level(&self) -> Option<LevelFilter> {
        self.filter.clone_current()
    }
}

type Filtered = tracing_subscriber::layer::Layered<reload::Layer<LevelFilter, Registry>, Registry>;
type Output = Box<dyn Layer<Filtered> + Send + Sync>;

/// The subscriber, writing with `writer`; separate from [`Logging::init`] so tests can
/// capture the output.
fn build_subscriber<W>(
    format: LogFormat,
    severity: Option<Severity>,
    writer: W,
    ansi: bool,
) -> (
    tracing_subscriber::layer::Layered<Output, Filtered>,
    reload::Handle<LevelFilter, Registry>,
)
where
    W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let level = severity.unwrap_or(Severity::INFO).level();
    let (filter, handle) = reload::Layer::new(level);
    let output: Output = match format {
        LogFormat::Text => Box::new(fmt::layer().with_writer(writer).with_ansi(ansi)),
        LogFormat::Json => Box::new(
            fmt::layer()
                .json()
                .with_writer(writer)
                .with_current_span(false)
                .with_span_list(false),
        ),
    };
    (Registry::default().with(filter).with(output), handle)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> fmt::MakeWriter<'w> for Capture {
        type Writer = Capture;
        fn make_writer(&'w self) -> Capture {
            self.clone()
        }
    }

    impl Capture {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn log_action_lines_go_through_the_subscriber() {
        let capture = Capture::default();
        let (subscriber, _) = build_subscriber(LogFormat::Json, None, capture.clone(), false);
        tracing::subscriber::with_default(subscriber, || {
            TracingSink.write_line("policy-log generation=1 tier=default");
        });
        let value: serde_json::Value = serde_json::from_str(capture.text().trim()).unwrap();
        assert_eq!(value["target"], "portcullis::policy_log");
        assert_eq!(
            value["fields"]["message"],
            "policy-log generation=1 tier=default"
        );
    }

    #[test]
    fn severities_parse() {
        let cases = [
            ("Debug", Some(LevelFilter::DEBUG)),
            ("info", Some(LevelFilter::INFO)),
            ("Warning", Some(LevelFilter::WARN)),
            ("WARN", Some(LevelFilter::WARN)),
            ("Error", Some(LevelFilter::ERROR)),
            ("Fatal", Some(LevelFilter::ERROR)),
            ("verbose", None),
        ];
        for (text, expected) in cases {
            assert_eq!(
                text.parse::<Severity>().ok().map(Severity::level),
                expected,
                "{text}"
            );
        }
    }

    #[test]
    fn text_lines_carry_level_message_and_fields() {
        let capture = Capture::default();
        let (subscriber, _) = build_subscriber(LogFormat::Text, None, capture.clone(), false);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(generation = 3, "reload published");
            tracing::debug!("not shown at Info");
        });
        let text = capture.text();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains(" INFO "), "{text}");
        assert!(text.contains("reload published generation=3"), "{text}");
    }

    #[test]
    fn json_lines_are_objects_with_fields() {
        let capture = Capture::default();
        let (subscriber, _) = build_subscriber(LogFormat::Json, None, capture.clone(), false);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(file = "a.yaml", line = 4, "problem");
        });
        let text = capture.text();
        let value: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(value["level"], "WARN");
        assert_eq!(value["fields"]["message"], "problem");
        assert_eq!(value["fields"]["file"], "a.yaml");
        assert_eq!(value["fields"]["line"], 4);
        assert!(value["timestamp"].is_string(), "{text}");
    }

    #[test]
    fn the_level_follows_the_setting_unless_fixed() {
        let capture = Capture::default();
        let (subscriber, handle) = build_subscriber(LogFormat::Text, None, capture.clone(), false);
        let logging = Logging {
            filter: handle,
            fixed: false,
        };
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!("hidden");
            logging.apply_setting("Debug");
            tracing::debug!("shown");
            // The handle reaches the level only while the subscriber lives.
            assert_eq!(logging.level(), Some(LevelFilter::DEBUG));
        });
        let text = capture.text();
        assert!(!text.contains("hidden") && text.contains("shown"), "{text}");

        let (_subscriber, handle) = build_subscriber(
            LogFormat::Text,
            Some(Severity::INFO),
            Capture::default(),
            false,
        );
        let fixed = Logging {
            filter: handle,
            fixed: true,
        };
        fixed.apply_setting("Debug");
        assert_eq!(fixed.level(), Some(LevelFilter::INFO));
    }
}
