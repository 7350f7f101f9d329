//! `GET /events/{eventId}`: one event's journey. For each plugin, whether
//! it applied the event (when, with which file and declared version),
//! dead-lettered it (why) or has not seen it, and the events plugins
//! published because of it; from the store (within the dedupe retention)
//! and, with RabbitMQ, a bounded search of each plugin's dead-letter queue
//! that takes nothing out of it.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::admin::on_broker;
use super::{ApiError, AppState};
use crate::dead_letters::{self, DeadLetter};
use crate::store::EventRecords;
use crate::store::dedupe::MAX_EVENT_ID_BYTES;

/// Most messages looked at in one plugin's dead-letter queue.
pub const DLQ_SEARCH_LIMIT: u32 = 10_000;
/// Longest one plugin's dead-letter queue is searched (the queues of the
/// plugins are searched at the same time).
const DLQ_SEARCH_TIME: Duration = Duration::from_secs(3);

/// `GET /events` (no id).
pub(super) async fn no_event_id() -> ApiError {
    ApiError::BadRequest("no eventId: ask for GET /events/{eventId}".into())
}

/// `GET /events/{eventId}`; the id may hold `/` (published events' ids do)
/// and any percent-encoded UTF-8.
pub(super) async fn event_journey(
    State(s): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = id?;
    if id.is_empty() {
        return Err(no_event_id().await);
    }
    if id.len() > MAX_EVENT_ID_BYTES {
        return Err(ApiError::BadRequest(format!(
            "eventId is {} bytes long, over the limit of {MAX_EVENT_ID_BYTES}: no event has such an id",
            id.len()
        )));
    }
    // The plugins that consume events, with the file each runs now.
    let loaded: BTreeMap<String, (String, String)> = s
        .registry
        .all()
        .into_iter()
        .filter_map(|slot| {
            let version = slot.current();
            (!version.is_producer()).then(|| {
                (
                    slot.name.clone(),
                    (version.sha256.clone(), version.info.version.clone()),
                )
            })
        })
        .collect();
    let names: Vec<String> = loaded.keys().cloned().collect();
    let (lookup, plugins) = (id.clone(), names.clone());
    let records =
        s.db.call(move |db| db.event_records(&lookup, &plugins))
            .await?;
    let searches = if s.bus.is_some() {
        HashMap::new()
    } else {
        search_queues(&s, &id, &names).await
    };
    let mut letters: BTreeMap<String, Vec<DeadLetter>> = BTreeMap::new();
    for letter in &records.dead_letters {
        letters
            .entry(letter.plugin.clone())
            .or_default()
            .push(letter.clone().into());
    }
    for (plugin, search) in &searches {
        if let Ok(search) = search {
            letters
                .entry(plugin.clone())
                .or_default()
                .extend(search.found.iter().cloned());
        }
    }
    let versions = declared_versions(&s, &loaded, &letters).await?;
    let mut everyone: Vec<String> = names;
    everyone.extend(records.applied.iter().map(|a| a.plugin.clone()));
    everyone.extend(letters.keys().cloned());
    everyone.sort();
    everyone.dedup();
    let entries: Vec<Value> = everyone
        .iter()
        .map(|plugin| {
            let mut entry = plugin_entry(plugin, &records, letters.get(plugin), &versions);
            match searches.get(plugin) {
                Some(Ok(search)) if !search.complete() => {
                    entry["deadLetterSearch"] = json!({
                        "complete": false,
                        "searched": search.searched,
                        "inQueue": search.total,
                    });
                }
                Some(Err(error)) => {
                    entry["deadLetterSearch"] = json!({ "complete": false, "error": error });
                }
                _ => {}
            }
            entry
        })
        .collect();
    let complete = searches
        .values()
        .all(|s| s.as_ref().is_ok_and(|s| s.complete()));
    let published: Vec<Value> = records
        .published
        .iter()
        .map(|p| {
            json!({
                "eventId": p.event_id,
                "plugin": p.plugin,
                "routingKey": p.routing_key,
                "committedAt": rfc3339(p.committed_ms),
            })
        })
        .collect();
    Ok(Json(json!({
        "eventId": id,
        "plugins": entries,
        "published": published,
        "complete": complete,
    })))
}

