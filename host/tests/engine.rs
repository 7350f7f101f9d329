//! The plugin engine against hostile guests, without a broker: real `.wasm`
//! fixtures loaded into a [`PluginEngine`] and called directly. A trap, an
//! endless loop and a memory hog each fail one call, recognised by type; a
//! guest that reaches for the environment, files and sockets finds nothing,
//! and a guest that floods stdout costs the host a bounded log.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard::plugins::access::Access;
use switchyard::plugins::bindings::{Action, Event};
use switchyard::plugins::{CallError, LoadedPlugin, MemoryCapExceeded, PluginEngine};
use switchyard::store::Store;

const MIB: usize = 1 << 20;

/// An engine over a scratch store, with `settings` (`<plugin>.<key>=<value>`).
fn engine(
    dir: &std::path::Path,
    timeout_ms: u64,
    memory_mib: usize,
    settings: &[&str],
) -> PluginEngine {
    let settings: Vec<String> = settings.iter().map(|s| s.to_string()).collect();
    PluginEngine::new(
        Store::sqlite(dir).unwrap(),
        Duration::from_millis(timeout_ms),
        memory_mib * MIB,
        None,
        Access::from_config(&[], &settings).unwrap(),
    )
    .unwrap()
}

fn load(engine: &PluginEngine, name: &str) -> anyhow::Result<LoadedPlugin> {
    let path = common::plugin_file(name);
    let wasm = std::fs::read(&path).unwrap();
    engine.load(&path, &wasm, name)
}

fn event(id: &str, routing_key: &str, body: &str) -> Event {
    Event {
        id: id.to_owned(),
        routing_key: routing_key.to_owned(),
        body: body.to_owned(),
        received_at_ms: 1_700_000_000_000,
    }
}

fn handle(plugin: &LoadedPlugin, event: &Event) -> Result<Vec<Action>, CallError> {
    let mut instance = plugin.transformer().expect("a transformer");
    let result = instance.handle(event);
    instance.finish_event(result.is_ok());
    result
}

