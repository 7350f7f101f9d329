//! The WASI a plugin's instance gets, and what each world's WASI imports
//! come to ([`verdict`], which `switchyard plugin check` prints).
//!
//! Every plugin gets a deny-all WASI context: no preopened folders, no
//! environment variables, no arguments, stdin closed, no sockets (TCP, UDP
//! and name lookups refused, every address denied); clocks and random work
//! (language runtimes need them); stdout and stderr go to the plugin's log
//! ([`super::stdio`]). WASI interfaces are linked so that runtimes which
//! import them (componentize-py, componentize-js) instantiate; their calls
//! find nothing or are refused. A producer's only way out is `wasi:http`
//! to granted origins ([`super::http`]); a transformer's `wasi:http` refuses
//! every request.

use std::sync::Arc;

use wasmtime_wasi::WasiCtx;

use super::linker::PluginWorld;
use super::stdio::{LogName, PluginOutput, Stream};
use super::warnings::Warnings;

/// The WASI context of one instance: grants nothing but clocks, random and
/// a log for its output.
pub fn deny_all(name: &LogName, warnings: &Arc<Warnings>) -> WasiCtx {
    let mut builder = WasiCtx::builder();
    builder
        .stdout(PluginOutput::new(
            name.clone(),
            Stream::Stdout,
            Arc::clone(warnings),
        ))
        .stderr(PluginOutput::new(
            name.clone(),
            Stream::Stderr,
            Arc::clone(warnings),
        ))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    builder.build()
}

/// What the host gives a plugin of one world for one WASI import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Works as it would anywhere (clocks, random, streams).
    Allowed(&'static str),
    /// Linked, but there is nothing behind it (no folders, no variables).
    Empty(&'static str),
    /// Linked, and every use is refused.
    Denied(&'static str),
    /// Refused unless the configuration grants it to the plugin.
    Granted(&'static str),
    /// Not linked: a component that imports it does not load.
    NotOffered,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Allowed("") => write!(f, "allowed"),
            Verdict::Allowed(why) => write!(f, "allowed ({why})"),
            Verdict::Empty(why) => write!(f, "empty ({why})"),
            Verdict::Denied(why) => write!(f, "denied ({why})"),
            Verdict::Granted(why) => write!(f, "granted only ({why})"),
            Verdict::NotOffered => write!(f, "not offered (the plugin cannot load)"),
        }
    }
}

/// What `world` gets for the import `name` (`wasi:sockets/tcp@0.2.3`,
/// with or without a version). `None` for an import that is not WASI.
pub fn verdict(world: PluginWorld, name: &str) -> Option<Verdict> {
    let interface = name.split('@').next().unwrap_or(name);
    let (package, interface) = interface.split_once('/')?;
    let producer = world == PluginWorld::Producer;
    let no_network = if producer {
        "producers reach the network only through wasi:http"
    } else {
        "transformers have no network"
    };
    use Verdict::*;
    let verdict = match (package, interface) {
        ("wasi:io", _) => Allowed(""),
        ("wasi:clocks", "monotonic-clock" | "wall-clock") => Allowed(""),
        ("wasi:random", "random" | "insecure" | "insecure-seed") => Allowed(""),
        ("wasi:cli", "environment") => Empty("no environment variables, no arguments"),
        ("wasi:cli", "exit") => Allowed("exiting fails the call"),
        ("wasi:cli", "stdin") => Empty("closed"),
        ("wasi:cli", "stdout" | "stderr") => Allowed("to the plugin's log"),
        ("wasi:cli", name) if name.starts_with("terminal-") => Empty("no terminal"),
        ("wasi:filesystem", "types" | "preopens") => Empty("no folders"),
        ("wasi:sockets", _) => Denied(no_network),
        ("wasi:http", "types" | "outgoing-handler") if producer => {
            Granted("origins of --grant <plugin>=<origin>")
        }
        ("wasi:http", "types" | "outgoing-handler") => Denied(no_network),
        (package, _) if package.starts_with("wasi:") => NotOffered,
        _ => return None,
    };
    Some(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transformer_gets_no_network_and_a_producer_only_granted_http() {
        let t = PluginWorld::Transformer;
        let p = PluginWorld::Producer;
        assert_eq!(
            verdict(t, "wasi:sockets/tcp@0.2.3").unwrap().to_string(),
            "denied (transformers have no network)"
        );
        assert!(matches!(
            verdict(t, "wasi:http/outgoing-handler@0.2.12"),
            Some(Verdict::Denied(_))
        ));
        assert!(matches!(
            verdict(p, "wasi:http/outgoing-handler@0.2.12"),
            Some(Verdict::Granted(_))
        ));
        assert!(matches!(
            verdict(p, "wasi:sockets/ip-name-lookup"),
            Some(Verdict::Denied(_))
        ));
        assert!(matches!(
            verdict(t, "wasi:filesystem/preopens@0.2.0"),
            Some(Verdict::Empty(_))
        ));
        assert_eq!(
            verdict(t, "wasi:random/random@0.2.0"),
            Some(Verdict::Allowed(""))
        );
        assert_eq!(
            verdict(t, "wasi:keyvalue/store@0.2.0"),
            Some(Verdict::NotOffered)
        );
        assert_eq!(verdict(t, "switchyard:plugin/state@0.1.1"), None);
        assert_eq!(verdict(t, "no-slash"), None);
    }
}
