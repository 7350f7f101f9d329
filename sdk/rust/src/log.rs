//! Log lines the host writes under the plugin's name (WIT `log`).

use crate::__bindings::log as wit;
pub use crate::__bindings::log::Level;

/// Logs `message` at `level`.
pub fn log(level: Level, message: &str) {
    wit::log(level, message);
}

pub fn trace(message: &str) {
    wit::log(Level::Trace, message);
}

pub fn debug(message: &str) {
    wit::log(Level::Debug, message);
}

pub fn info(message: &str) {
    wit::log(Level::Info, message);
}

pub fn warn(message: &str) {
    wit::log(Level::Warn, message);
}

pub fn error(message: &str) {
    wit::log(Level::Error, message);
}
