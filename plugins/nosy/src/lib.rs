//! Switchyard test fixture `nosy`: a transformer that reaches out of its
//! sandbox with Rust's std, as a language runtime would, and reports what it
//! found.
//!
//! Subscribes to `nosy.#`. For each event it counts environment variables
//! and arguments, lists `/` and `.`, reads `/etc/hostname`, writes a file,
//! opens a TCP connection and a UDP socket to the address in the body's
//! `"connect"` field (default `127.0.0.1:5672`), looks up `localhost`, reads
//! the clock, hashes with a random seed and sends an HTTP GET to the same
//! address through `wasi:http` (its world is the transformer's plus
//! `wasi:http/outgoing-handler`, as a JavaScript runtime with `fetch()`
//! would import); then upserts `nosy/<event id>`
//! with each outcome (`"ok"` or the error). It writes one line to stdout
//! and one to stderr; a body field `"flood"` (a decimal string, a number of
//! KiB) also writes that much to stdout without a newline, then 100 short
//! lines.

// The generated export glue is `unsafe`; nothing else in the crate is.
#![allow(unsafe_code)]

wit_bindgen::generate!({
    path: ["../../wit", "wit"],
    world: "test:nosy/nosy",
    generate_all,
});

use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::time::Duration;

use switchyard::plugin::types::Document;

struct Nosy;

impl Guest for Nosy {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "nosy".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            subscriptions: vec!["nosy.#".to_owned()],
            views: Vec::new(),
        }
    }

    fn handle(event: Event) -> Result<Vec<Action>, HandleError> {
        let target = field(&event.body, "connect").unwrap_or_else(|| "127.0.0.1:5672".into());
        println!("nosy looks around for {}", event.id);
        eprintln!("nosy complains on stderr");
        if let Some(kib) = field(&event.body, "flood").and_then(|k| k.parse::<usize>().ok()) {
            let mut out = std::io::stdout().lock();
            let chunk = [b'x'; 1024];
            for _ in 0..kib {
                let _ = out.write_all(&chunk);
            }
            let _ = out.write_all(b"\n");
            for i in 0..100 {
                let _ = writeln!(out, "short line {i}");
            }
        }
        let seed = std::collections::hash_map::RandomState::new();
        let mut hasher = seed.build_hasher();
        hasher.write(b"nosy");
        let findings = [
            ("env", std::env::vars_os().count().to_string()),
            ("args", std::env::args_os().count().to_string()),
            ("read_dir_root", outcome(std::fs::read_dir("/").map(drop))),
            ("read_dir_here", outcome(std::fs::read_dir(".").map(drop))),
            (
                "read_file",
                outcome(std::fs::read("/etc/hostname").map(drop)),
            ),
            ("write_file", outcome(std::fs::write("nosy.txt", b"hi"))),
            (
                "tcp",
                match target.parse() {
                    Ok(addr) => outcome(TcpStream::connect_timeout(&addr, Duration::from_secs(1))),
                    Err(e) => format!("bad address: {e}"),
                },
            ),
            (
                "udp",
                outcome(
                    UdpSocket::bind("0.0.0.0:0").and_then(|s| s.send_to(b"hi", target.as_str())),
                ),
            ),
            (
                "dns",
                outcome(("localhost", 80).to_socket_addrs().map(|a| a.count())),
            ),
            (
                "clock",
                outcome(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)),
            ),
            ("random", hasher.finish().to_string()),
            ("http", http_get(&target)),
        ];
        let json = findings
            .iter()
            .map(|(k, v)| format!("\"{k}\":\"{}\"", escape(v)))
            .collect::<Vec<_>>()
            .join(",");
        Ok(vec![Action::Upsert(Document {
            collection: "nosy".to_owned(),
            key: event.id,
            json: format!("{{{json}}}"),
        })])
    }

    fn view(_name: String, _after: Option<String>, _limit: u32) -> Result<ViewPage, String> {
        Err("no views".to_owned())
    }
}

export!(Nosy);

/// `"ok"` (any answer) or why there was none.
fn http_get(authority: &str) -> String {
    use wasi::http::outgoing_handler;
    use wasi::http::types::{Fields, OutgoingRequest, Scheme};
    let request = OutgoingRequest::new(Fields::new());
    if request.set_scheme(Some(&Scheme::Http)).is_err()
        || request.set_authority(Some(authority)).is_err()
        || request.set_path_with_query(Some("/")).is_err()
    {
        return "bad request".to_owned();
    }
    let pending = match outgoing_handler::handle(request, None) {
        Ok(pending) => pending,
        Err(code) => return format!("{code:?}"),
    };
    pending.subscribe().block();
    match pending.get() {
        Some(Ok(Ok(_))) => "ok".to_owned(),
        Some(Ok(Err(code))) => format!("{code:?}"),
        Some(Err(())) | None => "no response".to_owned(),
    }
}

/// `"ok"` or the error's text.
fn outcome<T, E: std::fmt::Display>(result: Result<T, E>) -> String {
    match result {
        Ok(_) => "ok".to_owned(),
        Err(e) => e.to_string(),
    }
}

fn escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            c if c.is_control() => vec![' '],
            c => vec![c],
        })
        .collect()
}

/// The string value of the first `"<name>": "..."` in `body` (no escapes).
fn field(body: &str, name: &str) -> Option<String> {
    let quoted = format!("\"{name}\"");
    let rest = &body[body.find(&quoted)? + quoted.len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let value = rest.strip_prefix('"')?;
    Some(value[..value.find('"')?].to_owned())
}