/// Searches every plugin's dead-letter queue for `id`, all at once, on the
/// shared admin connection. A queue that could not be searched says why.
async fn search_queues(
    s: &AppState,
    id: &str,
    plugins: &[String],
) -> HashMap<String, Result<dead_letters::Search, String>> {
    let searches = plugins.iter().map(|plugin| {
        let id = id.to_owned();
        async move {
            let searched = on_broker(s, plugin, move |connection, config, plugin| async move {
                dead_letters::find(
                    &connection,
                    &config,
                    &plugin,
                    &id,
                    DLQ_SEARCH_LIMIT,
                    DLQ_SEARCH_TIME,
                )
                .await
            })
            .await
            .map_err(|e| e.to_string());
            (plugin.clone(), searched)
        }
    });
    futures_util::future::join_all(searches)
        .await
        .into_iter()
        .collect()
}

/// The version each (plugin, sha256) of the dead letters declares: the
/// running file's, or as the store recorded it.
async fn declared_versions(
    s: &AppState,
    loaded: &BTreeMap<String, (String, String)>,
    letters: &BTreeMap<String, Vec<DeadLetter>>,
) -> Result<HashMap<(String, String), String>, ApiError> {
    let mut known = HashMap::new();
    let mut ask = Vec::new();
    for (plugin, list) in letters {
        for sha256 in list.iter().filter_map(|l| l.plugin_version.as_ref()) {
            match loaded.get(plugin) {
                Some((running, version)) if running == sha256 => {
                    known.insert((plugin.clone(), sha256.clone()), version.clone());
                }
                _ => ask.push((plugin.clone(), sha256.clone())),
            }
        }
    }
    if ask.is_empty() {
        return Ok(known);
    }
    let recorded =
        s.db.call(move |db| {
            let mut found = Vec::new();
            for (plugin, sha256) in ask {
                if let Some(version) = db.declared_version(&plugin, &sha256)? {
                    found.push(((plugin, sha256), version));
                }
            }
            Ok(found)
        })
        .await?;
    known.extend(recorded);
    Ok(known)
}

/// One plugin's part of the journey.
fn plugin_entry(
    plugin: &str,
    records: &EventRecords,
    letters: Option<&Vec<DeadLetter>>,
    versions: &HashMap<(String, String), String>,
) -> Value {
    let applied = records.applied.iter().find(|a| a.plugin == plugin);
    // The latest dead letter, if the event was dead-lettered more than once.
    let letter = letters.and_then(|l| l.iter().max_by_key(|l| l.failed_at_ms));
    let letter_json = letter.map(|l| {
        let version = l
            .plugin_version
            .as_ref()
            .and_then(|sha| versions.get(&(plugin.to_owned(), sha.clone())));
        json!({
            "reason": l.reason,
            "failedAt": l.failed_at_ms.map(rfc3339),
            "attempts": l.attempts,
            "version": version,
            "sha256": l.plugin_version,
        })
    });
    match (applied, letter_json) {
        (Some(a), letter) => {
            let mut entry = json!({
                "plugin": plugin,
                "status": "applied",
                "appliedAt": rfc3339(a.applied_ms),
                "version": a.version,
                "sha256": a.sha256,
            });
            // Dead-lettered once, applied since (sent again): both are true.
            if let Some(letter) = letter {
                entry["deadLetter"] = letter;
            }
            entry
        }
        (None, Some(mut letter)) => {
            letter["plugin"] = json!(plugin);
            letter["status"] = json!("dead-lettered");
            letter
        }
        (None, None) => json!({ "plugin": plugin, "status": "not-seen" }),
    }
}

/// Milliseconds since the epoch as RFC 3339 UTC, to the millisecond.
pub(crate) fn rfc3339(ms: i64) -> String {
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let secs = ms_of_day / 1000;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ms_of_day % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_955_696_789), "2026-11-29T12:34:56.789Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }
}
