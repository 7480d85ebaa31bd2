//! How real a cell's component was: the one table of fidelity names,
//! marks and words every report uses.

use serde::{Deserialize, Serialize};

/// How much of the component's own code a cell ran.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Fidelity {
    /// The component's own binary or image: as shipped (a registry image,
    /// a distribution's package) or built here from its module at the tag.
    Release,
    /// The component's own package at the tag, driven by a small harness
    /// program that imports it.
    UpstreamCode,
    /// A program written here after the bug was known, reproducing the
    /// component's mechanism; the cell says why nothing more real ran.
    StandIn,
}

impl Fidelity {
    pub const ALL: [Fidelity; 3] = [Fidelity::Release, Fidelity::UpstreamCode, Fidelity::StandIn];

    /// The contract's spelling (`release`, `upstream-code`, `stand-in`).
    pub fn name(self) -> &'static str {
        match self {
            Fidelity::Release => "release",
            Fidelity::UpstreamCode => "upstream-code",
            Fidelity::StandIn => "stand-in",
        }
    }

    /// A short mark for tables: `R`, `U`, `S`.
    pub fn mark(self) -> &'static str {
        match self {
            Fidelity::Release => "R",
            Fidelity::UpstreamCode => "U",
            Fidelity::StandIn => "S",
        }
    }

    /// The legend line's words.
    pub fn words(self) -> &'static str {
        match self {
            Fidelity::Release => "the component's own release (its image, package or binary, or its Go module built at the tag)",
            Fidelity::UpstreamCode => "the component's own package at the tag, driven by a small harness program",
            Fidelity::StandIn => "a stand-in written here that reproduces the component's mechanism; not the component's code",
        }
    }

    pub fn from_name(name: &str) -> Option<Fidelity> {
        Fidelity::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl std::fmt::Display for Fidelity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde() {
        for fidelity in Fidelity::ALL {
            let json = serde_json::to_string(&fidelity).unwrap();
            assert_eq!(json, format!("\"{}\"", fidelity.name()));
            assert_eq!(serde_json::from_str::<Fidelity>(&json).unwrap(), fidelity);
            assert_eq!(Fidelity::from_name(fidelity.name()), Some(fidelity));
        }
    }
}
