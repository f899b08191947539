//! The names of the headers handoff writes; the only place they are spelled.

use http::HeaderName;

/// RFC 9209 `Proxy-Status`: who failed and how.
pub const PROXY_STATUS: HeaderName = HeaderName::from_static("proxy-status");
/// The reason label, a plain token nginx can log as `$upstream_http_x_handoff_reason`.
pub const X_HANDOFF_REASON: HeaderName = HeaderName::from_static("x-handoff-reason");
/// The request id nginx sent, or the one handoff generated; also forwarded upstream.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
