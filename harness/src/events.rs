//! What happens during a command, as data. Every layer that does long work
//! (downloads, kernel builds, boots) sends [`RunEvent`]s through an
//! [`Events`] handle; only the reporters (`reporter/`) turn them into
//! terminal output or files. Nothing below the reporters draws or prints.

use kmatrix_metadata::{CellRecord, RunInfo};
use std::sync::mpsc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum RunEvent {
    /// The plan is known: how many cells, how many a resumed run already holds.
    RunStarted {
        planned: usize,
        already_done: usize,
        to_run: usize,
        out: String,
    },
    /// `run.json` as it stands (written at the start and again at the end).
    RunInfo(Box<RunInfo>),
    /// Work that makes an artifact (a kernel, a toolchain, a reproducer) began.
    ProvisionStarted {
        label: String,
    },
    /// Headway inside that work: a download's bytes, a build's current step.
    ProvisionProgress {
        label: String,
        done: u64,
        total: Option<u64>,
        step: String,
    },
    ProvisionFinished {
        label: String,
        ok: bool,
        elapsed: Duration,
    },
    /// Something the user should read: a lock pin updated, a cache entry remade.
    Note(String),
    AcceleratorChosen {
        accel: String,
        reason: String,
    },
    /// A guest (or container) is being started for `cells` cells.
    BootStarted {
        label: String,
        cells: usize,
    },
    /// `kmatrix shell`: a guest's console is about to take the terminal.
    ShellStarted {
        label: String,
    },
    /// One cell of that boot finished inside the guest.
    BootCellDone {
        label: String,
    },
    BootFinished {
        label: String,
        outcome: String,
    },
    /// A cell's verdict: the recorder writes it, the display counts it.
    CellFinished(Box<CellRecord>),
    /// `--retries`: another round over the cells that failed.
    RetryRound {
        round: u32,
        of: u32,
        cells: usize,
    },
    RunFinished {
        interrupted: bool,
    },
}

/// Where events go. Cloned freely into worker threads; sending never fails
/// the sender (a reporter that stopped listening loses the event, not the run).
#[derive(Debug, Clone)]
pub struct Events {
    sender: Option<mpsc::Sender<RunEvent>>,
}

impl Events {
    pub fn new(sender: mpsc::Sender<RunEvent>) -> Events {
        Events {
            sender: Some(sender),
        }
    }

    /// A handle that drops every event (tests, library callers that don't watch).
    pub fn none() -> Events {
        Events { sender: None }
    }

    pub fn send(&self, event: RunEvent) {
        if let Some(sender) = &self.sender {
            let _ = sender.send(event);
        }
    }

    pub fn note(&self, message: impl Into<String>) {
        self.send(RunEvent::Note(message.into()));
    }

    /// Runs one provisioning step between its started and finished events.
    pub fn step<T, E>(&self, label: &str, work: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        self.send(RunEvent::ProvisionStarted {
            label: label.to_string(),
        });
        let started = std::time::Instant::now();
        let result = work();
        self.send(RunEvent::ProvisionFinished {
            label: label.to_string(),
            ok: result.is_ok(),
            elapsed: started.elapsed(),
        });
        result
    }

    /// Reports headway of the step named `label`.
    pub fn progress(&self, label: &str, done: u64, total: Option<u64>, step: &str) {
        self.send(RunEvent::ProvisionProgress {
            label: label.to_string(),
            done,
            total,
            step: step.to_string(),
        });
    }
}
