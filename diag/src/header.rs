//! The names of the headers handoff writes; the only place they are spelled.

use http::HeaderName;

/// RFC 9209 `Proxy-Status`: who failed and how.
pub const PROXY_STATUS: HeaderName = HeaderName::from_static("proxy-status");
/// The reason label, a plain token nginx can log as `$upstream_http_x_handoff_reason`.
pub const X_HANDOFF_REASON: HeaderName = HeaderName::from_static("x-handoff-reason");
/// The request id nginx sent, or the one handoff generated; also forwarded upstream.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// [`X_REQUEST_ID`] as written into a request, in its conventional spelling: pingora's
/// case-preserving header maps take a `&'static str` without copying it.
pub const X_REQUEST_ID_TITLED: &str = "X-Request-Id";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titled_request_id_is_the_same_header() {
        assert_eq!(
            X_REQUEST_ID,
            HeaderName::try_from(X_REQUEST_ID_TITLED).unwrap()
        );
    }
}
