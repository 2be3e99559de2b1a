//! The gateway's log lines: plain text on standard error, one line per event, each starting
//! with `portcullis: LEVEL:` so that they are easy to grep and to tell from the final counters
//! on standard output. Control threads only: nothing here runs per packet.

use std::fmt;
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warning,
    Error,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

/// Writes one whole line; a line is never interleaved with another thread's.
pub fn write(level: Level, message: fmt::Arguments<'_>) {
    let line = format!("portcullis: {}: {message}\n", level.name());
    // Nowhere to report a failed write to standard error; the gateway keeps running.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

macro_rules! info {
    ($($arg:tt)*) => { $crate::gateway::log::write($crate::gateway::log::Level::Info, format_args!($($arg)*)) };
}
macro_rules! warning {
    ($($arg:tt)*) => { $crate::gateway::log::write($crate::gateway::log::Level::Warning, format_args!($($arg)*)) };
}
macro_rules! error {
    ($($arg:tt)*) => { $crate::gateway::log::write($crate::gateway::log::Level::Error, format_args!($($arg)*)) };
}

pub(crate) use {error, info, warning};
