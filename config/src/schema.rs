//! What a configuration file may contain: the raw, spanned form of every section.
//!
//! Why not `#[derive(Deserialize)]` with `#[serde(deny_unknown_fields)]` on each section?
//! serde stops at the first unknown key or mistyped value, and handoff reports every
//! problem in one run (like `nginx -t`, but complete). So serde deserializes the file into
//! a generic [`Node`] tree that keeps the byte span of every value, and the readers here
//! check each section against its list of known keys and expected types, recording a
//! problem for each mismatch and carrying on. The result is the raw structs below: every
//! field that was present and of the right type, with its span, for
//! [`validate`](crate::validate) to check the values.

use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

use crate::error::Report;

/// Top-level keys.
const TOP_KEYS: &[&str] = &["server", "admin", "annotate", "log", "upstream"];
/// `[server]` keys.
const SERVER_KEYS: &[&str] = &[
    "grace_period",
    "client_header_timeout",
    "client_body_timeout",
    "keepalive_timeout",
    "keepalive_requests",
    "send_timeout",
    "max_request_header_bytes",
    "threads",
    "upstream_pool_size",
    "recent_failures",
];
/// `[admin]` keys.
const ADMIN_KEYS: &[&str] = &["listen"];
/// `[annotate]` keys.
const ANNOTATE_KEYS: &[&str] = &["expose", "proxy_name", "debug_header", "debug_token"];
/// `[log]` keys.
const LOG_KEYS: &[&str] = &["format", "access", "level"];
/// `[[upstream]]` keys.
const UPSTREAM_KEYS: &[&str] = &[
    "name",
    "listen",
    "address",
    "sni",
    "ca_file",
    "verify",
    "connect_timeout",
    "header_timeout",
    "read_timeout",
    "write_timeout",
    "pool_idle_timeout",
    "max_response_header_bytes",
    "nginx_buffer_bytes",
];

const DURATION: &str = "a duration string such as \"3s\"";
const STRING: &str = "a string";
const INTEGER: &str = "an integer";
const BOOLEAN: &str = "a boolean (true or false)";

/// A whole configuration file, as written: absent keys are `None`. Values of the wrong
/// type are `None` too, their problem already reported.
#[derive(Debug, Default)]
pub(crate) struct RawConfig {
    pub(crate) server: RawServer,
    pub(crate) admin: RawAdmin,
    pub(crate) annotate: RawAnnotate,
    pub(crate) log: RawLog,
    /// Every `[[upstream]]` table; when there is none, that has been reported.
    pub(crate) upstreams: Vec<RawUpstream>,
}

/// `[server]`.
#[derive(Debug, Default)]
pub(crate) struct RawServer {
    pub(crate) grace_period: Option<Spanned<String>>,
    pub(crate) client_header_timeout: Option<Spanned<String>>,
    pub(crate) client_body_timeout: Option<Spanned<String>>,
    pub(crate) keepalive_timeout: Option<Spanned<String>>,
    pub(crate) keepalive_requests: Option<Spanned<i64>>,
    pub(crate) send_timeout: Option<Spanned<String>>,
    pub(crate) max_request_header_bytes: Option<Spanned<i64>>,
    pub(crate) threads: Option<Spanned<i64>>,
    pub(crate) upstream_pool_size: Option<Spanned<i64>>,
    pub(crate) recent_failures: Option<Spanned<i64>>,
}

/// `[admin]`.
#[derive(Debug, Default)]
pub(crate) struct RawAdmin {
    pub(crate) listen: Option<Spanned<String>>,
}

/// `[annotate]`.
#[derive(Debug, Default)]
pub(crate) struct RawAnnotate {
    pub(crate) expose: Option<Spanned<String>>,
    pub(crate) proxy_name: Option<Spanned<String>>,
    pub(crate) debug_header: Option<Spanned<String>>,
    pub(crate) debug_token: Option<Spanned<String>>,
}

/// `[log]`.
#[derive(Debug, Default)]
pub(crate) struct RawLog {
    pub(crate) format: Option<Spanned<String>>,
    pub(crate) access: Option<Spanned<bool>>,
    pub(crate) level: Option<Spanned<String>>,
}

/// One `[[upstream]]`. `name`, `listen` and `address` are required: when one is `None`,
/// its absence (or wrong type) has been reported.
#[derive(Debug)]
pub(crate) struct RawUpstream {
    /// The key path of this table, `upstream[i]`.
    pub(crate) path: String,
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) listen: Option<Spanned<String>>,
    pub(crate) address: Option<Spanned<String>>,
    pub(crate) sni: Option<Spanned<String>>,
    pub(crate) ca_file: Option<Spanned<String>>,
    pub(crate) verify: Option<Spanned<bool>>,
    pub(crate) connect_timeout: Option<Spanned<String>>,
    pub(crate) header_timeout: Option<Spanned<String>>,
    pub(crate) read_timeout: Option<Spanned<String>>,
    pub(crate) write_timeout: Option<Spanned<String>>,
    pub(crate) pool_idle_timeout: Option<Spanned<String>>,
    pub(crate) max_response_header_bytes: Option<Spanned<i64>>,
    pub(crate) nginx_buffer_bytes: Option<Spanned<i64>>,
}

