//! `switchyard plugin test`: a transcript's events run through a plugin
//! file one at a time, through the host's own batch core
//! ([`crate::batch`]) and plugin engine, on a scratch store and no broker,
//! and what became of each (outcome, actions, the documents they left),
//! compared with the expectations when the transcript has them.
//!
//! Deterministic: `received-at-ms` comes from the transcript, and the
//! scratch store starts empty or from `--state`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};

use super::scratch::Scratch;
use super::transcript::{self, InputLine, Mismatch, OutputLine, StartState, Verdict};
use crate::Config;
use crate::batch::{self, ActionTrace, Outcome};
use crate::plugins::bindings::Action;
use crate::plugins::{LoadedPlugin, PluginSlot};
use crate::store::{BatchCommit, DocumentWrite, Store};

/// What a run gave: one output per event, and where they differ from
/// what was expected.
#[derive(Debug)]
pub struct TestReport {
    pub outputs: Vec<OutputLine>,
    /// How many events had an expectation.
    pub expected: usize,
    pub mismatches: Vec<Mismatch>,
}

impl TestReport {
    /// One line: how many events, their outcomes, and the expectations met.
    pub fn summary(&self) -> String {
        let count = |v: Verdict| self.outputs.iter().filter(|o| o.outcome == v).count();
        let mut line = format!(
            "{} events: {} applied, {} duplicate, {} rejected, {} retry",
            self.outputs.len(),
            count(Verdict::Applied),
            count(Verdict::Duplicate),
            count(Verdict::Rejected),
            count(Verdict::Retry),
        );
        if self.expected == 0 {
            line.push_str("; no expectations to check");
        } else {
            line.push_str(&format!(
                "; {} of {} expectations met",
                self.expected - self.mismatches.len(),
                self.expected
            ));
        }
        line
    }
}

/// Runs the transcript file `events` through the plugin file `plugin`,
/// starting from the store in `state` if given, and compares each output
/// with the line of `expect` (one per event) or else with the event's own
/// `expect`. Blocking.
pub fn test_files(
    plugin: &Path,
    events: &Path,
    expect: Option<&Path>,
    state: Option<&Path>,
) -> Result<TestReport> {
    let read =
        |p: &Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    let mut inputs = transcript::parse_inputs(&read(events)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", events.display()))?;
    if let Some(path) = expect {
        let lines: Vec<Value> = read(path)?
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .with_context(|| format!("{} line {}: not JSON", path.display(), i + 1))
            })
            .collect::<Result<_>>()?;
        if lines.len() != inputs.len() {
            bail!(
                "{} has {} expected lines for the {} events of {}: give one per event",
                path.display(),
                lines.len(),
                inputs.len(),
                events.display()
            );
        }
        for (input, line) in inputs.iter_mut().zip(lines) {
            input.expect = Some(line);
        }
    }
    let start = match state {
        Some(path) => Some(
            serde_json::from_str::<StartState>(&read(path)?)
                .with_context(|| format!("{}: not a starting store", path.display()))?,
        ),
        None => None,
    };
    let wasm = std::fs::read(plugin).with_context(|| format!("reading {}", plugin.display()))?;
    test(plugin, &wasm, &inputs, start.as_ref())
}

/// Runs `inputs` through the plugin `wasm` (read from `path`) and compares
/// each output with the input's `expect`. Blocking.
pub fn test(
    path: &Path,
    wasm: &[u8],
    inputs: &[InputLine],
    start: Option<&StartState>,
) -> Result<TestReport> {
    let outputs = run(path, wasm, inputs, start)?;
    let mut expected = 0;
    let mut mismatches = Vec::new();
    for (input, output) in inputs.iter().zip(&outputs) {
        if let Some(expect) = &input.expect {
            expected += 1;
            let compared = transcript::compare(output, expect)
                .map_err(|e| anyhow::anyhow!("event {}: {e}", output.n))?;
            mismatches.extend(compared);
        }
    }
    Ok(TestReport {
        outputs,
        expected,
        mismatches,
    })
}

