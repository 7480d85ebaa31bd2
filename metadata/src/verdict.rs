use serde::{Deserialize, Serialize};
use std::fmt;

/// What a cell's run means. Only `pass`, `fail`, `crash` and `timeout` say
/// something about the component; the others say why nothing could be said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Pass,
    Fail,
    Crash,
    Timeout,
    /// The harness or the emulator failed; says nothing about the component.
    InfraError,
    /// This cell cannot run here (a kernel or toolchain out of reach).
    Unavailable,
    /// Passed and failed across retries (`--retries`); never gates alone.
    Flaky,
}

/// Everything a report says about a verdict, in one place.
struct Names {
    /// The contract's spelling (`cells.jsonl`, JUnit properties, CSS classes).
    name: &'static str,
    /// Beside the word in Markdown tables (never the only carrier of meaning).
    emoji: &'static str,
    /// Beside the word where emoji fonts may be missing (HTML, terminals).
    glyph: &'static str,
    /// In the docs table: what a reader of the docs needs to hear.
    words: &'static str,
    /// In sentences: "v1.14.0 fails; passes with …".
    verb: &'static str,
    /// A finding that the component misbehaved: gates CI.
    failure: bool,
    /// Says something about the component, so two runs can be compared.
    comparable: bool,
}

const fn names(verdict: Verdict) -> Names {
    let (name, emoji, glyph, words, verb, failure, comparable) = match verdict {
        Verdict::Pass => ("pass", "✅", "✓", "works", "passes", false, true),
        Verdict::Fail => ("fail", "❌", "✗", "fails", "fails", true, true),
        Verdict::Crash => ("crash", "💥", "☠", "crashes", "crashes", true, true),
        Verdict::Timeout => ("timeout", "⏱️", "◷", "hangs", "times out", true, true),
        Verdict::InfraError => (
            "infra-error",
            "⚠️",
            "⚠",
            "not tested (harness error)",
            "hits an infrastructure error",
            false,
            false,
        ),
        Verdict::Unavailable => (
            "unavailable",
            "➖",
            "–",
            "not tested here",
            "is unavailable",
            false,
            false,
        ),
        Verdict::Flaky => ("flaky", "🔁", "↻", "flaky", "is flaky", false, false),
    };
    Names {
        name,
        emoji,
        glyph,
        words,
        verb,
        failure,
        comparable,
    }
}

impl Verdict {
    /// Every verdict, in the order legends list them.
    pub const ALL: [Verdict; 7] = [
        Verdict::Pass,
        Verdict::Fail,
        Verdict::Crash,
        Verdict::Timeout,
        Verdict::Flaky,
        Verdict::InfraError,
        Verdict::Unavailable,
    ];

    pub const fn as_str(self) -> &'static str {
        names(self).name
    }

    pub const fn emoji(self) -> &'static str {
        names(self).emoji
    }

    pub const fn glyph(self) -> &'static str {
        names(self).glyph
    }

    pub const fn words(self) -> &'static str {
        names(self).words
    }

    pub const fn verb(self) -> &'static str {
        names(self).verb
    }

    /// `fail`, `crash` or `timeout`: the component misbehaved, and CI gates on it.
    pub const fn is_failure(self) -> bool {
        names(self).failure
    }

    /// Whether two runs can be compared on this cell; `unavailable`,
    /// `infra-error` and `flaky` are never counted as regressions.
    pub const fn is_comparable(self) -> bool {
        names(self).comparable
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_spelling_is_what_serde_writes() {
        for verdict in Verdict::ALL {
            let json = serde_json::to_string(&verdict).unwrap();
            assert_eq!(json, format!("\"{}\"", verdict.as_str()));
            assert_eq!(serde_json::from_str::<Verdict>(&json).unwrap(), verdict);
        }
    }

    #[test]
    fn only_findings_about_the_component_gate() {
        let failing: Vec<Verdict> = Verdict::ALL
            .into_iter()
            .filter(|v| v.is_failure())
            .collect();
        assert_eq!(failing, [Verdict::Fail, Verdict::Crash, Verdict::Timeout]);
        for verdict in [Verdict::InfraError, Verdict::Unavailable, Verdict::Flaky] {
            assert!(!verdict.is_comparable() && !verdict.is_failure());
        }
    }
}
