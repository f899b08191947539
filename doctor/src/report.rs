//! What doctor found: one [`Finding`] per thing checked, and the two ways to print them
//! (for people, and `--json` with a versioned schema).

use std::fmt::Write as _;

use handoff_diag::Reason;
use serde::Serialize;

use crate::nginx::Source;

/// The `--json` schema's version: bumped when a field changes meaning or goes away.
pub const JSON_VERSION: u32 = 1;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nothing wrong found.
    Ok,
    /// Not wrong yet, but it hides or risks a failure.
    Warn,
    /// This causes failures (or would, as soon as a request comes).
    Fail,
    /// Not checked, and `skip_reason` says why.
    Skip,
}

/// One check's result about one subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The check's stable id (`target.socket`).
    pub id: &'static str,
    /// How it came out.
    pub status: Status,
    /// What it is about: an address, a socket, a file, a pool.
    pub subject: String,
    /// The file and line it is about, when there is one.
    #[serde(serialize_with = "source")]
    pub source: Option<Source>,
    /// The handoff reason this would cause (its label), if any.
    #[serde(serialize_with = "reason")]
    pub reason: Option<Reason>,
    /// What was found.
    pub message: String,
    /// The next step, for warn and fail.
    pub hint: Option<String>,
    /// Why the check was skipped.
    pub skip_reason: Option<String>,
}

/// Every finding, in checklist order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The findings.
    pub findings: Vec<Finding>,
    /// One line each about what was read (`nginx: /etc/nginx/nginx.conf (7 files)`).
    pub inputs: Vec<String>,
}

/// How many findings have each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Ok.
    pub ok: usize,
    /// Warn.
    pub warn: usize,
    /// Fail.
    pub fail: usize,
    /// Skip.
    pub skip: usize,
}

// === impl Status ===

impl Status {
    /// `ok`, `warn`, `fail`, `skip`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }
}

// === impl Finding ===

impl Finding {
    /// A finding with `status`, `subject` and `message`, nothing else yet.
    pub fn new(
        id: &'static str,
        status: Status,
        subject: impl Into<String>,
        message: impl Into<String>,
    ) -> Finding {
        Finding {
            id,
            status,
            subject: subject.into(),
            source: None,
            reason: None,
            message: message.into(),
            hint: None,
            skip_reason: None,
        }
    }

    /// A skipped check and why.
    pub fn skip(id: &'static str, subject: impl Into<String>, why: impl Into<String>) -> Finding {
        let why = why.into();
        Finding {
            skip_reason: Some(why.clone()),
            ..Finding::new(id, Status::Skip, subject, why)
        }
    }

    /// With the file and line it is about.
    pub fn at(mut self, source: Option<&Source>) -> Finding {
        self.source = source.cloned();
        self
    }

    /// With the handoff reason it would cause.
    pub fn reason(mut self, reason: Reason) -> Finding {
        self.reason = Some(reason);
        self
    }

    /// With the next step.
    pub fn hint(mut self, hint: impl Into<String>) -> Finding {
        self.hint = Some(hint.into());
        self
    }
}

// === impl Report ===

impl Report {
    /// The count of each status.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for f in &self.findings {
            match f.status {
                Status::Ok => s.ok += 1,
                Status::Warn => s.warn += 1,
                Status::Fail => s.fail += 1,
                Status::Skip => s.skip += 1,
            }
        }
        s
    }

    /// 0 when nothing failed (and, with `strict`, nothing warned), else 1.
    pub fn exit_code(&self, strict: bool) -> u8 {
        let s = self.summary();
        u8::from(s.fail > 0 || (strict && s.warn > 0))
    }

    /// The `--json` document, pretty-printed: `{"version", "summary", "checks": [...]}`,
    /// fields in the documented order.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Document<'a> {
            version: u32,
            summary: Summary,
            checks: &'a [Finding],
        }
        let doc = Document {
            version: JSON_VERSION,
            summary: self.summary(),
            checks: &self.findings,
        };
        serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
    }

    /// The report for people, in checklist order: per finding its status, id and subject,
    /// then where, what, the reason it would cause and the next step.
    pub fn to_human(&self) -> String {
        let mut out = String::new();
        for input in &self.inputs {
            let _ = writeln!(out, "{input}");
        }
        if !self.inputs.is_empty() {
            out.push('\n');
        }
        for f in &self.findings {
            let _ = writeln!(out, "{:<4}  {:<22} {}", f.status.as_str(), f.id, f.subject);
            let indent = " ".repeat(6);
            if let Some(source) = &f.source {
                let _ = writeln!(out, "{indent}at {source}");
            }
            if f.status != Status::Ok || !f.message.is_empty() {
                let _ = writeln!(out, "{indent}{}", f.message);
            }
            if let Some(reason) = f.reason {
                let _ = writeln!(out, "{indent}reason: {}", reason.as_str());
            }
            if let Some(hint) = &f.hint {
                let _ = writeln!(out, "{indent}next: {hint}");
            }
        }
        let s = self.summary();
        let _ = writeln!(
            out,
            "\n{} ok, {} warn, {} fail, {} skip",
            s.ok, s.warn, s.fail, s.skip
        );
        out
    }
}

fn source<S: serde::Serializer>(source: &Option<Source>, s: S) -> Result<S::Ok, S::Error> {
    match source {
        Some(src) => serde_json::json!({"file": src.file.display().to_string(), "line": src.line})
            .serialize(s),
        None => s.serialize_none(),
    }
}

fn reason<S: serde::Serializer>(reason: &Option<Reason>, s: S) -> Result<S::Ok, S::Error> {
    match reason {
        Some(r) => s.serialize_str(r.as_str()),
        None => s.serialize_none(),
    }
}
