//! The recorder: the only writer of a run's `cells.jsonl` and `run.json`.
//! Every finished cell is written the moment its event arrives.

use super::Reporter;
use crate::events::RunEvent;
use crate::results::ResultsStore;

pub struct Recorder {
    store: ResultsStore,
}

impl Recorder {
    pub fn new(store: ResultsStore) -> Recorder {
        Recorder { store }
    }

    pub fn store(&self) -> &ResultsStore {
        &self.store
    }
}

impl Reporter for Recorder {
    fn report(&mut self, event: &RunEvent) -> anyhow::Result<()> {
        match event {
            RunEvent::CellFinished(record) => self.store.add(record.as_ref().clone()),
            RunEvent::RunInfo(info) => self.store.write_run_info(info),
            _ => Ok(()),
        }
    }
}
