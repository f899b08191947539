//! nginx's time and size values: `60s`, `1m30s`, `500ms`, `60` (seconds); `8k`, `1m`, `4096`.

use std::time::Duration;

/// A time value as nginx reads it (`ngx_parse_time`): units ms, s, m, h, d, w, M (30 days),
/// y (365 days), several in a row from larger to smaller; a bare number is seconds.
pub(crate) fn parse_time(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else {
            let secs = match rest.chars().next() {
                None => 1,
                Some('s') => 1,
                Some('m') => 60,
                Some('h') => 3600,
                Some('d') => 86_400,
                Some('w') => 7 * 86_400,
                Some('M') => 30 * 86_400,
                Some('y') => 365 * 86_400,
                Some(_) => return None,
            };
            (Duration::from_secs(secs), usize::from(!rest.is_empty()))
        };
        total += unit.checked_mul(u32::try_from(n).ok()?)?;
        rest = &rest[len..];
    }
    Some(total)
}

/// A size as nginx reads it (`ngx_parse_size`): bytes, or `k`/`K`, `m`/`M`, `g`/`G`.
pub(crate) fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let (number, factor) = match text.chars().last()? {
        'k' | 'K' => (&text[..text.len() - 1], 1 << 10),
        'm' | 'M' => (&text[..text.len() - 1], 1 << 20),
        'g' | 'G' => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    number.parse::<usize>().ok()?.checked_mul(factor)
}

/// A duration as nginx configs usually write it: `60s`, `500ms`, `2h` for whole hours.
pub(crate) fn show_time(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 != 0 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    if s >= 3600 && s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else {
        format!("{s}s")
    }
}

/// A size as nginx would write it: `4k`, `8k`, `1m`, `1500`.
pub(crate) fn show_size(n: usize) -> String {
    if n >= 1 << 20 && n % (1 << 20) == 0 {
        format!("{}m", n >> 20)
    } else if n >= 1 << 10 && n % (1 << 10) == 0 {
        format!("{}k", n >> 10)
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_sizes() {
        assert_eq!(parse_time("60s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_time("60"), Some(Duration::from_secs(60)));
        assert_eq!(parse_time("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_time("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_time("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_time("s"), None);
        assert_eq!(parse_time("5x"), None);
        assert_eq!(parse_size("8k"), Some(8192));
        assert_eq!(parse_size("1M"), Some(1 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("k"), None);
        assert_eq!(show_time(Duration::from_secs(90)), "90s");
        assert_eq!(show_time(Duration::from_secs(7200)), "2h");
        assert_eq!(show_time(Duration::from_millis(1500)), "1500ms");
        assert_eq!(show_size(8192), "8k");
        assert_eq!(show_size(1000), "1000");
    }
}
