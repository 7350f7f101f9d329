//! The plugin author's loop: `switchyard plugin build` ([`build`]: the
//! right toolchain, one `.wasm`), `plugin test` ([`test_run`]: a transcript
//! of events through a plugin file, offline, on a [`scratch`] store) and
//! `plugin record` ([`record`]: live events off the broker as a
//! transcript); the transcript format itself is [`transcript`].
//!
//! Everything here runs a plugin through the same engine and batch core as
//! the host; nothing here is used by a running host.

pub mod build;
pub mod bundle;
pub mod record;
pub mod scaffold;
pub mod scratch;
pub mod test_run;
pub mod transcript;
