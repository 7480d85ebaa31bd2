//! The terminal display, the only code that draws: a bar for the cells, a
//! line per VM, a spinner (or byte bar) per provisioning step. On a terminal
//! these are indicatif bars; elsewhere (CI logs) each event is one plain
//! line on stderr.

use super::Reporter;
use crate::events::RunEvent;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kmatrix_metadata::CellRecord;
use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::time::Duration;

pub struct Display {
    multi: MultiProgress,
    cells: ProgressBar,
    interactive: bool,
    steps: BTreeMap<String, ProgressBar>,
    vms: BTreeMap<String, ProgressBar>,
    /// Cells counted on the bar (a retried cell is reported twice).
    counted: BTreeSet<String>,
}

impl Default for Display {
    fn default() -> Self {
        Display::new()
    }
}

impl Display {
    pub fn new() -> Display {
        let interactive = std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(if interactive {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let bar = multi.add(ProgressBar::new(0));
        // No bar until the run knows how many cells it has: an empty bar
        // at 0/0 draws as full.
        bar.set_style(ProgressStyle::with_template("{prefix:>6} {msg}").expect("valid template"));
        bar.set_prefix("cells");
        bar.set_message("not planned yet");
        Display {
            multi,
            cells: bar,
            interactive,
            steps: BTreeMap::new(),
            vms: BTreeMap::new(),
            counted: BTreeSet::new(),
        }
    }

    fn note(&self, message: &str) {
        if self.interactive {
            let _ = self.multi.println(message);
        } else {
            eprintln!("{message}");
        }
    }

    fn step_started(&mut self, label: &str) {
        let spinner = self
            .multi
            .insert_before(&self.cells, ProgressBar::new_spinner());
        spinner.set_style(
            ProgressStyle::with_template("  {spinner} {prefix} {msg} [{elapsed}]")
                .expect("valid template"),
        );
        spinner.set_prefix(label.to_string());
        spinner.enable_steady_tick(Duration::from_millis(120));
        self.steps.insert(label.to_string(), spinner);
    }

    fn step_progress(&mut self, label: &str, done: u64, total: Option<u64>, step: &str) {
        if !self.steps.contains_key(label) {
            // Headway of work nested in another step (a download inside a kernel fetch).
            self.step_started(label);
        }
        let bar = &self.steps[label];
        match total {
            Some(total) => {
                if bar.length() != Some(total) {
                    bar.set_length(total);
                    bar.set_style(
                        ProgressStyle::with_template(
                            "  {prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                        )
                        .expect("valid template")
                        .progress_chars("=> "),
                    );
                }
                bar.set_position(done);
            }
            None => bar.set_message(step.to_string()),
        }
    }

    fn cell_finished(&mut self, record: &CellRecord) {
        if self.counted.insert(record.cell_id.clone()) {
            self.cells.inc(1);
        }
        let signature = if record.signature.is_empty() {
            String::new()
        } else {
            format!(" — {}", record.signature)
        };
        let runs = record
            .runs
            .map(|r| format!(" (passed {}, failed {})", r.passed, r.failed))
            .unwrap_or_default();
        self.note(&format!(
            "  {:<11} {} {} {} on {}{runs}{signature}",
            record.verdict.as_str(),
            record.scenario,
            record.version,
            record.variant,
            record.kernel
        ));
    }

    fn boot_started(&mut self, label: &str, cells: usize) {
        let bar = self
            .multi
            .insert_before(&self.cells, ProgressBar::new(cells as u64));
        bar.set_style(
            ProgressStyle::with_template("  {spinner} {prefix}: {pos}/{len} cells, {elapsed}")
                .expect("valid template"),
        );
        bar.set_prefix(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        if !self.interactive {
            eprintln!("  booting {label} for {cells} cells");
        }
        self.vms.insert(label.to_string(), bar);
    }
}

impl Reporter for Display {
    fn report(&mut self, event: &RunEvent) -> anyhow::Result<()> {
        match event {
            RunEvent::RunStarted {
                planned,
                already_done,
                to_run,
                out,
            } => {
                self.cells.set_length(*to_run as u64);
                self.cells.set_message("");
                self.cells.set_style(
                    ProgressStyle::with_template("{prefix:>6} [{bar:30}] {pos}/{len} {msg}")
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                self.note(&format!(
                    "{planned} cells planned, {already_done} already in {out}, {to_run} to run"
                ));
            }
            RunEvent::RunInfo(_) => {}
            RunEvent::ProvisionStarted { label } => self.step_started(label),
            RunEvent::ProvisionProgress {
                label,
                done,
                total,
                step,
            } => self.step_progress(label, *done, *total, step),
            RunEvent::ProvisionFinished { label, ok, elapsed } => {
                if let Some(bar) = self.steps.remove(label) {
                    bar.finish_and_clear();
                }
                // Nested headway bars (downloads) end with their step.
                let nested: Vec<String> = self
                    .steps
                    .keys()
                    .filter(|k| k.starts_with("download ") || k.starts_with("building kernel "))
                    .cloned()
                    .collect();
                for key in nested {
                    if let Some(bar) = self.steps.remove(&key) {
                        bar.finish_and_clear();
                    }
                }
                let status = if *ok { "ready" } else { "FAILED" };
                self.note(&format!(
                    "  {status:<6} {label} ({:.1} s)",
                    elapsed.as_secs_f64()
                ));
            }
            RunEvent::Note(message) => self.note(message),
            RunEvent::AcceleratorChosen { accel, reason } => {
                self.note(&format!("accelerator: {accel} ({reason})"))
            }
            RunEvent::BootStarted { label, cells } => self.boot_started(label, *cells),
            RunEvent::ShellStarted { label } => {
                // The guest's console takes the terminal: nothing may draw over it.
                for (_, bar) in std::mem::take(&mut self.vms) {
                    bar.finish_and_clear();
                }
                for (_, bar) in std::mem::take(&mut self.steps) {
                    bar.finish_and_clear();
                }
                self.cells.finish_and_clear();
                eprintln!("{label}: the guest's console follows (it boots in seconds to a minute)");
            }
            RunEvent::BootCellDone { label } => {
                if let Some(bar) = self.vms.get(label) {
                    bar.inc(1);
                }
            }
            RunEvent::BootFinished { label, .. } => {
                if let Some(bar) = self.vms.remove(label) {
                    bar.finish_and_clear();
                }
            }
            RunEvent::CellFinished(record) => self.cell_finished(record),
            RunEvent::RetryRound { round, of, cells } => {
                self.note(&format!("retry {round}/{of}: {cells} failing cells"))
            }
            RunEvent::RunFinished { .. } => {
                for (_, bar) in std::mem::take(&mut self.vms) {
                    bar.finish_and_clear();
                }
                self.cells.finish_and_clear();
            }
        }
        Ok(())
    }
}
