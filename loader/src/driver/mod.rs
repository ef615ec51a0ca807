//! Open-loop replay of a schedule against a [`Target`].
//!
//! A dedicated OS thread walks the schedule and waits for each invocation's absolute deadline (run start plus its
//! intended offset) by sleeping until shortly before it and spinning for the rest, never on tokio's millisecond
//! timer. It hands each invocation to the tokio side, which sends it (bounded in-flight) without waiting for earlier
//! responses and streams one [`InvocationRecord`] per completed invocation to the caller. Latency counts from the
//! intended send time, so falling behind shows as send lag and longer response times, never as silent omission.

pub mod realtime;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::record::{InvocationRecord, Outcome};
use crate::schedule::Invocation;
use crate::target::{Target, TargetResponse};

/// How long before a deadline the scheduler thread stops sleeping and starts spinning. Short, because the thread
/// sleeps with a 1 ns timer slack (so the kernel wakes it on time, not up to 50 µs late) and because every
/// microsecond spun is a microsecond of CPU the sends and the target cannot use.
pub const SPIN_WINDOW: Duration = Duration::from_micros(50);
/// Most released invocations (or records) taken from a channel per wake-up, so that at high rates one wake-up
/// serves many.
const BATCH: usize = 256;
/// Longest single sleep of the scheduler thread, so that a stop is noticed promptly.
pub const MAX_SLEEP_SLICE: Duration = Duration::from_millis(20);
/// Capacity of the channels between the scheduler thread, the send pool and the record consumer.
pub const CHANNEL_CAPACITY: usize = 4096;

/// Settings of one replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverOptions {
    /// Most requests in flight at once; further invocations wait for a free slot (and show it as send lag).
    pub max_in_flight: usize,
    /// Per-request timeout applied by the driver around [`Target::invoke`]; `None` leaves it to the target.
    pub request_timeout: Option<Duration>,
    /// After the schedule ends or a stop, how long to wait for in-flight requests before abandoning them.
    pub drain_timeout: Duration,
    /// Lead time between calling [`replay`] and the run start (offset 0), so the first sends are not late.
    pub start_delay: Duration,
}

impl Default for DriverOptions {
    fn default() -> Self {
        DriverOptions {
            max_in_flight: 10_000,
            request_timeout: None,
            drain_timeout: Duration::from_secs(30),
            start_delay: Duration::from_millis(10),
        }
    }
}

/// What a replay did, in counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Invocations sent (handed to the target).
    pub sent: u64,
    /// Records emitted (invocations that completed, successfully or not).
    pub completed: u64,
    /// Records with [`Outcome::Ok`].
    pub ok: u64,
    /// Records with any other outcome.
    pub failed: u64,
    /// Sent invocations still in flight when the drain timeout ran out; they have no record.
    pub abandoned: u64,
    /// Largest send lag among the records, µs.
    pub max_send_lag_us: u64,
    /// Whether the replay ended because of a stop rather than the end of the schedule.
    pub stopped: bool,
    /// Wall-clock time of the run start (offset 0), Unix µs.
    pub start_unix_us: u64,
}

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The options are unusable.
    #[error("invalid driver options: {0}")]
    Options(String),
    /// An invocation names a function index with no name (the schedule and the name list disagree).
    #[error("invocation names function index {index}, but only {known} function names were given")]
    UnknownFunction {
        /// The offending index.
        index: u32,
        /// How many names there are.
        known: usize,
    },
    /// The scheduler thread could not start or panicked.
    #[error("scheduler thread failed: {0}")]
    Scheduler(String),
}

/// A cloneable stop switch for a running [`replay`]: stops sending, then drains in-flight requests.
#[derive(Debug, Clone)]
pub struct StopSignal {
    sender: Arc<watch::Sender<bool>>,
}

impl Default for StopSignal {
    fn default() -> Self {
        Self::new()
    }
}

impl StopSignal {
    /// A signal that has not fired.
    pub fn new() -> Self {
        StopSignal { sender: Arc::new(watch::channel(false).0) }
    }

    /// Fires the signal (idempotent).
    pub fn stop(&self) {
        self.sender.send_replace(true);
    }

    /// Whether the signal has fired.
    pub fn is_stopped(&self) -> bool {
        *self.sender.borrow()
    }

    /// A signal fired by Ctrl-C (SIGINT), after printing `message` on stderr. Must be called inside a tokio runtime.
    pub fn on_ctrl_c(message: &'static str) -> Self {
        let signal = Self::new();
        let on_interrupt = signal.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("{message}");
                on_interrupt.stop();
            }
        });
        signal
    }

    fn subscribe(&self) -> watch::Receiver<bool> {
        self.sender.subscribe()
    }
}

/// An invocation the scheduler thread released at its deadline.
struct Released {
    invocation: Invocation,
    /// The instant the scheduler thread released it.
    released: Instant,
}

