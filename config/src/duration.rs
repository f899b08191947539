//! Durations written as strings: an integer and a unit, possibly compound (`"1m30s"`).
//!
//! The one duration syntax of handoff: the configuration's keys, and the parameters of
//! `handoff faults` modes (`keepalive-close:500ms`).

use std::time::Duration;

/// The units a duration may use, largest first: a compound duration must list them in this
/// order, each at most once.
const UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

/// Parses `"150ms"`, `"3s"`, `"2m"`, `"1h"` or a compound such as `"1m30s"`.
///
/// Each part is a non-negative integer immediately followed by a unit (`ms`, `s`, `m`,
/// `h`); parts go from the largest unit to the smallest, each unit once. No spaces, signs,
/// fractions or bare numbers. The error is a lowercase sentence naming the accepted form.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const FORM: &str =
        "a duration is an integer and a unit (ms, s, m, h), e.g. \"3s\", \"150ms\" or \"1m30s\"";
    if text.is_empty() {
        return Err(format!("empty; {FORM}"));
    }
    if text.contains(char::is_whitespace) {
        return Err(format!("{text:?} contains a space; {FORM}"));
    }
    let mut total: u64 = 0;
    let mut rest = text;
    // Index into UNITS of the smallest unit used so far; the next one must be smaller.
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(format!("{text:?} is not a duration; {FORM}"));
        }
        let (number, after) = rest.split_at(digits);
        let unit_len = after.len()
            - after
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(format!("{text:?} has no unit; {FORM}"));
        }
        let Some(index) = UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(format!("{text:?} has unknown unit {unit:?}; {FORM}"));
        };
        if index < next_unit {
            return Err(format!(
                "{text:?} repeats a unit or lists a larger unit after a smaller one; {FORM}"
            ));
        }
        next_unit = index + 1;
        let millis = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(UNITS[index].1))
            .and_then(|n| total.checked_add(n));
        total = millis.ok_or_else(|| format!("{text:?} is too long to represent"))?;
        rest = after;
    }
    Ok(Duration::from_millis(total))
}

/// Writes a duration the way the configuration spells it: `"1m30s"`, `"150ms"`, `"0s"`.
///
/// Sub-millisecond parts are dropped; the result parses back to the same whole milliseconds.
pub fn format_duration(duration: Duration) -> String {
    let mut millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    if millis == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in UNITS {
        if millis >= size {
            out.push_str(&format!("{}{unit}", millis / size));
            millis %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_integers_with_units() {
        let cases = [
            ("0s", Duration::ZERO),
            ("0ms", Duration::ZERO),
            ("150ms", Duration::from_millis(150)),
            ("3s", Duration::from_secs(3)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("1m30s", Duration::from_secs(90)),
            ("1h2m3s4ms", Duration::from_millis(3_723_004)),
            ("90s", Duration::from_secs(90)),
            ("007s", Duration::from_secs(7)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        let cases = [
            ("", "empty"),
            ("5", "no unit"),
            ("1 ms", "contains a space"),
            (" 1s", "contains a space"),
            ("1s ", "contains a space"),
            ("1.5s", "no unit"),
            ("-1s", "not a duration"),
            ("+1s", "not a duration"),
            ("1sec", "unknown unit"),
            ("1S", "unknown unit"),
            ("1d", "unknown unit"),
            ("s", "not a duration"),
            ("30s1m", "larger unit after a smaller"),
            ("1s1s", "repeats a unit"),
            ("18446744073709551616ms", "too long"),
            ("5124095576030432h", "too long"),
            ("5124095576030431h1000000000m", "too long"),
        ];
        for (text, expected) in cases {
            let error = parse_duration(text).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
            assert!(
                error.contains("e.g. \"3s\"") || expected == "too long",
                "{text}: {error}"
            );
        }
    }

    #[test]
    fn formats_back_to_the_same_duration() {
        for text in ["0s", "150ms", "3s", "55s", "1m30s", "2h", "1h2m3s4ms"] {
            let duration = parse_duration(text).unwrap();
            assert_eq!(format_duration(duration), text);
        }
        assert_eq!(format_duration(Duration::from_micros(1500)), "1ms");
    }
}
