//! Reporters take the events of a command and do something visible with
//! them: the display draws on the terminal, the recorder writes the run's
//! results. They are the receiving end of the runner's channel; nothing
//! else prints or writes results.

mod display;
mod recorder;
pub mod summary;

pub use display::Display;
pub use recorder::Recorder;

use crate::events::RunEvent;

pub trait Reporter {
    /// Takes one event. An error (a full disk under the recorder) stops the
    /// command; events already taken stay taken.
    fn report(&mut self, event: &RunEvent) -> anyhow::Result<()>;
}
