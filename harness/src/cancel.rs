//! Stopping and waiting, one way for every layer: [`Cancel`] is the run's
//! one cancellation token (Ctrl-C, or a recorder that can no longer write,
//! sets it; every wait looks at it), [`Deadline`] the one deadline type, and
//! [`wait_for`] the one polling loop that honours both.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A run's cancellation token: cheap to clone, shared by every thread.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Asks every wait holding this token to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// The flag itself, for a signal handler to set (`signal-hook`).
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }
}

/// A moment a wait gives up at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(Instant);

impl Deadline {
    /// `budget` from now.
    pub fn after(budget: Duration) -> Deadline {
        Deadline(Instant::now() + budget)
    }

    pub fn passed(&self) -> bool {
        Instant::now() >= self.0
    }

    /// What is left (zero once passed).
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

/// How a [`wait_for`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Waited<T> {
    Ready(T),
    TimedOut,
    Cancelled,
}

/// Asks `ready` every `every` until it gives a value, the deadline passes
/// or the token is cancelled (looked at before each try). An error from
/// `ready` ends the wait with that error.
pub fn wait_for<T, E>(
    cancel: &Cancel,
    deadline: Deadline,
    every: Duration,
    mut ready: impl FnMut() -> Result<Option<T>, E>,
) -> Result<Waited<T>, E> {
    loop {
        if cancel.is_cancelled() {
            return Ok(Waited::Cancelled);
        }
        if let Some(value) = ready()? {
            return Ok(Waited::Ready(value));
        }
        if deadline.passed() {
            return Ok(Waited::TimedOut);
        }
        std::thread::sleep(
            every
                .min(deadline.remaining())
                .max(Duration::from_millis(1)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_ends_ready_timed_out_or_cancelled() {
        let cancel = Cancel::new();
        let mut tries = 0;
        let ready = wait_for::<_, ()>(
            &cancel,
            Deadline::after(Duration::from_secs(5)),
            Duration::from_millis(1),
            || {
                tries += 1;
                Ok((tries == 3).then_some("up"))
            },
        );
        assert_eq!(ready, Ok(Waited::Ready("up")));
        let late = wait_for::<(), ()>(
            &cancel,
            Deadline::after(Duration::ZERO),
            Duration::from_millis(1),
            || Ok(None),
        );
        assert_eq!(late, Ok(Waited::TimedOut));
        let other = cancel.clone();
        other.cancel();
        let stopped = wait_for::<(), ()>(
            &cancel,
            Deadline::after(Duration::from_secs(5)),
            Duration::from_millis(1),
            || Ok(None),
        );
        assert_eq!(stopped, Ok(Waited::Cancelled));
        let failed = wait_for::<(), &str>(
            &Cancel::new(),
            Deadline::after(Duration::from_secs(5)),
            Duration::from_millis(1),
            || Err("no"),
        );
        assert_eq!(failed, Err("no"));
    }
}
