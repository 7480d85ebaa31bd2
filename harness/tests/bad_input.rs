//! Random edits to every input file a user writes — a scenario, the kernel,
//! toolchain and emulator catalogs, the lock file — never make kmatrix
//! panic: it plans (exit 0) or refuses with a compiler-style message naming
//! the file, the line and the fix (exit 2).

mod common;

use common::{repo_root, text, TempProject};
use proptest::prelude::*;
use std::fs;
use std::path::Path;

/// One edit a hand (or a bad merge, or a truncated copy) could make.
#[derive(Debug, Clone)]
enum Edit {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    ReplaceLine(usize, &'static str),
    InsertText(usize, String),
    TruncateAt(usize),
}

const GARBAGE: &[&str] = &[
    "= = =",
    "[[",
    "]]",
    "id = 3",
    "kernels = \"debian-6.1\"",
    "\"unterminated",
    "[version]",
    "timeout_secs = -1",
    "pattern = \"([\"",
    "unknown_field = true",
    "[[kernel]]",
    "sha256 = 42",
    "packages = [",
    "kind = \"nowhere\"",
    "default = \"yes\"",
    "",
];

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::DeleteLine),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        (any::<usize>(), prop::sample::select(GARBAGE)).prop_map(|(i, g)| Edit::ReplaceLine(i, g)),
        (any::<usize>(), "[ -~]{1,12}").prop_map(|(i, t)| Edit::InsertText(i, t)),
        any::<usize>().prop_map(Edit::TruncateAt),
    ]
}

fn apply(text: &str, edit: &Edit) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let n = lines.len().max(1);
    match edit {
        Edit::DeleteLine(i) => {
            if !lines.is_empty() {
                lines.remove(i % n);
            }
        }
        Edit::DuplicateLine(i) => {
            if !lines.is_empty() {
                let line = lines[i % n].clone();
                lines.insert(i % n, line);
            }
        }
        Edit::SwapLines(a, b) => {
            if !lines.is_empty() {
                lines.swap(a % n, b % n);
            }
        }
        Edit::ReplaceLine(i, garbage) => {
            if !lines.is_empty() {
                lines[i % n] = garbage.to_string();
            }
        }
        Edit::InsertText(at, inserted) => {
            let mut chars: Vec<char> = text.chars().collect();
            let at = at % (chars.len() + 1);
            chars.splice(at..at, inserted.chars());
            return chars.into_iter().collect();
        }
        Edit::TruncateAt(at) => return text.chars().take(at % (text.len() + 1)).collect(),
    }
    lines.join("\n") + "\n"
}

/// Applies `edits` to `file` (relative to the project) and plans.
fn plan_after(file: &str, edits: &[Edit]) -> Result<(), TestCaseError> {
    let project = TempProject::new();
    project.add_scenario(&repo_root().join("scenarios/kube-ovn-tproxy"));
    let path = project.root().join(file);
    let mut content = fs::read_to_string(&path).unwrap();
    for edit in edits {
        content = apply(&content, edit);
    }
    fs::write(&path, &content).unwrap();
    let output = project.kmatrix(&["plan", "--format", "json"]);
    let code = output.status.code();
    prop_assert!(
        code == Some(0) || code == Some(2),
        "exit {code:?} after {edits:?} to {file}:\n{}",
        text(&output)
    );
    if code == Some(2) {
        let said = String::from_utf8_lossy(&output.stderr);
        let root = project.root().display().to_string();
        let first = said.lines().next().unwrap_or_default();
        prop_assert!(
            first.starts_with("error: ") && first.contains(&root),
            "the message names no project file: {said}"
        );
        prop_assert!(said.contains("fix: "), "no fix: {said}");
        let named = first
            .trim_start_matches("error: ")
            .split(':')
            .next()
            .unwrap_or_default();
        prop_assert!(
            Path::new(named).exists(),
            "names a file that is not there: {said}"
        );
    }
    Ok(())
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 40,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn scenario_edits_never_panic(edits in prop::collection::vec(edit(), 1..4)) {
        plan_after("scenarios/kube-ovn-tproxy/scenario.toml", &edits)?;
    }

    #[test]
    fn kernel_catalog_edits_never_panic(edits in prop::collection::vec(edit(), 1..4)) {
        plan_after("images/kernels.toml", &edits)?;
    }

    #[test]
    fn toolchain_and_emulator_catalog_edits_never_panic(
        edits in prop::collection::vec(edit(), 1..4),
        emulators in any::<bool>(),
    ) {
        let file = if emulators { "images/emulators.toml" } else { "images/toolchains.toml" };
        plan_after(file, &edits)?;
    }

    #[test]
    fn lock_file_edits_never_panic(edits in prop::collection::vec(edit(), 1..4)) {
        plan_after("images/kmatrix.lock", &edits)?;
    }
}
