//! `bench.md`: a `kmatrix bench` as a Markdown table that pastes into the
//! README (medians of alternating rounds, ratios against the floor and
//! against kmatrix's one cell), with the machine it was taken on.

use kmatrix_metadata::BenchResult;
use std::fmt::Write;

pub fn render(bench: &BenchResult) -> String {
    let mut out = String::new();
    let seconds = |ms: u64| format!("{:.2} s", ms as f64 / 1000.0);
    let ratio = |r: Option<f64>| r.map_or("—".to_string(), |r| format!("{r:.2} ×"));
    let _ = writeln!(
        out,
        "`kmatrix bench` on {} ({}), {} round(s), {}, {}; {} CPUs, {} MiB, host kernel {}; {}",
        bench.kernel,
        bench.kernel_release.as_deref().unwrap_or("release unknown"),
        bench.rounds,
        bench.accel.to_uppercase(),
        bench.emulator,
        bench.machine.cpus,
        bench.machine.memory_mb,
        bench.machine.host_kernel,
        bench.started,
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| what | median | × bare QEMU | × kmatrix one cell | runs |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for figure in &bench.figures {
        let what = if figure.what.is_empty() {
            figure.id.clone()
        } else {
            format!("{}: {}", figure.id, figure.what)
        };
        match (&figure.unavailable, figure.median_ms) {
            (Some(why), _) => {
                let _ = writeln!(out, "| {what} | not measured: {why} | — | — | — |");
            }
            (None, Some(median)) => {
                let runs: Vec<String> = figure.runs_ms.iter().map(|ms| seconds(*ms)).collect();
                let _ = writeln!(
                    out,
                    "| {what} | {} | {} | {} | {} |",
                    seconds(median),
                    ratio(figure.vs_floor),
                    ratio(figure.vs_kmatrix_one_cell),
                    runs.join(", ")
                );
            }
            (None, None) => {
                let _ = writeln!(out, "| {what} | no runs | — | — | — |");
            }
        }
    }
    let notes: Vec<String> = bench
        .figures
        .iter()
        .flat_map(|f| f.notes.iter().map(move |n| format!("- {}: {n}", f.id)))
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(out);
        for note in notes {
            let _ = writeln!(out, "{note}");
        }
    }
    out
}