/// Runs `inputs` through the plugin `wasm`, one event per batch, and says
/// what became of each. Blocking.
pub fn run(
    path: &Path,
    wasm: &[u8],
    inputs: &[InputLine],
    start: Option<&StartState>,
) -> Result<Vec<OutputLine>> {
    let config = Config::defaults();
    let (version, scratch) = Scratch::load(path, wasm, &config)?;
    let db = &scratch.db;
    if version.is_producer() {
        bail!(
            "{} is a producer: `plugin test` runs events through transformers",
            version.name
        );
    }
    if let Some(start) = start {
        seed(db, &version, start)?;
    }
    let slot = PluginSlot::new(version);
    let version = slot.current();
    let mut outputs = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        let output = run_one(&slot, &version, db, &config, input, i + 1)?;
        outputs.push(output);
    }
    Ok(outputs)
}

/// One event as a batch of one.
fn run_one(
    slot: &PluginSlot,
    version: &Arc<LoadedPlugin>,
    db: &Store,
    config: &Config,
    input: &InputLine,
    n: usize,
) -> Result<OutputLine> {
    let body = input
        .body_bytes()
        .map_err(|e| anyhow::anyhow!("event {n}: {e}"))?;
    let admitted = batch::admit(
        &input.routing_key,
        body,
        0,
        config.max_hops,
        input.received_at_ms,
    );
    let mut trace = ActionTrace::new();
    let processed = batch::process_traced(slot, version, db, &[admitted], Some(&mut trace))
        .with_context(|| format!("event {n}: the scratch store failed"))?;
    let outcome = processed
        .outcomes
        .into_iter()
        .next()
        .context("the batch core gave no outcome")?;
    let (verdict, reason) = match outcome {
        Outcome::Applied => (Verdict::Applied, None),
        Outcome::Duplicate => (Verdict::Duplicate, None),
        Outcome::DeadLetter(r) => (Verdict::Rejected, Some(r)),
        Outcome::Retry(r) => (Verdict::Retry, Some(r)),
    };
    let mut actions = Vec::new();
    let mut documents = Map::new();
    if verdict == Verdict::Applied {
        let returned = trace.into_iter().next().map(|(_, a)| a).unwrap_or_default();
        for action in &returned {
            if let Some((collection, key)) = touched(action) {
                let stored = db.blocking().document(collection, key)?;
                let value = match stored {
                    Some(text) => serde_json::from_str(&text).with_context(|| {
                        format!("stored document {collection}/{key} is not JSON")
                    })?,
                    None => Value::Null,
                };
                documents.insert(format!("{collection}/{key}"), value);
            }
            actions.push(action_json(action));
        }
    }
    Ok(OutputLine {
        n,
        event_id: input.event_id(),
        outcome: verdict,
        reason,
        actions,
        documents,
    })
}

/// The document an action writes, if it writes one.
fn touched(action: &Action) -> Option<(&str, &str)> {
    match action {
        Action::Upsert(d) => Some((&d.collection, &d.key)),
        Action::Delete(d) => Some((&d.collection, &d.key)),
        Action::Publish(_) => None,
    }
}

/// An action as the transcript writes it, its JSON texts as JSON values
/// (as text, should one not parse: the host rejected the event then).
fn action_json(action: &Action) -> Value {
    let value = |text: &str| {
        serde_json::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.to_owned()))
    };
    match action {
        Action::Upsert(d) => json!({"upsert": {
            "collection": d.collection, "key": d.key, "json": value(&d.json)}}),
        Action::Delete(d) => json!({"delete": {"collection": d.collection, "key": d.key}}),
        Action::Publish(e) => json!({"publish": {
            "routing_key": e.routing_key, "body": value(&e.body)}}),
    }
}

/// Writes the starting store: the plugin's state and the documents.
fn seed(db: &Store, version: &LoadedPlugin, start: &StartState) -> Result<()> {
    let mut documents = Vec::new();
    for (path, value) in &start.documents {
        let Some((collection, key)) = path.split_once('/') else {
            bail!("--state: document {path:?} must be named \"<collection>/<key>\"");
        };
        documents.push(DocumentWrite::Upsert {
            collection: collection.to_owned(),
            key: key.to_owned(),
            json: value.to_string(),
        });
    }
    let state: Vec<_> = start
        .state
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.to_string().into_bytes())))
        .collect();
    let generation = db.blocking().state_generation(&version.name)?;
    db.blocking()
        .commit_batch(&BatchCommit {
            plugin: version.name.clone(),
            version: version.sha256.clone(),
            declared_version: version.info.version.clone(),
            state_generation: (!state.is_empty()).then_some(generation),
            state,
            documents,
            ..BatchCommit::default()
        })
        .context("writing the starting store")?;
    Ok(())
}
