//! What every fake shares: a journal of the calls it got, in order, and scripts of how it answers them.

use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

/// How long [`Journal::wait_until`] waits before it fails the test: a guard against a hang, not a measurement.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The calls a fake got, in the order they arrived.
#[derive(Debug)]
pub struct Journal<C> {
    calls: Mutex<Vec<C>>,
    recorded: watch::Sender<usize>,
}

impl<C> Default for Journal<C> {
    fn default() -> Self {
        Self { calls: Mutex::new(Vec::new()), recorded: watch::Sender::new(0) }
    }
}

impl<C: Clone + Debug> Journal<C> {
    /// Appends a call.
    pub fn record(&self, call: C) {
        let count = {
            let mut calls = self.lock();
            calls.push(call);
            calls.len()
        };
        self.recorded.send_replace(count);
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<C> {
        self.lock().clone()
    }

    /// Waits until `done` holds for the calls so far and returns them; panics, naming `what` and listing the
    /// calls, if it does not hold within [`PATIENCE`].
    pub async fn wait_until(&self, what: &str, done: impl Fn(&[C]) -> bool) -> Vec<C> {
        let mut recorded = self.recorded.subscribe();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            // Subscribed before looking, so a call recorded in between still wakes the wait.
            let calls = self.calls();
            if done(&calls) {
                return calls;
            }
            if tokio::time::timeout_at(deadline, recorded.changed()).await.is_err() {
                panic!("{what}: not seen within {PATIENCE:?}; the calls were {calls:#?}");
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<C>> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Holds the calls scripted to wait for it until the test opens it.
#[derive(Debug, Clone)]
pub struct Gate(Arc<watch::Sender<bool>>);

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

impl Gate {
    /// A closed gate.
    pub fn new() -> Self {
        Self(Arc::new(watch::Sender::new(false)))
    }

    /// Lets every held call through, now and later.
    pub fn open(&self) {
        self.0.send_replace(true);
    }

    /// Returns once the gate is open.
    pub async fn passed(&self) {
        let mut open = self.0.subscribe();
        // The sender lives in `self`, so the wait ends only by the gate opening.
        let _ = open.wait_for(|open| *open).await;
    }
}

/// What one scripted call does: waits for a gate if it has one, then answers or fails.
#[derive(Debug, Clone, Default)]
pub struct Step {
    gate: Option<Gate>,
    failure: Option<tonic::Status>,
}

impl Step {
    /// Answers as the fake does by default.
    pub fn answer() -> Self {
        Self::default()
    }

    /// Fails with `status`.
    pub fn fail(status: tonic::Status) -> Self {
        Self { gate: None, failure: Some(status) }
    }

    /// Does what it does once `gate` is open.
    pub fn after(self, gate: &Gate) -> Self {
        Self { gate: Some(gate.clone()), ..self }
    }

    /// Plays the step: the wait, then the failure if there is one.
    pub async fn play(self) -> Result<(), tonic::Status> {
        if let Some(gate) = self.gate {
            gate.passed().await;
        }
        self.failure.map_or(Ok(()), Err)
    }
}

type Matcher<C> = Box<dyn Fn(&C) -> bool + Send + Sync>;

/// Steps for the calls that match, each used once, in the order they were scripted; an unscripted call
/// answers.
pub struct Script<C> {
    steps: Mutex<Vec<(Matcher<C>, Step)>>,
}

impl<C> Default for Script<C> {
    fn default() -> Self {
        Self { steps: Mutex::new(Vec::new()) }
    }
}

impl<C> Debug for Script<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Script").finish_non_exhaustive()
    }
}

impl<C> Script<C> {
    /// The next call for which `matches` holds does `step`.
    pub fn push(&self, matches: impl Fn(&C) -> bool + Send + Sync + 'static, step: Step) {
        self.lock().push((Box::new(matches), step));
    }

    /// The step for `call`: the first unused one scripted for it, else [`Step::answer`].
    pub fn take(&self, call: &C) -> Step {
        let mut steps = self.lock();
        match steps.iter().position(|(matches, _)| matches(call)) {
            Some(index) => steps.remove(index).1,
            None => Step::answer(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(Matcher<C>, Step)>> {
        self.steps.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A journal and a script together: each call is recorded, then plays the step scripted for it.
#[derive(Debug)]
pub struct Recorder<C> {
    /// The calls so far.
    pub journal: Journal<C>,
    /// How the calls are answered.
    pub script: Script<C>,
}

impl<C> Default for Recorder<C> {
    fn default() -> Self {
        Self { journal: Journal::default(), script: Script::default() }
    }
}

impl<C: Clone + Debug> Recorder<C> {
    /// Records `call` and plays its step.
    pub async fn call(&self, call: C) -> Result<(), tonic::Status> {
        let step = self.script.take(&call);
        self.journal.record(call);
        step.play().await
    }
}
