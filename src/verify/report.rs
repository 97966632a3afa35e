//! Check lists: named checks, each ✓ or ✗ with the evidence that decided
//! it, grouped in sections; printed as text or JSON.

use std::fmt::Write as _;

use console::style;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    /// What was observed: names, roles, addresses, counts.
    pub evidence: String,
}

impl Check {
    pub fn new(name: impl Into<String>, ok: bool, evidence: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            ok,
            evidence: evidence.into(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Section {
    pub title: String,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckList {
    pub sections: Vec<Section>,
}

impl CheckList {
    /// Starts a section; checks go to the last one.
    pub fn section(&mut self, title: impl Into<String>) {
        self.sections.push(Section {
            title: title.into(),
            checks: Vec::new(),
        });
    }

    pub fn push(&mut self, check: Check) {
        if self.sections.is_empty() {
            self.section("checks");
        }
        self.sections
            .last_mut()
            .expect("a section")
            .checks
            .push(check);
    }

    pub fn check(&mut self, name: impl Into<String>, ok: bool, evidence: impl Into<String>) {
        self.push(Check::new(name, ok, evidence));
    }

    pub fn checks(&self) -> impl Iterator<Item = &Check> {
        self.sections.iter().flat_map(|s| &s.checks)
    }

    pub fn passed(&self) -> bool {
        self.checks().all(|c| c.ok)
    }

    pub fn failed(&self) -> Vec<&Check> {
        self.checks().filter(|c| !c.ok).collect()
    }

    /// `✓ name: evidence` lines under each section title, and a last line
    /// counting passes and failures.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for s in &self.sections {
            let _ = writeln!(out, "{}", style(&s.title).bold());
            for c in &s.checks {
                let mark = if c.ok {
                    style("✓").green()
                } else {
                    style("✗").red().bold()
                };
                let _ = writeln!(
                    out,
                    "  {mark} {}: {}",
                    c.name,
                    c.evidence.replace('\n', "\n      ")
                );
            }
        }
        let failed = self.failed().len();
        let total = self.checks().count();
        let _ = writeln!(
            out,
            "{}",
            if failed == 0 {
                style(format!("all {total} checks passed"))
                    .green()
                    .to_string()
            } else {
                style(format!("{failed} of {total} checks failed"))
                    .red()
                    .bold()
                    .to_string()
            }
        );
        out
    }
}

/// The median and the maximum.
pub fn median_max(values: &[f64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some((median, v[n - 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_failure_fails_the_list_and_is_counted() {
        let mut l = CheckList::default();
        l.section("group ha");
        l.check("one master", true, "amq1");
        assert!(l.passed());
        l.check("slaves refuse clients", false, "amq2 answered CONNECTED");
        assert!(!l.passed());
        let text = l.render_text();
        assert!(text.contains("✓ one master: amq1"), "{text}");
        assert!(text.contains("✗ slaves refuse clients: amq2 answered CONNECTED"));
        assert!(text.contains("1 of 2 checks failed"), "{text}");
    }

    #[test]
    fn median_is_the_middle_value() {
        assert_eq!(median_max(&[3.0, 1.0, 2.0]), Some((2.0, 3.0)));
        assert_eq!(median_max(&[4.0, 1.0]), Some((2.5, 4.0)));
        assert_eq!(median_max(&[]), None);
    }
}
