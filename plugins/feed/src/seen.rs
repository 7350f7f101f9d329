//! What a feed remembers of one record between polls (the state value under
//! `seen/<record id>`): its content hash, how many changes of it were
//! published, the timestamp of the last one, and which other contents the
//! upstream lists beside it under the same id.
//!
//! Written as text, `2;<hash>;<change>;<secs>.<nanos>;<hash>,<hash>`. A
//! value of 16 hex digits alone is the format of earlier versions (the
//! content hash only): it reads as change 0 with no known timestamp, so an
//! upgrade publishes nothing for unchanged records and numbers the next
//! change 1.

use switchyard_instant::Instant;

/// One record as the feed last published it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Hash of the record's content (see [`crate::walk`]).
    pub hash: u64,
    /// How many changes of this record were published; names the event.
    pub change: u64,
    /// The `timestamp` of the last published event, when known.
    pub at: Option<Instant>,
    /// Contents listed under the same id before the one that won (the
    /// upstream lists the id more than once; the last listing wins), so
    /// that the next poll does not publish them again.
    pub losers: Vec<u64>,
}

impl Seen {
    /// Reads a stored value; `None` for one this version cannot read (the
    /// record then counts as new).
    pub fn parse(value: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(value).ok()?;
        if text.len() == 16 {
            return Some(Self {
                hash: u64::from_str_radix(text, 16).ok()?,
                change: 0,
                at: None,
                losers: Vec::new(),
            });
        }
        let mut parts = text.split(';');
        if parts.next()? != "2" {
            return None;
        }
        let hash = u64::from_str_radix(parts.next()?, 16).ok()?;
        let change = parts.next()?.parse().ok()?;
        let at = match parts.next()? {
            "" => None,
            at => {
                let (secs, nanos) = at.split_once('.')?;
                Some(Instant::new(secs.parse().ok()?, nanos.parse().ok()?)?)
            }
        };
        let losers = match parts.next()? {
            "" => Vec::new(),
            list => list
                .split(',')
                .map(|h| u64::from_str_radix(h, 16).ok())
                .collect::<Option<_>>()?,
        };
        parts.next().is_none().then_some(Self {
            hash,
            change,
            at,
            losers,
        })
    }

    /// The stored form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let at = self
            .at
            .map(|at| format!("{}.{:09}", at.secs(), at.nanos()))
            .unwrap_or_default();
        let losers: Vec<String> = self.losers.iter().map(|h| format!("{h:016x}")).collect();
        format!(
            "2;{:016x};{};{at};{}",
            self.hash,
            self.change,
            losers.join(",")
        )
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let seen = Seen {
            hash: 0xfeed_0000_0000_0001,
            change: 7,
            at: Instant::parse("2026-11-24T08:00:00.123456789Z").ok(),
            losers: vec![1, u64::MAX],
        };
        assert_eq!(Seen::parse(&seen.to_bytes()), Some(seen.clone()));
        let bare = Seen {
            at: None,
            losers: Vec::new(),
            ..seen
        };
        assert_eq!(Seen::parse(&bare.to_bytes()), Some(bare));
    }

    #[test]
    fn reads_the_hash_only_format_of_earlier_versions_as_change_zero() {
        assert_eq!(
            Seen::parse(b"00000000deadbeef"),
            Some(Seen {
                hash: 0xdead_beef,
                change: 0,
                at: None,
                losers: Vec::new()
            })
        );
    }

    #[test]
    fn unreadable_values_are_none() {
        for bad in [
            &b""[..],
            b"xyz",
            b"3;00;1;;",
            b"2;zz;1;;",
            b"2;00;x;;",
            b"2;00;1;;;extra",
            b"2;00;1;1.2000000000;",
            b"\xff",
        ] {
            assert_eq!(Seen::parse(bad), None, "{bad:?}");
        }
    }
}
