//! The gateway's log lines, as `tracing` events: [`crate::logging`] writes them to standard
//! error as text or JSON, at the level the settings ask for, apart from the final counters on
//! standard output. Control threads only: nothing here runs per packet.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warning,
    Error,
}

/// One event; the subscriber writes it as one whole line.
pub fn write(level: Level, message: fmt::Arguments<'_>) {
    match level {
        Level::Info => tracing::info!("{message}"),
        Level::Warning => tracing::warn!("{message}"),
        Level::Error => tracing::error!("{message}"),
    }
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