/// The run's clocks: the monotonic run start and the wall-clock time it corresponds to.
#[derive(Debug, Clone, Copy)]
struct Clock {
    start: Instant,
    start_unix_us: u64,
}

impl Clock {
    fn new(start_delay: Duration) -> Self {
        let now = Instant::now();
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Clock { start: now + start_delay, start_unix_us: duration_us(wall + start_delay) }
    }

    fn deadline(&self, invocation: &Invocation) -> Instant {
        self.start + Duration::from_micros(invocation.intended_offset_us)
    }

    fn unix_us(&self, instant: Instant) -> u64 {
        self.start_unix_us + duration_us(instant.saturating_duration_since(self.start))
    }
}

fn duration_us(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// Sleeps, then spins, until `deadline`; returns `false` if the stop signal fired first.
fn wait_until(deadline: Instant, stop: &watch::Receiver<bool>) -> bool {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        let left = deadline - now;
        if left > SPIN_WINDOW {
            if *stop.borrow() {
                return false;
            }
            thread::sleep((left - SPIN_WINDOW).min(MAX_SLEEP_SLICE));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// The scheduler thread's body: release each invocation at its deadline until the schedule ends, a stop, or the
/// send pool goes away.
fn run_scheduler(
    schedule: impl Iterator<Item = Invocation>,
    clock: Clock,
    stop: watch::Receiver<bool>,
    tx: mpsc::Sender<Released>,
) {
    // The default 50 µs slack would let the kernel defer every wake-up by up to that much.
    if let Err(e) = realtime::minimal_timer_slack() {
        tracing::debug!(%e, "cannot reduce the scheduler thread's timer slack");
    }
    for invocation in schedule {
        if *stop.borrow() || !wait_until(clock.deadline(&invocation), &stop) {
            return;
        }
        if tx.blocking_send(Released { invocation, released: Instant::now() }).is_err() {
            return;
        }
    }
}

/// Replays `schedule` against `target` open-loop and calls `on_record` for every completed invocation.
///
/// `names[i]` is the name of function index `i`. Runs until the schedule ends (then waits up to
/// `options.drain_timeout` for in-flight requests) or `stop` fires (stops sending, then drains the same way). Must run
/// on a multi-threaded tokio runtime. Sent time is taken when the send task starts, after any wait for an in-flight
/// slot; the response time runs from the intended time to the end of the response.
pub async fn replay(
    target: Arc<dyn Target>,
    names: Arc<Vec<String>>,
    schedule: impl Iterator<Item = Invocation> + Send + 'static,
    options: DriverOptions,
    stop: StopSignal,
    mut on_record: impl FnMut(InvocationRecord) + Send,
) -> Result<ReplayStats, DriverError> {
    if options.max_in_flight == 0 {
        return Err(DriverError::Options("max_in_flight must be at least 1".into()));
    }
    let clock = Clock::new(options.start_delay);
    let (release_tx, release_rx) = mpsc::channel::<Released>(CHANNEL_CAPACITY);
    let (record_tx, mut record_rx) = mpsc::channel::<InvocationRecord>(CHANNEL_CAPACITY);

    let thread_stop = stop.subscribe();
    let scheduler = thread::Builder::new()
        .name("loader-scheduler".into())
        .spawn(move || run_scheduler(schedule, clock, thread_stop, release_tx))
        .map_err(|e| DriverError::Scheduler(format!("cannot spawn: {e}")))?;

    let pool = tokio::spawn(send_pool(target, names, options, clock, stop.clone(), release_rx, record_tx));

    let mut stats = ReplayStats { start_unix_us: clock.start_unix_us, ..ReplayStats::default() };
    let mut records = Vec::with_capacity(BATCH);
    while record_rx.recv_many(&mut records, BATCH).await > 0 {
        for record in records.drain(..) {
            stats.completed += 1;
            if record.outcome.is_ok() {
                stats.ok += 1;
            } else {
                stats.failed += 1;
            }
            stats.max_send_lag_us = stats.max_send_lag_us.max(record.send_lag_us());
            on_record(record);
        }
    }

    let pool_result = pool.await.map_err(|e| DriverError::Scheduler(format!("send pool failed: {e}")))?;
    // The pool dropped its receiver, so the scheduler thread has returned or will at its next send or sleep slice.
    tokio::task::spawn_blocking(move || scheduler.join())
        .await
        .map_err(|e| DriverError::Scheduler(format!("cannot join: {e}")))?
        .map_err(|_| DriverError::Scheduler("panicked".into()))?;
    let pool = pool_result?;
    stats.sent = pool.sent;
    stats.abandoned = pool.abandoned;
    stats.stopped = stop.is_stopped();
    Ok(stats)
}

struct PoolCounts {
    sent: u64,
    abandoned: u64,
}

/// The tokio side: takes released invocations, waits for an in-flight slot, and spawns one send task each.
async fn send_pool(
    target: Arc<dyn Target>,
    names: Arc<Vec<String>>,
    options: DriverOptions,
    clock: Clock,
    stop: StopSignal,
    mut release_rx: mpsc::Receiver<Released>,
    record_tx: mpsc::Sender<InvocationRecord>,
) -> Result<PoolCounts, DriverError> {
    let slots = Arc::new(Semaphore::new(options.max_in_flight));
    let mut stop_rx = stop.subscribe();
    let mut tasks = JoinSet::new();
    let mut counts = PoolCounts { sent: 0, abandoned: 0 };
    let mut error = None;
    let mut batch = Vec::with_capacity(BATCH);
    'receive: loop {
        let received = tokio::select! {
            biased;
            _ = stop_rx.wait_for(|stopped| *stopped) => break,
            received = release_rx.recv_many(&mut batch, BATCH) => received,
        };
        if received == 0 {
            break;
        }
        for released in batch.drain(..) {
            let index = released.invocation.function as usize;
            if index >= names.len() {
                error = Some(DriverError::UnknownFunction { index: released.invocation.function, known: names.len() });
                break 'receive;
            }
            let permit = match slots.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => tokio::select! {
                    biased;
                    _ = stop_rx.wait_for(|stopped| *stopped) => break 'receive,
                    permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                },
            };
            while tasks.try_join_next().is_some() {}
            counts.sent += 1;
            // The task shares the name list rather than cloning a name per invocation.
            let (target, names) = (Arc::clone(&target), Arc::clone(&names));
            let record_tx = record_tx.clone();
            let timeout = options.request_timeout;
            tasks.spawn(async move {
                let _permit = permit;
                let record = send_one(target.as_ref(), &names[index], released, clock, timeout).await;
                // The consumer only goes away when the replay itself is dropped.
                let _ = record_tx.send(record).await;
            });
        }
    }
    // Stop the scheduler thread from releasing more.
    drop(release_rx);
    drop(record_tx);
    let drained =
        tokio::time::timeout(options.drain_timeout, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        counts.abandoned = tasks.len() as u64;
        tracing::warn!(abandoned = counts.abandoned, "in-flight invocations abandoned after the drain timeout");
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    match error {
        Some(error) => Err(error),
        None => Ok(counts),
    }
}

/// Sends one invocation and builds its record.
async fn send_one(
    target: &dyn Target,
    name: &str,
    released: Released,
    clock: Clock,
    timeout: Option<Duration>,
) -> InvocationRecord {
    let invocation = released.invocation;
    let intended = clock.deadline(&invocation);
    let sent = Instant::now().max(released.released);
    let response = match timeout {
        Some(limit) => tokio::time::timeout(limit, target.invoke(name, &invocation))
            .await
            .unwrap_or_else(|_| TargetResponse::from_outcome(Outcome::Timeout)),
        None => target.invoke(name, &invocation).await,
    };
    let end = Instant::now();
    let response_time_us = match response.outcome {
        Outcome::Ok | Outcome::Status(..) => duration_us(end.saturating_duration_since(intended)),
        Outcome::ConnectionFailed(_) | Outcome::Timeout => 0,
    };
    InvocationRecord {
        phase: invocation.phase,
        function: invocation.function,
        minute: invocation.minute,
        index_in_minute: invocation.index_in_minute,
        intended_unix_us: clock.unix_us(intended),
        sent_unix_us: clock.unix_us(sent),
        requested_duration_us: u64::from(invocation.runtime_ms) * 1000,
        requested_memory_mib: invocation.memory_mib,
        response_time_us,
        actual_duration_us: response.actual_duration_us,
        actual_memory_mib: response.actual_memory_mib,
        outcome: response.outcome,
        cold_start: response.cold_start,
        breakdown: response.breakdown,
        failovers: response.failovers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_maps_offsets_to_wall_time() {
        let clock = Clock::new(Duration::from_millis(5));
        let inv = Invocation {
            function: 0,
            minute: 0,
            index_in_minute: 0,
            intended_offset_us: 1_500,
            runtime_ms: 1,
            memory_mib: 1,
            phase: crate::schedule::Phase::Measured,
        };
        assert_eq!(clock.unix_us(clock.deadline(&inv)), clock.start_unix_us + 1_500);
        assert_eq!(clock.unix_us(clock.start - Duration::from_millis(1)), clock.start_unix_us);
    }

    #[test]
    fn wait_until_returns_false_when_stopped() {
        let (tx, rx) = watch::channel(true);
        assert!(!wait_until(Instant::now() + Duration::from_secs(3600), &rx));
        drop(tx);
        let (_tx, rx) = watch::channel(false);
        assert!(wait_until(Instant::now(), &rx));
    }
}
