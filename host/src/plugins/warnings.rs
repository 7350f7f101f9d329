//! The last warning each plugin logged (through its `log` import), kept by
//! plugin name across versions so that `GET /plugins` can show it: a
//! plugin that says once that something is wrong is still heard after the
//! log line scrolled away.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::store::now_ms;

/// A plugin's latest warning, as `GET /plugins` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Warning {
    pub message: String,
    pub at_ms: i64,
    /// Warnings the plugin logged since the host started.
    pub count: u64,
}

/// Warnings by plugin name.
#[derive(Debug, Default)]
pub struct Warnings(Mutex<HashMap<String, Warning>>);

impl Warnings {
    pub fn note(&self, plugin: &str, message: &str) {
        // A panic elsewhere cannot leave a map of plain values inconsistent.
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(plugin.to_owned()).or_insert_with(|| Warning {
            message: String::new(),
            at_ms: 0,
            count: 0,
        });
        message.clone_into(&mut entry.message);
        entry.at_ms = now_ms();
        entry.count += 1;
    }

    pub fn last(&self, plugin: &str) -> Option<Warning> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(plugin)
            .cloned()
    }
}
