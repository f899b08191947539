//! What a rejected upstream certificate says about itself: expired (with the dates), for
//! another name (with the names), or signed by a CA handoff does not trust.
//!
//! rustls puts the cause in its error's text (`invalid peer certificate: ...`), which
//! pingora keeps in the error chain; nginx logs the same facts ("certificate has expired",
//! "unable to get local issuer certificate"). The wording read here is rustls 0.23's
//! `CertificateError` display, pinned through pingora.

/// The finding for a rejected certificate, from the error text that carries rustls's cause.
pub(crate) fn certificate_finding(text: &str) -> Option<String> {
    let cause = text.split_once("invalid peer certificate: ")?.1;
    // pingora appends ", SNI: name" to the rustls error.
    let (cause, sni) = match cause.rsplit_once(", SNI: ") {
        Some((cause, sni)) => (cause, Some(sni.trim())),
        None => (cause, None),
    };
    if let Some(rest) = cause.strip_prefix("certificate expired: ") {
        let (now, not_after) = two_times(rest, "not valid after ")?;
        let days = now.saturating_sub(not_after) / 86_400;
        return Some(format!(
            "the upstream's certificate expired on {} ({days} days ago by this host's clock, \
             which says {}): renew it",
            utc(not_after),
            utc(now)
        ));
    }
    if let Some(rest) = cause.strip_prefix("certificate not valid yet: ") {
        let (now, not_before) = two_times(rest, "not valid before ")?;
        return Some(format!(
            "the upstream's certificate is not valid before {}, and this host's clock says {}: \
             check the clock (NTP) or the certificate's dates",
            utc(not_before),
            utc(now)
        ));
    }
    if let Some(rest) = cause.strip_prefix("certificate not valid for name ") {
        let (expected, presented) = rest.split_once("; certificate ")?;
        let names = presented
            .strip_prefix("is only valid for ")
            .map_or_else(|| "no name at all".to_owned(), plain_names);
        return Some(format!(
            "the upstream's certificate is for {names}, not for {expected}, the name handoff \
             verifies: set the upstream's `sni` to a name the certificate carries, or reissue it"
        ));
    }
    let generic = match cause.split([',', ' ']).next()? {
        "UnknownIssuer" => {
            "the upstream's certificate is signed by a CA handoff does not trust \
            (unknown issuer): give that CA as the upstream's `ca_file`, or have the app send its \
            full chain"
        }
        "Expired" => "the upstream's certificate has expired: renew it",
        "NotValidYet" => "the upstream's certificate is not valid yet: check the clock (NTP)",
        "NotValidForName" => {
            "the upstream's certificate is for another name: set `sni` to a \
            name it carries, or reissue it"
        }
        "BadSignature" => "the upstream's certificate chain has a bad signature",
        "UnknownRevocationStatus" | "Revoked" => {
            "the upstream's certificate is revoked or its \
            revocation status is unknown"
        }
        _ => return None,
    };
    Some(match sni {
        Some(sni) => format!("{generic} (server name {sni})"),
        None => generic.to_owned(),
    })
}

/// webpki's `DnsName("a") or IpAddress(1.2.3.4)` as `a, 1.2.3.4`.
fn plain_names(list: &str) -> String {
    list.replace(" or ", ", ")
        .split(", ")
        .map(|n| {
            n.strip_prefix("DnsName(\"")
                .and_then(|n| n.strip_suffix("\")"))
                .or_else(|| n.strip_prefix("IpAddress(")?.strip_suffix(')'))
                .unwrap_or(n)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// "verification time T (UNIX), but certificate is `marker`N (UNIX)..." → (T, N).
fn two_times(text: &str, marker: &str) -> Option<(u64, u64)> {
    let number = |s: &str| -> Option<u64> {
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        s[..end].parse().ok()
    };
    let now = number(text.strip_prefix("verification time ")?)?;
    let other = number(text.split_once(marker)?.1)?;
    Some((now, other))
}

/// Seconds since the epoch as `2026-01-31 23:59:59 UTC` (proleptic Gregorian calendar).
pub(crate) fn utc(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_798_761_599), "2026-12-31 23:59:59 UTC");
    }

    /// rustls's own wording, as pingora passes it on.
    #[test]
    fn each_certificate_cause_is_named() {
        let expired = "TLS connect() failed: invalid peer certificate: certificate expired: \
            verification time 1798761599 (UNIX), but certificate is not valid after 1577836800 \
            (220924799 seconds ago), SNI: app.internal";
        assert_eq!(
            certificate_finding(expired).unwrap(),
            "the upstream's certificate expired on 2020-01-01 00:00:00 UTC (2556 days ago by \
             this host's clock, which says 2026-12-31 23:59:59 UTC): renew it"
        );
        let name = "invalid peer certificate: certificate not valid for name \"localhost\"; \
            certificate is only valid for DnsName(\"other.example\") or DnsName(\"www.other.example\"), SNI: localhost";
        assert_eq!(
            certificate_finding(name).unwrap(),
            "the upstream's certificate is for other.example, www.other.example, not for \
             \"localhost\", the name handoff verifies: \
             set the upstream's `sni` to a name the certificate carries, or reissue it"
        );
        let issuer =
            "TLS connect() failed: invalid peer certificate: UnknownIssuer, SNI: app.internal";
        assert!(certificate_finding(issuer)
            .unwrap()
            .starts_with("the upstream's certificate is signed by a CA handoff does not trust"));
        assert_eq!(certificate_finding("received corrupt message"), None);
    }
}