fn counter_event(id: &str, misbehave: Option<&str>) -> Event {
    let body = match misbehave {
        Some(how) => format!(r#"{{"eventId":"{id}","misbehave":"{how}"}}"#),
        None => format!(r#"{{"eventId":"{id}"}}"#),
    };
    event(id, "test.event", &body)
}

#[test]
fn a_trap_a_loop_and_a_memory_hog_each_fail_one_call_and_are_told_apart_by_type() {
    let dir = tempfile::tempdir().unwrap();
    // The default cap is large; the counter's own setting makes it 16 MiB.
    let engine = engine(dir.path(), 200, 256, &["counter.memory-mib=16"]);
    let counter = load(&engine, "counter").unwrap();
    assert_eq!(counter.memory_cap_bytes, 16 * MIB);
    assert_eq!(engine.memory_cap("counter"), (16 * MIB, true));
    assert_eq!(engine.memory_cap("other"), (256 * MIB, false));

    assert!(handle(&counter, &counter_event("good-1", None)).is_ok());
    match handle(&counter, &counter_event("trap", Some("trap"))) {
        Err(CallError::Trap(reason)) => assert!(reason.contains("unreachable"), "{reason}"),
        other => panic!("a panic is a trap, got {other:?}"),
    }
    assert!(handle(&counter, &counter_event("good-2", None)).is_ok());
    assert!(matches!(
        handle(&counter, &counter_event("spin", Some("spin"))),
        Err(CallError::Timeout)
    ));
    assert!(handle(&counter, &counter_event("good-3", None)).is_ok());
    let exceeded = match handle(&counter, &counter_event("hog", Some("hog"))) {
        Err(CallError::MemoryLimit(exceeded)) => exceeded,
        other => panic!("a memory hog is a memory limit, got {other:?}"),
    };
    assert_eq!(exceeded.plugin, "counter");
    assert_eq!(exceeded.cap_mib, 16);
    assert!(exceeded.asked_mib > 16);
    let reason = CallError::MemoryLimit(exceeded).to_string();
    assert!(
        reason.contains("cap of 16 MiB") && reason.contains("--plugin-setting counter.memory-mib="),
        "the dead-letter reason names the cap and the setting: {reason}"
    );
    // Each failure replaced the instance; the count went on from the
    // applied events only (state of failed events vanished).
    let actions = handle(&counter, &counter_event("good-4", None)).unwrap();
    match &actions[..] {
        [Action::Upsert(doc)] => assert_eq!(doc.json, r#"{"count":4}"#),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_cap_below_what_the_plugin_needs_to_start_fails_its_load_by_type() {
    let dir = tempfile::tempdir().unwrap();
    let small = engine(dir.path(), 1000, 64, &["counter.memory-mib=1"]);
    let error = load(&small, "counter").unwrap_err();
    let exceeded = error
        .downcast_ref::<MemoryCapExceeded>()
        .unwrap_or_else(|| panic!("not a memory cap failure: {error:#}"));
    assert_eq!((exceeded.plugin.as_str(), exceeded.cap_mib), ("counter", 1));
    // The same file loads under the default cap.
    let dir = tempfile::tempdir().unwrap();
    load(&engine(dir.path(), 1000, 64, &[]), "counter").unwrap();
}

#[test]
fn a_bad_memory_setting_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let settings = vec!["merge.memory-mib=lots".to_owned()];
    let error = PluginEngine::new(
        Store::sqlite(dir.path()).unwrap(),
        Duration::from_secs(1),
        64 * MIB,
        None,
        Access::from_config(&[], &settings).unwrap(),
    )
    .err()
    .expect("an invalid memory-mib is refused");
    assert!(
        format!("{error:#}").contains("merge.memory-mib"),
        "{error:#}"
    );
}

/// Log lines, captured while `f` runs on this thread.
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let result = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    (result, text)
}

#[test]
fn a_guest_that_reaches_for_env_files_and_sockets_finds_nothing_and_the_host_is_fine() {
    let dir = tempfile::tempdir().unwrap();
    // A grant to a transformer is ignored: transformers have no network.
    // Its world imports wasi:http besides the transformer's: it still loads.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let engine = PluginEngine::new(
        Store::sqlite(dir.path()).unwrap(),
        Duration::from_secs(5),
        64 * MIB,
        None,
        Access::from_config(&[format!("nosy=http://{address}")], &[]).unwrap(),
    )
    .unwrap();
    let nosy = load(&engine, "nosy").unwrap();
    let body = format!(r#"{{"eventId":"e1","connect":"{address}"}}"#);
    let (actions, log) = logged(|| handle(&nosy, &event("e1", "nosy.look", &body)).unwrap());
    let found = match &actions[..] {
        [Action::Upsert(doc)] => serde_json::from_str::<serde_json::Value>(&doc.json).unwrap(),
        other => panic!("{other:?}"),
    };
    let found = |key: &str| found[key].as_str().unwrap().to_owned();
    assert_eq!(found("env"), "0", "no environment variables");
    assert_eq!(found("args"), "0", "no arguments");
    for refused in [
        "read_dir_root",
        "read_dir_here",
        "read_file",
        "write_file",
        "tcp",
        "udp",
        "dns",
    ] {
        assert_ne!(found(refused), "ok", "{refused} must be refused");
    }
    assert!(
        found("http").contains("HttpRequestDenied"),
        "wasi:http refuses a transformer, granted or not: {}\n{log}",
        found("http")
    );
    assert_eq!(found("clock"), "ok", "clocks work");
    assert!(found("random").parse::<u64>().is_ok());
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the guest connected to {address}"
    );
    // Its output went to the log, one line each, with its name.
    let line = log
        .lines()
        .find(|l| l.contains("nosy looks around for e1"))
        .expect(&log);
    assert!(
        line.contains("INFO") && line.contains("plugin=nosy"),
        "{line}"
    );
    let line = log
        .lines()
        .find(|l| l.contains("nosy complains on stderr"))
        .expect(&log);
    assert!(
        line.contains("WARN") && line.contains("plugin=nosy"),
        "{line}"
    );
    // The same instance keeps serving.
    assert!(handle(&nosy, &event("e2", "nosy.look", &body)).is_ok());
}

#[test]
fn a_guest_that_floods_stdout_without_newlines_costs_a_bounded_log() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 5_000, 64, &[]);
    let nosy = load(&engine, "nosy").unwrap();
    // 8 MiB on one line, then 100 short lines: our fixtures write short lines.
    let body = r#"{"eventId":"e-1","connect":"127.0.0.1:9","flood":"8192"}"#;
    let (handled, log) = logged(|| handle(&nosy, &event("e-1", "nosy.flood", body)));
    assert!(handled.is_ok(), "{handled:?}");
    let longest = log.lines().map(str::len).max().unwrap();
    assert!(longest < 5_000, "a log line of {longest} bytes");
    let cut = log.lines().filter(|l| l.contains("[line cut]")).count();
    assert_eq!(cut, 1, "the long line is cut once, its rest dropped");
    let short: Vec<&str> = log.lines().filter(|l| l.contains("short line ")).collect();
    assert_eq!(short.len(), 100);
    assert!(short[99].contains("short line 99"));
}

