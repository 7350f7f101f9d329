//! The settings the host's configuration gives a producer
//! (`--plugin-setting <plugin>.<key>=<value>`; WIT `settings`).

use crate::__bindings::producer::switchyard::plugin::settings as wit;

/// The value of setting `key`, if configured.
pub fn get(key: &str) -> Option<String> {
    wit::get(key)
}
