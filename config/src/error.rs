//! The crate's error type and the [`Problem`]s it carries.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// Why a configuration could not be turned into [`Settings`](crate::Settings).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The text was read but is not a valid configuration: every problem found, in file
    /// order. TOML syntax errors are problems too (the parser stops at the first one).
    #[error("{}", lines(.0))]
    Invalid(Vec<Problem>),
}

/// One thing wrong with a configuration (or, in [`Settings::warnings`](crate::Settings),
/// one thing worth a second look).
///
/// Displays as `origin:line:column: key: message`, or `origin: key: message` when no
/// position is known (a missing section, a command-line value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where the configuration came from: a file name, or `command line`.
    pub origin: String,
    /// The key path, e.g. `upstream[1].connect_timeout` (array indices count from 0);
    /// empty for a TOML syntax error.
    pub key: String,
    /// 1-based line of the offending key or value, when known.
    pub line: Option<usize>,
    /// 1-based column (in characters) of the offending key or value, when known.
    pub column: Option<usize>,
    /// What is wrong, lowercase, one line.
    pub message: String,
}

/// Collects problems and warnings while a configuration is read and validated, turning
/// byte spans into line and column.
#[derive(Debug)]
pub(crate) struct Report<'a> {
    origin: &'a str,
    text: &'a str,
    pub(crate) errors: Vec<Problem>,
    pub(crate) warnings: Vec<Problem>,
}

impl ConfigError {
    /// One line per problem, ready to print (what `handoff check` shows before exiting 64).
    pub fn problems(&self) -> Vec<String> {
        match self {
            ConfigError::Read { .. } => vec![self.to_string()],
            ConfigError::Invalid(problems) => problems.iter().map(Problem::to_string).collect(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl<'a> Report<'a> {
    /// A report for `text`, read from `origin`.
    pub(crate) fn new(origin: &'a str, text: &'a str) -> Self {
        Report {
            origin,
            text,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Records an error at `span` (byte offsets into the text), if known.
    pub(crate) fn error(
        &mut self,
        key: impl Into<String>,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) {
        let problem = self.problem(key.into(), span, message.into());
        self.errors.push(problem);
    }

    /// Records a warning: the configuration is usable but probably not what was meant.
    pub(crate) fn warn(
        &mut self,
        key: impl Into<String>,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) {
        let problem = self.problem(key.into(), span, message.into());
        self.warnings.push(problem);
    }

    /// The errors as a [`ConfigError`], or the warnings when there was no error.
    pub(crate) fn finish(mut self) -> Result<Vec<Problem>, ConfigError> {
        // File order reads best; problems without a position (a missing section) last.
        let position = |p: &Problem| (p.line.unwrap_or(usize::MAX), p.column.unwrap_or(0));
        if self.errors.is_empty() {
            self.warnings.sort_by_key(position);
            Ok(self.warnings)
        } else {
            self.errors.sort_by_key(position);
            Err(ConfigError::Invalid(self.errors))
        }
    }

    fn problem(&self, key: String, span: Option<Range<usize>>, message: String) -> Problem {
        let (line, column) = match span {
            Some(span) => {
                let (line, column) = line_column(self.text, span.start);
                (Some(line), Some(column))
            }
            None => (None, None),
        };
        Problem {
            origin: self.origin.to_owned(),
            key,
            line,
            column,
            // A problem is one line of `handoff check` output, whatever the parser said.
            message: message.split_whitespace().collect::<Vec<_>>().join(" "),
        }
    }
}

/// 1-based line and column (counted in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn lines(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        // "é" is two bytes but one column.
        assert_eq!(line_column(text, 10), (2, 4));
        assert_eq!(line_column(text, 999), (3, 1));
    }

    #[test]
    fn display_with_and_without_position() {
        let mut report = Report::new("handoff.toml", "\n\nx");
        report.error("upstream[1].name", Some(2..3), "must not be empty");
        report.error("upstream", None, "at least one [[upstream]] is required");
        let lines = report.finish().unwrap_err().problems();
        assert_eq!(
            lines,
            [
                "handoff.toml:3:1: upstream[1].name: must not be empty",
                "handoff.toml: upstream: at least one [[upstream]] is required",
            ]
        );
    }
}
