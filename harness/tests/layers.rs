//! The architecture, checked: data flows one way, so a module may name
//! (`crate::x`, or `kmatrix::x` from the CLI) only modules of its own layer
//! or below. Files under 600 lines, functions under 100 outside tests.
//! Read from the source text, so a new arrow upwards fails here first.

use std::fs;
use std::path::{Path, PathBuf};

/// Lowest first. A module's layer is the index of the group naming it.
const LAYERS: &[&[&str]] = &[
    // Shared vocabulary and plumbing: ids, errors, events, the results files.
    &[
        "ids",
        "hashing",
        "files",
        "diagnostic",
        "events",
        "results",
        "cancel",
    ],
    // Where artifacts come from: archives, registries, caches, builds.
    &["sources"],
    // What the user wrote: catalogs, scenarios, the lock file.
    &["inputs"],
    &["verdict"],
    &["plan"],
    &["provision"],
    &["backend"],
    &["runner"],
    &["reporter"],
    &["report", "diff"],
    &["project"],
    &["ops"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|group| group.contains(&module))
}

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The text before a file's test module (tests may reach anywhere).
fn without_tests(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or(text)
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_module_names_a_layer_above_its_own() {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let mut upward = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(src()).unwrap();
        let top = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        let Some(own) = layer_of(&top) else {
            continue; // lib.rs, the CLI (bin/): the top, free to name anything
        };
        let text = fs::read_to_string(file).unwrap();
        for (at, _) in without_tests(&text).match_indices("crate::") {
            let named: String = text[at + 7..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if let Some(theirs) = layer_of(&named) {
                if theirs > own {
                    upward.push(format!("{} names crate::{named}", relative.display()));
                }
            }
        }
    }
    upward.sort();
    upward.dedup();
    assert!(
        upward.is_empty(),
        "imports from a higher layer (move the shared part down):\n{}",
        upward.join("\n")
    );
}

#[test]
fn every_module_has_a_layer() {
    for entry in fs::read_dir(src()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let module = name.trim_end_matches(".rs");
        if ["lib", "bin"].contains(&module) {
            continue;
        }
        assert!(
            layer_of(module).is_some(),
            "src/{name} belongs to no layer: add it to LAYERS in tests/layers.rs"
        );
    }
}

#[test]
fn files_read_in_one_sitting() {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    sources(&src().join("../../vm/src"), &mut files);
    sources(&src().join("../../metadata/src"), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let lines = fs::read_to_string(f).unwrap().lines().count();
            (lines >= 600).then(|| format!("{} ({lines} lines)", f.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files of 600 lines or more:\n{}",
        long.join("\n")
    );
}

/// Functions under 100 lines outside tests: from a `fn` line to the `}` at
/// its indentation (rustfmt's layout), test modules and test files skipped.
#[test]
fn functions_read_in_one_sitting() {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    sources(&src().join("../../vm/src"), &mut files);
    sources(&src().join("../../metadata/src"), &mut files);
    let mut long = Vec::new();
    for file in files.iter().filter(|f| {
        let name = f.file_name().unwrap().to_string_lossy();
        !name.ends_with("_tests.rs") && name != "tests.rs"
    }) {
        let text = fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = without_tests(&text).lines().collect();
        for (start, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let is_fn = ["fn ", "pub fn ", "pub(crate) fn ", "pub(super) fn "]
                .iter()
                .any(|p| trimmed.starts_with(p));
            if !is_fn || trimmed.ends_with(';') {
                continue;
            }
            let indent = line.len() - trimmed.len();
            let close = format!("{}}}", " ".repeat(indent));
            let Some(length) = lines[start..]
                .iter()
                .position(|l| l.starts_with(&close) && l.trim_end().len() <= indent + 2)
            else {
                continue;
            };
            if length + 1 > 100 {
                long.push(format!(
                    "{}:{} {} lines",
                    file.display(),
                    start + 1,
                    length + 1
                ));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over 100 lines:\n{}",
        long.join("\n")
    );
}
