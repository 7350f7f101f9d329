//! What the throughput and steady-state benchmarks share: seed-format
//! events, the broker plumbing (publishing with confirms, deleting what a
//! run declared), the in-process host's configuration and the process
//! measurements (CPU time, resident memory).
//!
//! Each benchmark includes it with `mod support;` and uses a part of it.

pub mod broker;
pub mod events;
pub mod host;
pub mod measure;
