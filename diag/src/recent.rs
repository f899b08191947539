//! A bounded ring of recent failures, for the admin `/failures` endpoint.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use percent_encoding::percent_decode_str;
use serde::Serialize;

use crate::classify::Failure;
use crate::evidence::Evidence;
use crate::reason::Reason;

/// How many records `/failures` returns when no limit is given.
pub const DEFAULT_LIMIT: usize = 50;

/// One failed handoff as `/failures` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct FailureRecord {
    /// When it happened, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// The same instant in Unix milliseconds.
    pub unix_ms: u64,
    /// The reason.
    pub reason: Reason,
    /// The status nginx received: handoff's own, or the upstream's if already sent.
    pub status: u16,
    /// The RFC 9209 error type.
    pub proxy_status: &'static str,
    /// The upstream name.
    pub upstream: Arc<str>,
    /// The generic hint.
    pub hint: String,
    /// The hint with evidence.
    pub hint_detail: String,
    /// What nginx would have logged.
    pub nginx_equivalent: String,
    /// Everything gathered.
    pub evidence: Evidence,
}

/// The ring: fixed slots and an atomic cursor. A writer holds one slot's lock only to
/// swap an `Arc`, so the request path never waits long; readers clone `Arc`s.
#[derive(Debug)]
pub struct RecentFailures {
    slots: Box<[Mutex<Option<Slot>>]>,
    cursor: AtomicU64,
}

/// Which records to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Only this upstream.
    pub upstream: Option<String>,
    /// Only this reason.
    pub reason: Option<Reason>,
    /// At most this many (capped at the ring's capacity).
    pub limit: usize,
}

/// A stored record and its sequence number (the push order).
type Slot = (u64, Arc<FailureRecord>);

#[derive(Serialize)]
struct Listing<'a> {
    capacity: usize,
    count: usize,
    failures: &'a [Arc<FailureRecord>],
}

impl FailureRecord {
    /// The record of `failure`, which ended with `status_sent` at `now`.
    pub fn new(failure: &Failure, status_sent: u16, now: SystemTime) -> FailureRecord {
        let unix_ms = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let hint = failure.hint();
        FailureRecord {
            time: rfc3339_ms(unix_ms),
            unix_ms,
            reason: failure.reason,
            status: status_sent,
            proxy_status: failure.reason.proxy_status_error(),
            upstream: failure.evidence.upstream.clone(),
            hint: hint.summary.to_owned(),
            hint_detail: hint.detail,
            nginx_equivalent: failure.nginx_equivalent(),
            evidence: failure.evidence.clone(),
        }
    }
}

impl RecentFailures {
    /// A ring keeping the newest `capacity` records (at least one).
    pub fn new(capacity: usize) -> Self {
        let slots = (0..capacity.max(1)).map(|_| Mutex::new(None)).collect();
        RecentFailures {
            slots,
            cursor: AtomicU64::new(0),
        }
    }

    /// How many records the ring keeps.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Adds a record, replacing the oldest when full.
    pub fn push(&self, r: FailureRecord) {
        let seq = self.cursor.fetch_add(1, Ordering::Relaxed);
        let slot = &self.slots[(seq % self.slots.len() as u64) as usize];
        let old = slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace((seq, Arc::new(r)));
        // The old record is freed here, outside the lock.
        drop(old);
    }

    /// The matching records, newest first.
    pub fn list(&self, filter: &Filter) -> Vec<Arc<FailureRecord>> {
        let mut all: Vec<Slot> = self
            .slots
            .iter()
            .filter_map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).clone())
            .collect();
        all.sort_unstable_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        let limit = filter.limit.min(self.slots.len());
        all.into_iter()
            .map(|(_, r)| r)
            .filter(|r| filter.upstream.as_deref().is_none_or(|u| *r.upstream == *u))
            .filter(|r| filter.reason.is_none_or(|reason| r.reason == reason))
            .take(limit)
            .collect()
    }

    /// The matching records as JSON: `{"capacity":N,"count":N,"failures":[...]}`.
    pub fn to_json(&self, filter: &Filter) -> String {
        let failures = self.list(filter);
        let listing = Listing {
            capacity: self.capacity(),
            count: failures.len(),
            failures: &failures,
        };
        serde_json::to_string(&listing).unwrap_or_else(|_| "{}".to_owned())
    }
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            upstream: None,
            reason: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

impl Filter {
    /// Parses a query string such as `upstream=app&reason=connect_refused&limit=10`.
    pub fn from_query(q: &str) -> Result<Filter, String> {
        let mut f = Filter::default();
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v)?;
            match k {
                "upstream" => f.upstream = Some(v),
                "reason" => {
                    f.reason = Some(Reason::from_label(&v).ok_or_else(|| {
                        let valid: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
                        format!("unknown reason {v:?}; valid reasons: {}", valid.join(", "))
                    })?)
                }
                "limit" => {
                    f.limit = match v.parse::<usize>() {
                        Ok(n) if n > 0 => n,
                        _ => return Err(format!("limit must be a positive integer, not {v:?}")),
                    }
                }
                _ => {
                    return Err(format!(
                        "unknown filter {k:?}; valid filters: upstream, reason, limit"
                    ))
                }
            }
        }
        Ok(f)
    }
}

/// A query value: `+` is a space (HTML forms), `%XX` a byte, and the result must be UTF-8.
///
/// `percent_decode_str` passes a malformed escape through as it is; a filter such as
/// `upstream=%zz` is refused instead, since it cannot be what the operator meant.
fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let malformed = b.iter().enumerate().any(|(i, &c)| {
        c == b'%'
            && !b
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if malformed {
        return Err(format!("bad percent-encoding in {s:?}"));
    }
    percent_decode_str(&s.replace('+', " "))
        .decode_utf8()
        .map(|v| v.into_owned())
        .map_err(|_| format!("{s:?} is not UTF-8"))
}

/// RFC 3339 UTC with milliseconds, e.g. `2024-05-01T12:34:56.789Z`.
pub(crate) fn rfc3339_ms(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ms % 1000
    )
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests;