#[test]
fn check_reports_each_wasi_import_with_what_the_world_gets_and_the_memory_cap() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 5_000, 64, &["nosy.memory-mib=96"]);
    let nosy = load(&engine, "nosy").unwrap();
    let report = switchyard::plugins::check::report(&nosy, engine.memory_cap("nosy").1);
    let line = |prefix: &str| {
        report
            .lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{report}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(line("world:"), "world: transformer");
    assert!(
        line("memory cap:")
            .starts_with("memory cap: 96 MiB (from --plugin-setting nosy.memory-mib")
    );
    assert!(line("wasi:sockets/tcp@").ends_with("denied (transformers have no network)"));
    assert!(line("wasi:http/outgoing-handler@").ends_with("denied (transformers have no network)"));
    assert!(line("wasi:filesystem/preopens@").ends_with("empty (no folders)"));
    assert!(line("wasi:cli/stdout@").ends_with("allowed (to the plugin's log)"));
    assert!(line("wasi:clocks/wall-clock@").ends_with("allowed"));
    // Sorted, so the output is stable from build to build.
    let wasi: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("  wasi:"))
        .collect();
    let mut sorted = wasi.clone();
    sorted.sort();
    assert_eq!(wasi, sorted);
}

#[test]
fn a_transformer_that_imports_a_producers_publish_is_refused_naming_the_import() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), 1000, 64, &[]);
    let error = format!("{:#}", load(&engine, "sneaky").unwrap_err());
    assert!(
        error.contains("a transformer imports what the host does not offer it")
            && error.contains("switchyard:plugin/publish"),
        "{error}"
    );
}

/// A compile cache entry that is cut short, of the earlier format (a
/// sha256 before the payload), empty, or whose checksum no longer matches
/// is compiled again and rewritten, never mapped; a sound entry is mapped
/// and its plugin behaves as the compiled one. (Entries are only damaged
/// while no plugin maps them: the host never writes one in place.)
#[test]
fn a_damaged_or_foreign_compile_cache_entry_is_compiled_again_never_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("compiled");
    let engine = PluginEngine::new(
        Store::sqlite(dir.path()).unwrap(),
        Duration::from_secs(5),
        64 * MIB,
        Some(&cache),
        Access::default(),
    )
    .unwrap();
    let path = common::plugin_file("merge");
    let wasm = std::fs::read(&path).unwrap();
    let load = || engine.load(&path, &wasm, "sha-of-merge").unwrap();
    let customer = event(
        "e1",
        "customer.created",
        r#"{"id":"c1","name":"n","timestamp":"2026-11-24T08:00:00Z"}"#,
    );
    let compiled = load();
    assert!(!compiled.from_cache);
    let expected = format!("{:?}", handle(&compiled, &customer).unwrap());
    drop(compiled);
    let cached = load();
    assert!(cached.from_cache, "a sound entry is loaded");
    assert_eq!(
        format!("{:?}", handle(&cached, &customer).unwrap()),
        expected
    );
    // No plugin maps the entry while it is damaged below.
    drop(cached);

    let entries: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    let sound = std::fs::read(entry).unwrap();
    let payload = &sound[..sound.len() - 8];
    let mut earlier_format = vec![0xab; 32];
    earlier_format.extend_from_slice(payload);
    let mut bad_checksum = sound.clone();
    let at = sound.len() - 6;
    bad_checksum[at] ^= 1;
    let mut flipped = sound.clone();
    flipped[sound.len() / 3] ^= 0x40;
    let damaged: [(&str, Vec<u8>); 6] = [
        ("cut in half", sound[..sound.len() / 2].to_vec()),
        ("without its trailer", payload.to_vec()),
        ("of the earlier format", earlier_format),
        ("with a wrong checksum", bad_checksum),
        ("with a byte flipped", flipped),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in damaged {
        std::fs::write(entry, &bytes).unwrap();
        let reloaded = load();
        assert!(!reloaded.from_cache, "an entry {what} was loaded");
        let actions = handle(&reloaded, &customer).unwrap();
        assert_eq!(format!("{actions:?}"), expected, "{what}");
        drop(reloaded);
        let rewritten = load();
        assert!(rewritten.from_cache, "the entry {what} is rewritten");
        drop(rewritten);
    }
}
