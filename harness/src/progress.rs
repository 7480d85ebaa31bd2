//! What the user watches: a bar for the cells, a line per VM, a spinner per
//! provisioning step. On a terminal these are indicatif bars; elsewhere (CI
//! logs) each event is one plain line on stderr.

use crate::results::CellRecord;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

pub struct Progress {
    multi: MultiProgress,
    cells: ProgressBar,
    interactive: bool,
}

impl Progress {
    pub fn new(cells: u64) -> Progress {
        let interactive = std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(if interactive {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let bar = multi.add(ProgressBar::new(cells));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>6} [{bar:30}] {pos}/{len} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix("cells");
        Progress {
            multi,
            cells: bar,
            interactive,
        }
    }

    pub fn set_cells(&self, total: u64) {
        self.cells.set_length(total);
    }

    pub fn note(&self, message: &str) {
        if self.interactive {
            let _ = self.multi.println(message);
        } else {
            eprintln!("{message}");
        }
    }

    /// Runs one provisioning step under a spinner and reports how long it took.
    pub fn step<T, E>(&self, label: &str, work: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let spinner = self
            .multi
            .insert_before(&self.cells, ProgressBar::new_spinner());
        spinner.set_message(label.to_string());
        spinner.enable_steady_tick(Duration::from_millis(120));
        let started = Instant::now();
        let result = work();
        spinner.finish_and_clear();
        let status = if result.is_ok() { "ready" } else { "FAILED" };
        self.note(&format!(
            "  {status:<6} {label} ({:.1} s)",
            started.elapsed().as_secs_f64()
        ));
        result
    }

    /// A bar for one VM boot, counting its cells.
    pub fn vm(&self, label: &str, cells: u64) -> ProgressBar {
        let bar = self
            .multi
            .insert_before(&self.cells, ProgressBar::new(cells));
        bar.set_style(
            ProgressStyle::with_template("  {spinner} {prefix}: {pos}/{len} cells, {elapsed}")
                .expect("valid template"),
        );
        bar.set_prefix(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        if !self.interactive {
            eprintln!("  booting {label} for {cells} cells");
        }
        bar
    }

    pub fn cell_finished(&self, record: &CellRecord) {
        self.cells.inc(1);
        let signature = if record.signature.is_empty() {
            String::new()
        } else {
            format!(" — {}", record.signature)
        };
        self.note(&format!(
            "  {:<11} {} {} {} on {}{signature}",
            record.verdict.as_str(),
            record.scenario,
            record.version,
            record.variant,
            record.kernel
        ));
    }

    pub fn finish(&self) {
        self.cells.finish_and_clear();
    }
}