/// Any TOML value, with the span of every value nested in it.
///
/// Keys carry no span of their own: a key deserialized as `Spanned` breaks on TOML
/// datetimes, so problems about a key point at its value, which is on the same line.
#[derive(Debug)]
enum Node {
    Table(Vec<(String, Spanned<Node>)>),
    Array(Vec<Spanned<Node>>),
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Datetime(String),
}

/// A table being read: its key path, span and entries.
struct Section<'a> {
    path: String,
    span: Option<Range<usize>>,
    entries: &'a [(String, Spanned<Node>)],
}

/// A value's type, and the value when short, for "expected X, got Y" messages.
struct Got<'a>(&'a Node);

/// The `toml` deserializer hands a datetime over as a one-entry map with this key.
const DATETIME_KEY: &str = "$__toml_private_datetime";

impl RawConfig {
    /// Parses `text`, recording a problem for every syntax error (TOML parsers stop at the
    /// first), unknown key and mistyped value.
    pub(crate) fn read(text: &str, report: &mut Report<'_>) -> RawConfig {
        let root = match toml::from_str::<Node>(text) {
            Ok(root) => root,
            Err(error) => {
                report.error(
                    "",
                    error.span(),
                    format!("invalid TOML: {}", error.message()),
                );
                return RawConfig::default();
            }
        };
        let Node::Table(entries) = &root else {
            return RawConfig::default();
        };
        let top = Section {
            path: String::new(),
            span: None,
            entries,
        };
        top.deny_unknown(report, TOP_KEYS);

        let mut raw = RawConfig::default();
        if let Some(server) = top.table(report, "server", SERVER_KEYS) {
            raw.server = RawServer {
                grace_period: server.string(report, "grace_period", DURATION),
                client_header_timeout: server.string(report, "client_header_timeout", DURATION),
                client_body_timeout: server.string(report, "client_body_timeout", DURATION),
                keepalive_timeout: server.string(report, "keepalive_timeout", DURATION),
                keepalive_requests: server.integer(report, "keepalive_requests"),
                send_timeout: server.string(report, "send_timeout", DURATION),
                max_request_header_bytes: server.integer(report, "max_request_header_bytes"),
                threads: server.integer(report, "threads"),
                upstream_pool_size: server.integer(report, "upstream_pool_size"),
                recent_failures: server.integer(report, "recent_failures"),
            };
        }
        if let Some(admin) = top.table(report, "admin", ADMIN_KEYS) {
            raw.admin = RawAdmin {
                listen: admin.string(report, "listen", STRING),
            };
        }
        if let Some(annotate) = top.table(report, "annotate", ANNOTATE_KEYS) {
            raw.annotate = RawAnnotate {
                expose: annotate.string(report, "expose", STRING),
                proxy_name: annotate.string(report, "proxy_name", STRING),
                debug_header: annotate.string(report, "debug_header", STRING),
                debug_token: annotate.string(report, "debug_token", STRING),
            };
        }
        if let Some(log) = top.table(report, "log", LOG_KEYS) {
            raw.log = RawLog {
                format: log.string(report, "format", STRING),
                access: log.boolean(report, "access"),
                level: log.string(report, "level", STRING),
            };
        }
        raw.upstreams = top.upstreams(report);
        raw
    }
}

impl RawUpstream {
    fn read(section: &Section<'_>, report: &mut Report<'_>) -> RawUpstream {
        section.deny_unknown(report, UPSTREAM_KEYS);
        RawUpstream {
            path: section.path.clone(),
            name: section.required_string(report, "name"),
            listen: section.required_string(report, "listen"),
            address: section.required_string(report, "address"),
            sni: section.string(report, "sni", STRING),
            ca_file: section.string(report, "ca_file", STRING),
            verify: section.boolean(report, "verify"),
            connect_timeout: section.string(report, "connect_timeout", DURATION),
            header_timeout: section.string(report, "header_timeout", DURATION),
            read_timeout: section.string(report, "read_timeout", DURATION),
            write_timeout: section.string(report, "write_timeout", DURATION),
            pool_idle_timeout: section.string(report, "pool_idle_timeout", DURATION),
            max_response_header_bytes: section.integer(report, "max_response_header_bytes"),
            nginx_buffer_bytes: section.integer(report, "nginx_buffer_bytes"),
        }
    }
}

