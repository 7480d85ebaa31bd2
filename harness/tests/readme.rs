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

/// The README's figures about things in the repository are computed here
/// from those things, so they cannot go stale: the baseline's date and
/// verdict counts, the catalog's counts, and every cell id it tells a
/// reader to `kmatrix repro` (which must be in today's plan).
#[test]
fn the_readmes_figures_are_what_they_describe() {
    let readme = fs::read_to_string(repo_root().join("README.md")).unwrap();
    let flat = readme.split_whitespace().collect::<Vec<_>>().join(" ");

    let baseline = repo_root().join("results/baseline");
    let cells = read_cells(&baseline);
    let info = kmatrix::results::read_run_info(&baseline).expect("the baseline's run.json");
    let started = info.started.replace('T', " ");
    let count = |v: Verdict| cells.iter().filter(|c| c.verdict == v).count();
    let mut parts: Vec<String> = Verdict::ALL
        .iter()
        .filter(|v| **v != Verdict::InfraError && count(**v) > 0)
        .map(|v| format!("{} {}", count(*v), v.as_str()))
        .collect();
    parts.push(match count(Verdict::InfraError) {
        0 => "no infra-error".into(),
        n => format!("{n} infra-error"),
    });
    let sentence = format!(
        "From the full default run of {} ({} cells: {}",
        &started[..16],
        cells.len(),
        parts.join(", ")
    );
    assert!(
        flat.contains(&sentence),
        "the README should say: {sentence}"
    );

    let catalog = kmatrix::Project::new(&repo_root()).catalog().unwrap();
    let ids = catalog.kernel_ids();
    let rpm = ids
        .iter()
        .filter(|id| {
            let entry = catalog.kernel(&kmatrix::ids::KernelId::new(**id));
            format!("{:?}", entry.source).contains(".rpm")
        })
        .count();
    let not_kernels = ids
        .iter()
        .filter(|id| {
            !catalog
                .kernel(&kmatrix::ids::KernelId::new(**id))
                .source
                .boots_in_qemu()
        })
        .count();
    let kernels_sentence = format!(
        "{} of the {} entries boot here (the {} RPM kernels' hosts do not resolve",
        ids.len() - rpm - not_kernels,
        ids.len(),
        ["zero", "one", "two", "three", "four", "five", "six", "seven"][rpm]
    );
    assert!(
        flat.contains(&kernels_sentence),
        "the README should say: {kernels_sentence}"
    );

    let plan = Command::new(env!("CARGO_BIN_EXE_kmatrix"))
        .arg("--root")
        .arg(repo_root())
        .args(["plan", "--format", "json"])
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&plan.stdout);
    let mut told = 0;
    for (at, _) in readme.match_indices("kmatrix repro ") {
        let id: String = readme[at + 14..]
            .chars()
            .take_while(char::is_ascii_hexdigit)
            .collect();
        if id.len() == 16 {
            told += 1;
            assert!(
                plan.contains(&format!("\"{id}\"")),
                "README's `kmatrix repro {id}` is no cell of today's plan"
            );
        }
    }
    assert!(told > 0, "the README shows a repro of a real cell");
}
