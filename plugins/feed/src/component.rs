//! One poll of a feed as a `switchyard-plugin` producer: [`run`] walks the
//! upstream over HTTP and hands the events over in chunks.
//!
//! The settings a poll reads (`--plugin-setting <plugin>.<key>=<value>`):
//! `base-url` (required), `path` (the plugin's default, e.g. `/customers`),
//! `max-answer-bytes` and the pagination settings of [`crate::paging`].

use switchyard_instant::Instant;
use switchyard_plugin::http::Request;
use switchyard_plugin::{ProducedEvent, log, producer, settings, state};

use crate::paging::Pager;
use crate::{Feed, Produced, Walk, listing};

/// Bytes one upstream answer (one page) may have unless
/// `max-answer-bytes` says otherwise. Records are parsed as they arrive, so
/// this bounds the time and bandwidth of a runaway answer, not memory.
pub const DEFAULT_MAX_ANSWER_BYTES: u64 = 64 * 1024 * 1024;

/// Events handed to the host while the walk goes on, at most this many at
/// a time (the plugin's memory holds no more events than this).
const CHUNK: usize = 500;

/// One poll: walk `<base-url><path>` (every page of it) and turn what
/// changed into events. Events go out in chunks through `publish` as the
/// walk goes; the last ones are returned.
pub fn run(feed: &Feed<'_>, default_path: &str) -> Result<Vec<ProducedEvent>, String> {
    let base = settings::get("base-url").ok_or(
        "no base-url setting: configure --plugin-setting <plugin>.base-url=http://host:port",
    )?;
    let path = settings::get("path").unwrap_or_else(|| default_path.to_owned());
    let max_bytes = match settings::get("max-answer-bytes") {
        None => DEFAULT_MAX_ANSWER_BYTES,
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("setting max-answer-bytes={v:?} is not a number of bytes"))?,
    };
    let mut pager = Pager::new(
        &format!("{}{path}", base.trim_end_matches('/')),
        settings::get,
    )?;
    let mut state = HostState;
    let mut walk = Walk::new(feed, &mut state, Instant::from_millis(now_ms()));
    let mut url = pager.first()?;
    loop {
        let response = Request::get(&url)
            .header("accept", "application/json")
            .send()?;
        let status = response.status();
        if !(200..300).contains(&status) {
            return Err(format!("GET {url}: HTTP {status}"));
        }
        let links = response.header("link");
        let link = (!links.is_empty()).then(|| links.join(", "));
        let mut body = response.into_body().limit(
            max_bytes,
            format!(
                "the answer is larger than {max_bytes} bytes (setting max-answer-bytes; \
                 or paginate it: setting pagination)"
            ),
        );
        let shape = pager.shape().clone();
        let page = listing::read(&mut body, &shape, &mut |record| {
            walk.record(record);
            if walk.ready() < CHUNK {
                return Ok(());
            }
            let events: Vec<ProducedEvent> = walk.take().into_iter().map(wit).collect();
            producer::publish(&events).map_err(|e| format!("publishing during the poll: {e}"))
        })
        .map_err(|e| format!("GET {url}: {e}"))?;
        drop(body);
        match pager.next(&url, &page, link.as_deref())? {
            Some(next) => url = next,
            None => break,
        }
    }
    let done = walk.finish();
    if let Some(warning) = &done.warning {
        log::warn(warning);
    }
    if let Some(all_clear) = &done.resolved {
        log::info(all_clear);
    }
    Ok(done.events.into_iter().map(wit).collect())
}

fn wit(p: Produced) -> ProducedEvent {
    ProducedEvent::new(p.id, &p.routing_key, p.body)
}

/// [`crate::State`] on the plugin's state.
struct HostState;

impl crate::State for HostState {
    fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        state::get(key)
    }

    fn set(&mut self, key: &str, value: &[u8]) {
        state::set(key, value);
    }

    fn delete(&mut self, key: &str) {
        state::delete(key);
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
