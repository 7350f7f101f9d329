//! The plugin author's loop, behind `switchyard plugin test` (run a
//! transcript of events through a plugin file, offline); the transcript
//! format itself is [`transcript`].
//!
//! Everything here runs a plugin through the same engine and batch core as
//! the host; nothing here is used by a running host.

pub mod record;
pub mod scratch;
pub mod test_run;
pub mod transcript;