impl<'a> Section<'a> {
    /// `key` inside this section, for messages.
    fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn get(&self, key: &str) -> Option<&'a Spanned<Node>> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Reports every key not in `known`.
    fn deny_unknown(&self, report: &mut Report<'_>, known: &[&str]) {
        for (key, value) in self.entries {
            if !known.contains(&key.as_str()) {
                report.error(
                    self.path_of(key),
                    Some(value.span()),
                    format!("unknown key; expected one of: {}", known.join(", ")),
                );
            }
        }
    }

    /// The sub-table `key`, its unknown keys reported; `None` when absent or not a table.
    fn table(&self, report: &mut Report<'_>, key: &str, known: &[&str]) -> Option<Section<'a>> {
        let value = self.get(key)?;
        let path = self.path_of(key);
        match value.get_ref() {
            Node::Table(entries) => {
                let section = Section {
                    path,
                    span: Some(value.span()),
                    entries,
                };
                section.deny_unknown(report, known);
                Some(section)
            }
            other => {
                let message = format!("expected a table [{key}], got {}", Got(other));
                report.error(path, Some(value.span()), message);
                None
            }
        }
    }

    /// The `[[upstream]]` array of tables, of which there must be at least one.
    fn upstreams(&self, report: &mut Report<'_>) -> Vec<RawUpstream> {
        const REQUIRED: &str = "at least one [[upstream]] is required";
        let Some(value) = self.get("upstream") else {
            report.error("upstream", None, REQUIRED);
            return Vec::new();
        };
        let Node::Array(items) = value.get_ref() else {
            let message = format!("expected [[upstream]] tables, got {}", Got(value.get_ref()));
            report.error("upstream", Some(value.span()), message);
            return Vec::new();
        };
        if items.is_empty() {
            report.error("upstream", Some(value.span()), REQUIRED);
        }
        let mut upstreams = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let path = format!("upstream[{index}]");
            match item.get_ref() {
                Node::Table(entries) => {
                    let section = Section {
                        path,
                        span: Some(item.span()),
                        entries,
                    };
                    upstreams.push(RawUpstream::read(&section, report));
                }
                other => {
                    let message = format!("expected an [[upstream]] table, got {}", Got(other));
                    report.error(path, Some(item.span()), message);
                }
            }
        }
        upstreams
    }

    /// A string value; `expected` describes it in the type-mismatch message.
    fn string(
        &self,
        report: &mut Report<'_>,
        key: &str,
        expected: &str,
    ) -> Option<Spanned<String>> {
        self.typed(report, key, expected, |node| match node {
            Node::String(s) => Some(s.clone()),
            _ => None,
        })
    }

    /// A string that must be present; its absence is reported at the section.
    fn required_string(&self, report: &mut Report<'_>, key: &str) -> Option<Spanned<String>> {
        if self.get(key).is_none() {
            report.error(
                self.path_of(key),
                self.span.clone(),
                "required key is missing",
            );
            return None;
        }
        self.string(report, key, STRING)
    }

    fn integer(&self, report: &mut Report<'_>, key: &str) -> Option<Spanned<i64>> {
        self.typed(report, key, INTEGER, |node| match node {
            Node::Integer(i) => Some(*i),
            _ => None,
        })
    }

    fn boolean(&self, report: &mut Report<'_>, key: &str) -> Option<Spanned<bool>> {
        self.typed(report, key, BOOLEAN, |node| match node {
            Node::Boolean(b) => Some(*b),
            _ => None,
        })
    }

    fn typed<T>(
        &self,
        report: &mut Report<'_>,
        key: &str,
        expected: &str,
        convert: impl Fn(&Node) -> Option<T>,
    ) -> Option<Spanned<T>> {
        let value = self.get(key)?;
        match convert(value.get_ref()) {
            Some(converted) => Some(Spanned::new(value.span(), converted)),
            None => {
                let message = format!("expected {expected}, got {}", Got(value.get_ref()));
                report.error(self.path_of(key), Some(value.span()), message);
                None
            }
        }
    }
}

impl fmt::Display for Got<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Node::Table(_) => f.write_str("a table"),
            Node::Array(_) => f.write_str("an array"),
            Node::String(s) if s.chars().count() <= 40 => write!(f, "string {s:?}"),
            Node::String(_) => f.write_str("a string"),
            Node::Integer(i) => write!(f, "integer {i}"),
            Node::Float(x) => write!(f, "float {x}"),
            Node::Boolean(b) => write!(f, "boolean {b}"),
            Node::Datetime(d) => write!(f, "datetime {d}"),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Boolean(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Integer(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        i64::try_from(v)
            .map(Node::Integer)
            .map_err(|_| E::custom("integer out of range"))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == DATETIME_KEY && entries.is_empty() {
                return Ok(Node::Datetime(map.next_value::<String>()?));
            }
            entries.push((key, map.next_value::<Spanned<Node>>()?));
        }
        Ok(Node::Table(entries))
    }
}
