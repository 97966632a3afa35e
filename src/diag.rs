//! Diagnostics about an inventory: each one names the file, line and column,
//! says what is wrong and what to do. Validation collects all of them before
//! giving up, so an operator fixes an inventory in one pass.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use console::Style;
use serde::Serialize;

/// How bad a diagnostic is: errors make the inventory invalid (exit code 1),
/// warnings are shown but the plan goes ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A position in the inventory: 1-based line and column (in characters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// The whole source line, for the excerpt under the message.
    #[serde(skip)]
    pub source_line: String,
    /// Width of the marked region on that line, in characters (at least 1).
    #[serde(skip)]
    pub width: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One finding about the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub location: Location,
    /// What is wrong, in one sentence.
    pub message: String,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// Another place that takes part (e.g. the first of two duplicate names).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub related: Option<(String, Location)>,
}

impl fmt::Display for Diagnostic {
    /// The one-line form: `file:line:col: error: message (help: ...)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}: {sev}: {}", self.location, self.message)?;
        if let Some((what, loc)) = &self.related {
            write!(f, " ({what} at {loc})")?;
        }
        if let Some(help) = &self.help {
            write!(f, "; {help}")?;
        }
        Ok(())
    }
}

impl Diagnostic {
    /// A rustc-like rendering with the source line and a caret underline.
    /// Colours follow `console`'s detection for stderr (off when not a TTY).
    pub fn render(&self) -> String {
        let (label, colour) = match self.severity {
            Severity::Error => ("error", Style::new().red().bold().for_stderr()),
            Severity::Warning => ("warning", Style::new().yellow().bold().for_stderr()),
        };
        let blue = Style::new().blue().bold().for_stderr();
        let bold = Style::new().bold().for_stderr();
        let loc = &self.location;
        let gutter = loc.line.to_string().len();
        let pad = " ".repeat(gutter);
        let mut out = format!(
            "{}{} {}\n{pad}{} {loc}\n",
            colour.apply_to(label),
            bold.apply_to(":"),
            bold.apply_to(&self.message),
            blue.apply_to("-->"),
        );
        if !loc.source_line.is_empty() {
            let caret_pad = " ".repeat(loc.column.saturating_sub(1));
            out.push_str(&format!(
                "{pad} {bar}\n{} {bar} {}\n{pad} {bar} {caret_pad}{}\n",
                blue.apply_to(loc.line),
                loc.source_line,
                colour.apply_to("^".repeat(loc.width.max(1))),
                bar = blue.apply_to("|"),
            ));
        }
        if let Some((what, related)) = &self.related {
            out.push_str(&format!(
                "{pad} {} note: {what} at {related}\n",
                blue.apply_to("=")
            ));
        }
        if let Some(help) = &self.help {
            out.push_str(&format!("{pad} {} help: {help}\n", blue.apply_to("=")));
        }
        out
    }
}

/// Everything found wrong with an inventory. Returned as the error of
/// [`crate::topology::Topology::load`]; `warnings` are kept so the caller can
/// show them next to the errors.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Diagnostics {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty() && self.warnings.is_empty()
    }

    /// Errors and warnings in source order (errors first on the same line).
    pub fn all(&self) -> Vec<&Diagnostic> {
        let mut all: Vec<&Diagnostic> = self.errors.iter().chain(&self.warnings).collect();
        all.sort_by_key(|d| {
            (
                d.location.line,
                d.location.column,
                d.severity == Severity::Warning,
            )
        });
        all
    }

    /// The rustc-like rendering of every diagnostic, then a summary line.
    pub fn render(&self) -> String {
        let mut out: String = self.all().iter().map(|d| d.render() + "\n").collect();
        let n = self.errors.len();
        if n > 0 {
            let red = Style::new().red().bold().for_stderr();
            out.push_str(&format!(
                "{}: inventory is invalid: {n} error{}, {} warning{}\n",
                red.apply_to("error"),
                if n == 1 { "" } else { "s" },
                self.warnings.len(),
                if self.warnings.len() == 1 { "" } else { "s" },
            ));
        }
        out
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in self.all() {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Maps byte offsets of one source file to line/column positions.
pub struct SourceMap<'a> {
    file: &'a Path,
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> SourceMap<'a> {
    pub fn new(file: &'a Path, text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            file,
            text,
            line_starts,
        }
    }

    pub fn file(&self) -> &Path {
        self.file
    }

    /// The span of the key whose value starts at `value_start` (`key = value`
    /// on one line); used where serde gives only the value's span.
    pub fn key_before(&self, value_start: usize) -> Range<usize> {
        let head = &self.text[..value_start.min(self.text.len())];
        let Some(eq) = head.trim_end().strip_suffix('=') else {
            return value_start..value_start;
        };
        let key = eq.trim_end();
        let end = key.len();
        let start = if key.ends_with(['"', '\'']) {
            key[..end - 1].rfind(['"', '\'']).unwrap_or(0)
        } else {
            key.rfind(|c: char| !(c.is_ascii_alphanumeric() || "_-.".contains(c)))
                .map_or(0, |i| i + 1)
        };
        start..end
    }

    /// The location of a byte span. Multi-line spans are marked to the end of
    /// their first line.
    pub fn locate(&self, span: Range<usize>) -> Location {
        let start = span.start.min(self.text.len());
        let line_idx = match self.line_starts.binary_search(&start) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let line_start = self.line_starts[line_idx];
        let line_end = self.text[line_start..]
            .find('\n')
            .map_or(self.text.len(), |i| line_start + i);
        let source_line = self.text[line_start..line_end].trim_end_matches('\r');
        let column = self.text[line_start..start].chars().count() + 1;
        let end = span.end.clamp(start, line_end);
        let width = self.text[start..end].chars().count().max(1);
        Location {
            file: self.file.to_path_buf(),
            line: line_idx + 1,
            column,
            source_line: source_line.to_string(),
            width,
        }
    }
}

/// Collects diagnostics while validating one file.
pub struct Collector<'a> {
    pub map: SourceMap<'a>,
    pub out: Diagnostics,
}

impl<'a> Collector<'a> {
    pub fn new(map: SourceMap<'a>) -> Self {
        Self {
            map,
            out: Diagnostics::default(),
        }
    }

    fn push(
        &mut self,
        severity: Severity,
        span: Range<usize>,
        message: impl Into<String>,
        help: Option<String>,
    ) -> &mut Diagnostic {
        let d = Diagnostic {
            severity,
            location: self.map.locate(span),
            message: message.into(),
            help,
            related: None,
        };
        let list = match severity {
            Severity::Error => &mut self.out.errors,
            Severity::Warning => &mut self.out.warnings,
        };
        list.push(d);
        list.last_mut().expect("just pushed")
    }

    pub fn error(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.push(Severity::Error, span, message, Some(help.into()));
    }

    pub fn warn(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.push(Severity::Warning, span, message, Some(help.into()));
    }

    /// An error that also points at an earlier place (a first definition).
    pub fn error_related(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        help: impl Into<String>,
        what: &str,
        related: Range<usize>,
    ) {
        let loc = self.map.locate(related);
        let d = self.push(Severity::Error, span, message, Some(help.into()));
        d.related = Some((what.to_string(), loc));
    }

    pub fn has_errors(&self) -> bool {
        !self.out.errors.is_empty()
    }
}
