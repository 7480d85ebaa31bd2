//! The README's minimal scenario, copied verbatim into a fresh project and
//! run with the README's own command: every cell on its five kernels
//! passes. If the README's example stops working, this fails.

mod common;

use common::{read_cells, repo_root, text, TempProject};
use kmatrix_metadata::Verdict;
use std::fs;
use std::process::Command;

/// The fenced block that follows `marker` in the README.
fn block_after(readme: &str, marker: &str) -> String {
    let from = readme.find(marker).expect("the README marks the block");
    let rest = &readme[from..];
    let open = rest.find("```").unwrap();
    let body_start = open + rest[open..].find('\n').unwrap() + 1;
    let close = body_start + rest[body_start..].find("```").unwrap();
    rest[body_start..close].to_string()
}

#[test]
fn the_readme_minimal_scenario_runs_on_five_kernels() {
    let readme = fs::read_to_string(repo_root().join("README.md")).unwrap();
    let scenario = block_after(&readme, "<!-- minimal-scenario");
    let command = block_after(&readme, "<!-- minimal-run -->");

    let project = TempProject::new();
    let id = scenario
        .lines()
        .find_map(|l| l.strip_prefix("id = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("the scenario names its id")
        .to_string();
    let folder = project.root().join("scenarios").join(&id);
    fs::create_dir_all(&folder).unwrap();
    fs::write(folder.join("scenario.toml"), &scenario).unwrap();

    let words: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(words[0], "kmatrix", "{command}");
    let output = Command::new(env!("CARGO_BIN_EXE_kmatrix"))
        .current_dir(project.root())
        .args(&words[1..])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let out = words
        .windows(2)
        .find(|w| w[0] == "--out")
        .map(|w| project.root().join(w[1]))
        .expect("the command names its --out");
    let cells = read_cells(&out);
    assert_eq!(cells.len(), 5, "five kernels: {cells:#?}");
    for cell in &cells {
        assert_eq!(cell.verdict, Verdict::Pass, "{cell:#?}");
    }
}
