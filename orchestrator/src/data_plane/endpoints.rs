//! Per-function endpoint sets, leases on sandboxes, and the cold-start queue.
//!
//! One mutex per function guards its endpoints, its waiters and its concurrency meter: every decision
//! (pick a free sandbox, queue, hand a released sandbox to the oldest waiter) happens under it, so a
//! sandbox with concurrency `c` never serves more than `c` requests and no waiter is skipped.
//!
//! An endpoint the proxy could not reach (connection refused, reset, unreachable) is marked down at once and
//! is never picked again; the request that found it down moves to another sandbox or the queue. It stays down
//! while the control plane's sets still list it, since a sandbox id is never reused for a new sandbox and the
//! control plane drops a dead one within its failure detection; it leaves with the first set without it (a
//! later set that lists the id again after that brings it back as a new endpoint, up).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};

use super::balancer::{self, LoadBalancing};
use super::stats::{ConcurrencyMeter, InvocationCounters};

/// One sandbox as the data plane sees it.
#[derive(Debug)]
pub struct EndpointSlot {
    /// The sandbox's id.
    pub sandbox_id: String,
    /// Where the sandbox serves.
    pub address: SocketAddr,
    /// The address as a URI authority, built once rather than per request.
    pub authority: http::uri::Authority,
    /// How long the sandbox took to become ready.
    pub creation: Duration,
    /// The creation's steps, µs, as the worker timed them.
    pub steps: Vec<(String, u64)>,
    in_flight: std::sync::atomic::AtomicU32,
    removed: AtomicBool,
    /// The proxy could not reach it: never picked again.
    down: AtomicBool,
    /// When this data plane learned of the sandbox: a request queued before then waited for its creation.
    added: Instant,
    drained: Notify,
}

impl EndpointSlot {
    fn new(spec: EndpointSpec) -> Self {
        let EndpointSpec { sandbox_id, address, creation, steps } = spec;
        let authority = http::uri::Authority::try_from(address.to_string())
            .unwrap_or_else(|_| http::uri::Authority::from_static("invalid.invalid"));
        Self {
            sandbox_id,
            address,
            authority,
            creation,
            steps,
            in_flight: 0.into(),
            removed: AtomicBool::new(false),
            down: AtomicBool::new(false),
            added: Instant::now(),
            drained: Notify::new(),
        }
    }

    fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether the proxy found this sandbox unreachable.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Marks the sandbox unreachable, saying so the first time.
    fn mark_down(&self) {
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(sandbox = %self.sandbox_id, address = %self.address, "sandbox unreachable: marked down");
        }
    }

    /// Gives back one unit of concurrency, waking the drain of a removed endpoint at its last one.
    fn give_back(&self) {
        let left = self.in_flight.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
        if left == 0 && self.removed.load(Ordering::Relaxed) {
            self.drained.notify_waiters();
        }
    }

    /// Waits until no request is in flight on this removed endpoint.
    async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            if self.in_flight() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Where an update stands in the control plane's history, ordered by incarnation, then generation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    /// The control plane process that sent it (its start time, so a restarted one is newer).
    pub incarnation: u64,
    /// Its place in that process's sequence.
    pub generation: u64,
}

impl Version {
    /// Whether this update was sent before `other`.
    pub fn is_older_than(self, other: Version) -> bool {
        self < other
    }
}

/// A desired endpoint, as pushed by the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    /// The sandbox's id.
    pub sandbox_id: String,
    /// Where the sandbox serves.
    pub address: SocketAddr,
    /// How long the sandbox took to become ready.
    pub creation: Duration,
    /// The creation's steps, µs.
    pub steps: Vec<(String, u64)>,
}

/// How a request came by its sandbox; the data plane says it in `Server-Timing`, so the type is the contract's.
pub use contracts::server_timing::ColdStart;

/// Exclusive use of one unit of a sandbox's concurrency; given back on drop.
#[derive(Debug)]
pub struct Lease {
    function: Arc<FunctionEntry>,
    slot: Arc<EndpointSlot>,
    armed: bool,
}

impl Lease {
    /// The sandbox this lease is for.
    pub fn endpoint(&self) -> &EndpointSlot {
        &self.slot
    }

    /// Takes the slot out without releasing it (the caller keeps the unit of concurrency).
    fn defuse(mut self) -> Arc<EndpointSlot> {
        self.armed = false;
        Arc::clone(&self.slot)
    }

    /// Marks the sandbox unreachable: no request is sent to it again (see the module's doc for how long).
    pub fn mark_down(&self) {
        self.slot.mark_down();
    }

    /// Marks this sandbox unreachable and trades the lease for one on another sandbox of the function,
    /// queueing for up to `timeout` when none is free; the request stays counted once on the meter.
    /// `on_cold_start` runs when no sandbox of the function is left up.
    pub async fn fail_over(self, timeout: Duration, on_cold_start: impl FnOnce()) -> Result<Grant, AcquireError> {
        let function = Arc::clone(&self.function);
        let arrived = Instant::now();
        // Synchronous up to the queue, so no cancellation can come between giving the unit back and re-queueing.
        let acquired = function.reacquire(self, arrived)?;
        function.granted(acquired, arrived, timeout, on_cold_start).await
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.armed {
            self.function.release(&self.slot);
        }
    }
}

/// Why a request got no sandbox.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AcquireError {
    /// no function named {0} is registered
    #[error("no function named '{0}' is registered")]
    UnknownFunction(String),
    /// no sandbox of the function became available in time
    #[error("no sandbox of function '{function}' became available within {waited:?}")]
    Timeout {
        /// The function.
        function: String,
        /// How long the request waited.
        waited: Duration,
    },
    /// the control plane could not create a sandbox
    #[error("function '{function}' has no sandbox: {message}")]
    CreationFailed {
        /// The function.
        function: String,
        /// The control plane's reason.
        message: String,
    },
    /// the function was deleted while the request waited
    #[error("function '{0}' was deleted while the request waited")]
    Deleted(String),
    /// the control plane did not send the function's state in time
    #[error("the data plane has not received function '{function}' from the control plane within {waited:?}")]
    NotReceived {
        /// The function.
        function: String,
        /// How long the request waited.
        waited: Duration,
    },
}

type WaiterReply = Result<Lease, AcquireError>;

struct Waiter {
    reply: oneshot::Sender<WaiterReply>,
}

/// A granted request: the lease, how long it queued, and whether it met a cold start.
#[derive(Debug)]
pub struct Grant {
    /// The sandbox to send to.
    pub lease: Lease,
    /// Time spent waiting in the queue.
    pub queued: Duration,
    /// Whether the request waited on a sandbox creation.
    pub cold_start: ColdStart,
}

/// Settings the control plane pushes with the endpoint set.
struct FunctionInner {
    concurrency: u32,
    version: Version,
    endpoints: Vec<Arc<EndpointSlot>>,
    waiters: VecDeque<Waiter>,
    cursor: usize,
    deleted: bool,
    meter: ConcurrencyMeter,
}

/// One function's state in the data plane.
pub struct FunctionEntry {
    name: String,
    policy: LoadBalancing,
    inner: Mutex<FunctionInner>,
    /// Counters the reporter drains.
    pub counters: InvocationCounters,
}

impl std::fmt::Debug for FunctionEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionEntry").field("name", &self.name).finish_non_exhaustive()
    }
}

/// What acquiring decided under the lock.
enum Acquired {
    Now(Lease),
    Queued { reply: oneshot::Receiver<WaiterReply>, triggered: bool },
}

impl FunctionEntry {
    fn new(name: String, policy: LoadBalancing, concurrency: u32) -> Self {
        let inner = FunctionInner {
            concurrency: concurrency.max(1),
            version: Version::default(),
            endpoints: Vec::new(),
            waiters: VecDeque::new(),
            cursor: 0,
            deleted: false,
            meter: ConcurrencyMeter::new(Instant::now()),
        };
        Self { name, policy, inner: Mutex::new(inner), counters: InvocationCounters::default() }
    }

    /// The function's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> MutexGuard<'_, FunctionInner> {
        // A panic while holding the lock leaves consistent counters behind; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gets a sandbox for one request, waiting up to `timeout` in the queue.
    ///
    /// `on_cold_start` runs (outside the lock) when this request is the one that found the function at
    /// zero sandboxes; it should ask the control plane for a sandbox.
    pub async fn acquire(
        self: &Arc<Self>,
        timeout: Duration,
        on_cold_start: impl FnOnce(),
    ) -> Result<Grant, AcquireError> {
        let arrived = Instant::now();
        let acquired = self.try_acquire(arrived)?;
        self.granted(acquired, arrived, timeout, on_cold_start).await
    }

    /// Waits for the lease when the request was queued.
    async fn granted(
        self: &Arc<Self>,
        acquired: Acquired,
        arrived: Instant,
        timeout: Duration,
        on_cold_start: impl FnOnce(),
    ) -> Result<Grant, AcquireError> {
        let (mut queued, triggered) = match acquired {
            Acquired::Now(lease) => return Ok(Grant { lease, queued: Duration::ZERO, cold_start: ColdStart::None }),
            Acquired::Queued { reply, triggered } => {
                (QueuedRequest { entry: Arc::clone(self), reply, served: false }, triggered)
            }
        };
        if triggered {
            on_cold_start();
        }
        let received = match tokio::time::timeout(timeout, &mut queued.reply).await {
            Ok(Ok(result)) => result,
            // The sender only disappears unsent when the function itself is gone.
            Ok(Err(_)) => Err(AcquireError::Deleted(self.name.clone())),
            Err(_) => Err(AcquireError::Timeout { function: self.name.clone(), waited: arrived.elapsed() }),
        };
        let lease = received?;
        queued.served = true;
        let cold_start = if triggered {
            ColdStart::Triggered
        } else if lease.slot.added > arrived {
            ColdStart::Waited
        } else {
            ColdStart::None
        };
        Ok(Grant { lease, queued: arrived.elapsed(), cold_start })
    }

    fn try_acquire(self: &Arc<Self>, now: Instant) -> Result<Acquired, AcquireError> {
        let mut inner = self.lock();
        if inner.deleted {
            return Err(AcquireError::UnknownFunction(self.name.clone()));
        }
        // The request counts towards the function's concurrency until it leaves: its lease's release,
        // or, when it leaves the queue without one, `QueuedRequest`'s drop.
        inner.meter.change(now, 1);
        Ok(self.take_or_queue(&mut inner))
    }

    /// Moves a request off its leased sandbox, now down, to a free one or the queue; the request is still
    /// counted on the meter, so only the sandbox's unit of concurrency is given back.
    fn reacquire(self: &Arc<Self>, lease: Lease, now: Instant) -> Result<Acquired, AcquireError> {
        let mut inner = self.lock();
        let slot = lease.defuse();
        slot.mark_down();
        slot.give_back();
        if inner.deleted {
            inner.meter.change(now, -1);
            return Err(AcquireError::UnknownFunction(self.name.clone()));
        }
        Ok(self.take_or_queue(&mut inner))
    }

    /// Leases a free sandbox, or queues (caller holds the lock and has counted the request).
    fn take_or_queue(self: &Arc<Self>, inner: &mut FunctionInner) -> Acquired {
        if let Some(slot) = self.pick_free(inner) {
            return Acquired::Now(self.lease(slot));
        }
        // Waiters that timed out or whose client left stay queued until now; dropping them keeps the queue bounded.
        inner.waiters.retain(|w| !w.reply.is_closed());
        // The first live waiter of a function at zero asks for the cold start; a request that arrives
        // after an earlier one left asks again, in case that request was lost.
        // Sandboxes marked down count as none: the control plane ignores the request while it still lists any.
        let triggered = inner.waiters.is_empty() && inner.endpoints.iter().all(|slot| slot.is_down());
        let (tx, rx) = oneshot::channel();
        inner.waiters.push_back(Waiter { reply: tx });
        Acquired::Queued { reply: rx, triggered }
    }

    /// Picks a free endpoint and counts the request on it (caller holds the lock).
    fn pick_free(&self, inner: &mut FunctionInner) -> Option<Arc<EndpointSlot>> {
        let endpoints = &inner.endpoints;
        let index = balancer::pick(
            self.policy,
            endpoints.len(),
            // A sandbox marked down looks full to every policy.
            |i| if endpoints[i].is_down() { u32::MAX } else { endpoints[i].in_flight() },
            inner.concurrency,
            &mut inner.cursor,
        )?;
        let slot = Arc::clone(&inner.endpoints[index]);
        slot.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(slot)
    }

    fn lease(self: &Arc<Self>, slot: Arc<EndpointSlot>) -> Lease {
        Lease { function: Arc::clone(self), slot, armed: true }
    }

    /// Gives back one unit of concurrency on `slot`, handing it to the oldest waiter if any.
    fn release(self: &Arc<Self>, slot: &Arc<EndpointSlot>) {
        let mut inner = self.lock();
        let now = Instant::now();
        inner.meter.change(now, -1);
        slot.give_back();
        if slot.removed.load(Ordering::Relaxed) || slot.is_down() {
            // Its unit is of no use to anyone.
            return;
        }
        self.serve_waiters(&mut inner);
    }

    /// Hands free capacity to queued requests, oldest first (caller holds the lock).
    fn serve_waiters(self: &Arc<Self>, inner: &mut FunctionInner) {
        while !inner.waiters.is_empty() {
            let Some(slot) = self.pick_free(inner) else { return };
            let mut offer = Some(self.lease(slot));
            while let Some(waiter) = inner.waiters.pop_front() {
                let Some(lease) = offer.take() else { break };
                if let Err(returned) = waiter.reply.send(Ok(lease)) {
                    // That waiter timed out and left (and took itself off the meter): offer the next one.
                    offer = returned.ok();
                } else {
                    break;
                }
            }
            if let Some(lease) = offer {
                // Nobody left to take it: give the unit back without re-entering the lock.
                let slot = lease.defuse();
                slot.in_flight.fetch_sub(1, Ordering::Relaxed);
                return;
            }
        }
    }

    /// Replaces the endpoint set; returns the removed endpoints that still have requests in flight.
    ///
    /// Updates older than one already applied are ignored, since pushes for one function may overtake
    /// each other on the way from the control plane.
    fn replace(
        self: &Arc<Self>,
        version: Version,
        concurrency: u32,
        wanted: Vec<EndpointSpec>,
    ) -> Vec<Arc<EndpointSlot>> {
        let mut inner = self.lock();
        if version.is_older_than(inner.version) {
            return Vec::new();
        }
        inner.version = version;
        inner.concurrency = concurrency.max(1);
        let wanted_ids: HashSet<&str> = wanted.iter().map(|e| e.sandbox_id.as_str()).collect();
        let (kept, removed): (Vec<_>, Vec<_>) =
            inner.endpoints.drain(..).partition(|slot| wanted_ids.contains(slot.sandbox_id.as_str()));
        let known: HashSet<String> = kept.iter().map(|s| s.sandbox_id.clone()).collect();
        inner.endpoints = kept;
        for spec in wanted.into_iter().filter(|e| !known.contains(&e.sandbox_id)) {
            inner.endpoints.push(Arc::new(EndpointSlot::new(spec)));
        }
        for slot in &removed {
            slot.removed.store(true, Ordering::Relaxed);
        }
        self.serve_waiters(&mut inner);
        removed.into_iter().filter(|s| s.in_flight() > 0).collect()
    }

    /// Fails every queued request with `error`.
    fn fail_waiters(&self, error: &AcquireError) {
        let waiters: Vec<Waiter> = self.lock().waiters.drain(..).collect();
        for waiter in waiters {
            // The waiter's `QueuedRequest` takes it off the meter when it sees the error.
            let _ = waiter.reply.send(Err(error.clone()));
        }
    }

    /// The mean concurrency since the last call, and the current queue length.
    pub fn take_load(&self) -> (f64, u32) {
        let mut inner = self.lock();
        let average = inner.meter.take_average(Instant::now());
        inner.waiters.retain(|w| !w.reply.is_closed());
        (average, u32::try_from(inner.waiters.len()).unwrap_or(u32::MAX))
    }

    /// How many requests wait for a sandbox now (whose clients still wait).
    pub fn queued(&self) -> u32 {
        let waiting = self.lock().waiters.iter().filter(|w| !w.reply.is_closed()).count();
        u32::try_from(waiting).unwrap_or(u32::MAX)
    }

    /// Addresses of the current endpoints (for tests and introspection).
    pub fn endpoint_addresses(&self) -> Vec<SocketAddr> {
        self.lock().endpoints.iter().map(|s| s.address).collect()
    }
}

/// A request waiting in the queue. However it leaves without a lease (timeout, error, its client gone
/// and the future dropped), dropping this takes it off the concurrency meter exactly once.
struct QueuedRequest {
    entry: Arc<FunctionEntry>,
    reply: oneshot::Receiver<WaiterReply>,
    /// Set once the request holds a lease, whose release then does the accounting.
    served: bool,
}

impl Drop for QueuedRequest {
    fn drop(&mut self) {
        if self.served {
            return;
        }
        self.reply.close();
        match self.reply.try_recv() {
            // A lease handed over but not taken: its release does the accounting.
            Ok(Ok(lease)) => drop(lease),
            _ => self.entry.lock().meter.change(Instant::now(), -1),
        }
    }
}

/// How long a deletion is remembered: far longer than any push stays in flight, short enough that a
/// run registering and deleting thousands of functions does not grow the table without bound.
const TOMBSTONE_LIFETIME: Duration = Duration::from_secs(300);

/// Deleted names, each with the newest deletion's version and when it was recorded.
#[derive(Default)]
struct Tombstones {
    by_name: HashMap<String, (Version, Instant)>,
    pruned: Option<Instant>,
}

impl Tombstones {
    fn get(&self, name: &str) -> Option<Version> {
        self.by_name.get(name).map(|(version, _)| *version)
    }

    fn remove(&mut self, name: &str) {
        self.by_name.remove(name);
    }

    fn insert(&mut self, name: &str, version: Version) {
        let now = Instant::now();
        // Pruning scans every entry, so it runs at most every few seconds, not on every deletion.
        if self.pruned.is_none_or(|at| now.duration_since(at) > TOMBSTONE_LIFETIME / 30) {
            self.by_name.retain(|_, (_, at)| now.duration_since(*at) < TOMBSTONE_LIFETIME);
            self.pruned = Some(now);
        }
        let entry = self.by_name.entry(name.to_owned()).or_insert((version, now));
        *entry = (entry.0.max(version), now);
    }
}

/// Functions the control plane has announced but whose state has not arrived yet.
#[derive(Default)]
struct Announced {
    /// Whether a resync told the full set of names; until then any name may still arrive.
    resynced: bool,
    /// Names in the last resync's set whose state has not arrived yet.
    pending: HashSet<String>,
}

impl Announced {
    fn expects(&self, name: &str) -> bool {
        !self.resynced || self.pending.contains(name)
    }
}

/// All functions this data plane knows, by name.
pub struct FunctionTable {
    policy: LoadBalancing,
    functions: RwLock<HashMap<String, Arc<FunctionEntry>>>,
    /// When each deleted name was deleted, so that a sync sent before the deletion but arriving after it
    /// does not bring the function back. A newer sync (re-registration) clears it.
    tombstones: Mutex<Tombstones>,
    /// A (re)started data plane serves before the control plane's resync is through; requests for the
    /// functions still to come wait for them instead of failing with 404.
    announced: Mutex<Announced>,
    /// Wakes lookups waiting for announced functions.
    arrivals: Notify,
}

impl FunctionTable {
    /// An empty table whose functions balance with `policy`.
    pub fn new(policy: LoadBalancing) -> Self {
        Self {
            policy,
            functions: RwLock::new(HashMap::new()),
            tombstones: Mutex::default(),
            announced: Mutex::default(),
            arrivals: Notify::new(),
        }
    }

    /// The function named `name`, if registered.
    pub fn get(&self, name: &str) -> Option<Arc<FunctionEntry>> {
        self.functions.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    /// The first of `names` that is registered; waits up to `timeout` while the control plane has yet to
    /// send one of them (before its first resync, or announced in a resync whose push is under way).
    pub async fn lookup(&self, names: &[&str], timeout: Duration) -> Result<Arc<FunctionEntry>, AcquireError> {
        let found = || names.iter().find_map(|name| self.get(name));
        if let Some(entry) = found() {
            return Ok(entry);
        }
        let function = names.first().copied().unwrap_or_default().to_owned();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrival = self.arrivals.notified();
            tokio::pin!(arrival);
            // Registered before checking, so an arrival between the check and the wait is not missed.
            arrival.as_mut().enable();
            if let Some(entry) = found() {
                return Ok(entry);
            }
            let expected = {
                let announced = self.announced();
                names.iter().any(|name| announced.expects(name))
            };
            if !expected {
                return Err(AcquireError::UnknownFunction(function));
            }
            if tokio::time::timeout_at(deadline, arrival).await.is_err() {
                return Err(AcquireError::NotReceived { function, waited: timeout });
            }
        }
    }

    fn announced(&self) -> MutexGuard<'_, Announced> {
        self.announced.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks `name` as no longer awaited and wakes the lookups waiting for it.
    fn arrived(&self, name: &str) {
        self.announced().pending.remove(name);
        self.arrivals.notify_waiters();
    }

    /// Every function.
    pub fn all(&self) -> Vec<Arc<FunctionEntry>> {
        self.functions.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    /// Creates or updates a function with its full endpoint set, then waits until removed endpoints
    /// have drained or `drain_timeout` passed.
    pub async fn sync(
        &self,
        name: &str,
        version: Version,
        concurrency: u32,
        endpoints: Vec<EndpointSpec>,
        drain_timeout: Duration,
    ) {
        let entry = {
            let mut tombstones = self.tombstones.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(deleted) = tombstones.get(name) {
                if version <= deleted {
                    drop(tombstones);
                    self.arrived(name);
                    return;
                }
                tombstones.remove(name);
            }
            let mut functions = self.functions.write().unwrap_or_else(|e| e.into_inner());
            let entry = functions
                .entry(name.to_owned())
                .or_insert_with(|| Arc::new(FunctionEntry::new(name.to_owned(), self.policy, concurrency)));
            Arc::clone(entry)
        };
        let draining = entry.replace(version, concurrency, endpoints);
        self.arrived(name);
        drain(draining, drain_timeout).await;
    }

    /// Removes a function: queued requests fail, in-flight ones finish (up to `drain_timeout`).
    pub async fn remove(&self, name: &str, version: Version, drain_timeout: Duration) -> bool {
        let removed = {
            let mut tombstones = self.tombstones.lock().unwrap_or_else(|e| e.into_inner());
            let mut functions = self.functions.write().unwrap_or_else(|e| e.into_inner());
            if functions.get(name).is_some_and(|entry| version < entry.lock().version) {
                // A late removal of an earlier registration of this name: the current one stays.
                return false;
            }
            tombstones.insert(name, version);
            functions.remove(name)
        };
        self.arrived(name);
        let Some(entry) = removed else { return false };
        let draining = {
            let mut inner = entry.lock();
            inner.deleted = true;
            let slots: Vec<_> = inner.endpoints.drain(..).collect();
            for slot in &slots {
                slot.removed.store(true, Ordering::Relaxed);
            }
            slots.into_iter().filter(|s| s.in_flight() > 0).collect::<Vec<_>>()
        };
        entry.fail_waiters(&AcquireError::Deleted(name.to_owned()));
        drain(draining, drain_timeout).await;
        true
    }

    /// Removes every function not in `keep`, as deletions at `version` (a data plane that missed a deletion
    /// learns of it this way).
    pub async fn retain(&self, keep: &HashSet<String>, version: Version, drain_timeout: Duration) {
        let (names, pending): (Vec<String>, HashSet<String>) = {
            let functions = self.functions.read().unwrap_or_else(|e| e.into_inner());
            let names = functions.keys().filter(|name| !keep.contains(*name)).cloned().collect();
            (names, keep.iter().filter(|name| !functions.contains_key(*name)).cloned().collect())
        };
        // Requests for names outside the set stop waiting now; those in it wait for their push.
        *self.announced() = Announced { resynced: true, pending };
        self.arrivals.notify_waiters();
        futures_util::future::join_all(names.iter().map(|name| self.remove(name, version, drain_timeout))).await;
    }

    /// Forgets every applied version and tombstone: after (re-)registering, the control plane's resync is the
    /// truth, even if that process's clock (its incarnation) is behind the one before it.
    pub fn reset_versions(&self) {
        self.tombstones.lock().unwrap_or_else(|e| e.into_inner()).by_name.clear();
        for entry in self.all() {
            entry.lock().version = Version::default();
        }
    }

    /// Fails the queued requests of `name` because its sandboxes cannot be created.
    pub fn fail_queued(&self, name: &str, message: &str) {
        if let Some(entry) = self.get(name) {
            entry
                .fail_waiters(&AcquireError::CreationFailed { function: name.to_owned(), message: message.to_owned() });
        }
    }
}

async fn drain(slots: Vec<Arc<EndpointSlot>>, timeout: Duration) {
    if slots.is_empty() {
        return;
    }
    let all = futures_util::future::join_all(slots.iter().map(|s| s.drained()));
    if tokio::time::timeout(timeout, all).await.is_err() {
        tracing::warn!(endpoints = slots.len(), ?timeout, "endpoints still busy at the drain deadline");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str, port: u16) -> EndpointSpec {
        EndpointSpec {
            sandbox_id: id.into(),
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            creation: Duration::from_millis(3),
            steps: Vec::new(),
        }
    }

    const LONG: Duration = Duration::from_secs(5);

    fn v(generation: u64) -> Version {
        Version { incarnation: 7, generation }
    }

    #[tokio::test]
    async fn warm_request_gets_free_sandbox_and_releases_it() {
        let table = FunctionTable::new(LoadBalancing::LeastInFlight);
        table.sync("f", v(1), 1, vec![spec("a", 1)], LONG).await;
        let entry = table.get("f").unwrap();
        let grant = entry.acquire(LONG, || panic!("no cold start expected")).await.unwrap();
        assert_eq!(grant.cold_start, ColdStart::None);
        assert_eq!(grant.lease.endpoint().in_flight(), 1);
        drop(grant);
        let grant = entry.acquire(LONG, || panic!("no cold start expected")).await.unwrap();
        assert_eq!(grant.lease.endpoint().sandbox_id, "a");
    }

    #[tokio::test]
    async fn concurrency_one_queues_second_request_until_release() {
        let table = FunctionTable::new(LoadBalancing::RoundRobin);
        table.sync("f", v(1), 1, vec![spec("a", 1)], LONG).await;
        let entry = table.get("f").unwrap();
        let first = entry.acquire(LONG, || {}).await.unwrap();
        let waiting = tokio::spawn({
            let entry = Arc::clone(&entry);
            async move { entry.acquire(LONG, || panic!("endpoints exist: no cold start")).await }
        });
        while entry.take_load().1 == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(first.lease.endpoint().in_flight(), 1, "one request at a time");
        drop(first);
        let second = waiting.await.unwrap().unwrap();
        assert_eq!(second.cold_start, ColdStart::None);
        assert_eq!(second.lease.endpoint().in_flight(), 1);
    }

    #[tokio::test]
    async fn cold_start_is_triggered_once_and_waiters_are_served_in_order() {
        let table = FunctionTable::new(LoadBalancing::LeastInFlight);
        table.sync("f", v(1), 1, vec![], LONG).await;
        let entry = table.get("f").unwrap();
        let triggers = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let mut handles = Vec::new();
        for _ in 0..3 {
            let (waiter, triggers) = (Arc::clone(&entry), Arc::clone(&triggers));
            handles.push(tokio::spawn(async move {
                waiter.acquire(LONG, || _ = triggers.fetch_add(1, Ordering::Relaxed)).await
            }));
            while entry.take_load().1 < u32::try_from(handles.len()).unwrap() {
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(triggers.load(Ordering::Relaxed), 1);
        table.sync("f", v(2), 1, vec![spec("a", 1), spec("b", 2)], LONG).await;
        let first = handles.remove(0).await.unwrap().unwrap();
        let second = handles.remove(0).await.unwrap().unwrap();
        assert_eq!(first.cold_start, ColdStart::Triggered);
        assert_eq!(second.cold_start, ColdStart::Waited);
        assert_ne!(first.lease.endpoint().sandbox_id, second.lease.endpoint().sandbox_id);
        drop(first);
        let third = handles.remove(0).await.unwrap().unwrap();
        assert_eq!(third.cold_start, ColdStart::Waited, "it queued before any sandbox existed");
        drop((second, third));
        let later = entry.acquire(LONG, || {}).await.unwrap();
        assert_eq!(later.cold_start, ColdStart::None);
    }

    #[tokio::test]
    async fn abandoned_and_failed_waiters_leave_the_concurrency_meter() {
        let table = FunctionTable::new(LoadBalancing::LeastInFlight);
        table.sync("f", v(1), 1, vec![], LONG).await;
        let entry = table.get("f").unwrap();
        // A client that disconnects drops the request future while it waits.
        let abandoned = tokio::spawn({
            let entry = Arc::clone(&entry);
            async move { entry.acquire(LONG, || {}).await }
        });
        while entry.lock().meter.level() == 0 {
            tokio::task::yield_now().await;
        }
        abandoned.abort();
        let _ = abandoned.await;
        assert_eq!(entry.lock().meter.level(), 0);
        let failing = tokio::spawn({
            let entry = Arc::clone(&entry);
            async move { entry.acquire(LONG, || {}).await }
        });
        while entry.take_load().1 == 0 {
            tokio::task::yield_now().await;
        }
        table.fail_queued("f", "no capacity");
        assert!(failing.await.unwrap().is_err());
        assert_eq!(entry.lock().meter.level(), 0);
        assert_eq!(entry.take_load().1, 0, "no dead waiter is reported as queued");
    }

    #[tokio::test]
    async fn sets_replace_never_append_and_stale_generations_are_ignored() {
        let table = FunctionTable::new(LoadBalancing::LeastInFlight);
        table.sync("f", v(1), 1, vec![spec("a", 1), spec("b", 2)], LONG).await;
        table.sync("f", v(3), 1, vec![spec("b", 2), spec("c", 3)], LONG).await;
        table.sync("f", v(3), 1, vec![spec("b", 2), spec("c", 3)], LONG).await;
        table.sync("f", v(2), 1, vec![spec("a", 1)], LONG).await;
        let restarted = Version { incarnation: 8, generation: 1 };
        table.sync("f", restarted, 1, vec![spec("b", 2), spec("c", 3)], LONG).await;
        table.sync("f", v(9), 1, vec![spec("a", 1)], LONG).await;
        let mut ports: Vec<u16> = table.get("f").unwrap().endpoint_addresses().iter().map(|a| a.port()).collect();
        ports.sort();
        assert_eq!(ports, [2, 3], "a restarted control plane's first update wins; the old one's are over");
        table.reset_versions();
        let behind = Version { incarnation: 1, generation: 1 };
        table.sync("f", behind, 1, vec![spec("a", 1)], LONG).await;
        let ports: Vec<u16> = table.get("f").unwrap().endpoint_addresses().iter().map(|a| a.port()).collect();
        assert_eq!(ports, [1], "after re-registering, a control plane whose clock is behind is still heard");
    }

    #[tokio::test]
    async fn removal_drains_in_flight_requests() {
        let table = Arc::new(FunctionTable::new(LoadBalancing::LeastInFlight));
        table.sync("f", v(1), 1, vec![spec("a", 1)], LONG).await;
        let grant = table.get("f").unwrap().acquire(LONG, || {}).await.unwrap();
        let sync = tokio::spawn({
            let table = Arc::clone(&table);
            async move { table.sync("f", v(2), 1, vec![], LONG).await }
        });
        tokio::task::yield_now().await;
        assert!(!sync.is_finished(), "the sync waits for the drain");
        drop(grant);
        sync.await.unwrap();
        assert!(table.get("f").unwrap().endpoint_addresses().is_empty());
    }

    #[tokio::test]
    async fn failures_and_deletion_reach_waiters() {
        let table = FunctionTable::new(LoadBalancing::LeastInFlight);
        table.sync("f", v(1), 1, vec![], LONG).await;
        let entry = table.get("f").unwrap();
        let waiting = tokio::spawn({
            let entry = Arc::clone(&entry);
            async move { entry.acquire(LONG, || {}).await }
        });
        while entry.take_load().1 == 0 {
            tokio::task::yield_now().await;
        }
        table.fail_queued("f", "bad image");
        let err = waiting.await.unwrap().unwrap_err();
        assert!(matches!(err, AcquireError::CreationFailed { .. }), "{err}");
        let timeout = entry.acquire(Duration::from_millis(10), || {}).await.unwrap_err();
        assert!(matches!(timeout, AcquireError::Timeout { .. }));
        assert!(table.remove("f", v(2), LONG).await);
        table.sync("f", v(1), 1, vec![spec("a", 1)], LONG).await;
        assert!(table.get("f").is_none(), "a sync sent before the deletion does not bring it back");
        table.sync("f", v(3), 1, vec![], LONG).await;
        assert!(table.get("f").is_some(), "re-registration does");
        assert!(!table.remove("f", v(2), LONG).await, "a late removal of the old registration is ignored");
        assert!(table.get("f").is_some());
        table.retain(&HashSet::from(["g".to_owned()]), v(4), LONG).await;
        assert!(table.get("f").is_none(), "a resync's retain removes what the control plane no longer has");
        assert!(matches!(entry.acquire(LONG, || {}).await, Err(AcquireError::UnknownFunction(_))));
    }

    #[tokio::test]
    async fn a_down_endpoint_is_skipped_by_every_policy_and_frees_its_capacity() {
        for policy in [LoadBalancing::RoundRobin, LoadBalancing::Random, LoadBalancing::LeastInFlight] {
            let table = FunctionTable::new(policy);
            table.sync("f", v(1), 1, vec![spec("a", 1), spec("b", 2)], LONG).await;
            let entry = table.get("f").unwrap();
            let first = entry.acquire(LONG, || {}).await.unwrap();
            let dead = Arc::clone(&first.lease.slot);
            let moved = first.lease.fail_over(LONG, || panic!("b is up: no cold start")).await.unwrap();
            assert!(dead.is_down(), "{policy:?}");
            assert_eq!(dead.in_flight(), 0, "{policy:?}: the dead sandbox's unit is given back");
            assert_ne!(moved.lease.endpoint().sandbox_id, dead.sandbox_id, "{policy:?}");
            assert_eq!(entry.lock().meter.level(), 1, "{policy:?}: the failed-over request counts once");
            drop(moved);
            assert_eq!(entry.lock().meter.level(), 0, "{policy:?}");
            for _ in 0..5 {
                let grant = entry.acquire(LONG, || {}).await.unwrap();
                assert_ne!(grant.lease.endpoint().sandbox_id, dead.sandbox_id, "{policy:?}: never picked again");
                let busy = entry.acquire(Duration::from_millis(5), || {}).await;
                assert!(
                    matches!(busy, Err(AcquireError::Timeout { .. })),
                    "{policy:?}: the free but down one is not used"
                );
            }
            table.sync("f", v(2), 1, vec![spec("a", 1), spec("b", 2)], LONG).await;
            assert!(dead.is_down(), "{policy:?}: a set that still lists it keeps it down");
            assert_eq!(entry.lock().meter.level(), 0, "{policy:?}: nothing leaked");
        }
    }

    #[tokio::test]
    async fn a_failed_over_request_queues_and_is_served_by_the_next_sandbox() {
        let table = FunctionTable::new(LoadBalancing::LeastInFlight);
        table.sync("f", v(1), 1, vec![spec("a", 1)], LONG).await;
        let entry = table.get("f").unwrap();
        let grant = entry.acquire(LONG, || {}).await.unwrap();
        let triggers = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let moving = tokio::spawn({
            let triggers = Arc::clone(&triggers);
            async move { grant.lease.fail_over(LONG, || _ = triggers.fetch_add(1, Ordering::Relaxed)).await }
        });
        while entry.take_load().1 == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(triggers.load(Ordering::Relaxed), 1, "no sandbox left up: the control plane is asked for one");
        table.sync("f", v(2), 1, vec![spec("a", 1), spec("b", 2)], LONG).await;
        let moved = moving.await.unwrap().unwrap();
        assert_eq!(moved.lease.endpoint().sandbox_id, "b");
        assert_eq!(moved.cold_start, ColdStart::Triggered);
        drop(moved);
        table.sync("f", v(3), 1, vec![spec("b", 2)], LONG).await;
        table.sync("f", v(4), 1, vec![spec("a", 1), spec("b", 2)], LONG).await;
        let held = entry.acquire(LONG, || {}).await.unwrap();
        let other = entry.acquire(LONG, || {}).await.unwrap();
        let mut ids = [held.lease.endpoint().sandbox_id.clone(), other.lease.endpoint().sandbox_id.clone()];
        ids.sort();
        assert_eq!(ids, ["a", "b"], "a set without a, then one with it again, brings it back up");
    }

    #[tokio::test]
    async fn a_queued_waiter_is_served_by_another_sandbox_when_one_goes_down() {
        let table = FunctionTable::new(LoadBalancing::RoundRobin);
        table.sync("f", v(1), 1, vec![spec("a", 1), spec("b", 2)], LONG).await;
        let entry = table.get("f").unwrap();
        let (on_a, on_b) = (entry.acquire(LONG, || {}).await.unwrap(), entry.acquire(LONG, || {}).await.unwrap());
        assert_eq!(on_a.lease.endpoint().sandbox_id, "a");
        let waiting = tokio::spawn({
            let entry = Arc::clone(&entry);
            async move { entry.acquire(LONG, || panic!("sandboxes exist")).await }
        });
        while entry.take_load().1 == 0 {
            tokio::task::yield_now().await;
        }
        let moving = tokio::spawn(on_a.lease.fail_over(LONG, || panic!("b is up")));
        while entry.take_load().1 < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(entry.lock().meter.level(), 3, "two leases on b's way and one on b: each request once");
        drop(on_b);
        let first = waiting.await.unwrap().unwrap();
        assert_eq!(first.lease.endpoint().sandbox_id, "b", "the oldest waiter gets b; a is down");
        drop(first);
        let second = moving.await.unwrap().unwrap();
        assert_eq!(second.lease.endpoint().sandbox_id, "b");
        drop(second);
        assert_eq!(entry.lock().meter.level(), 0);
    }

    #[tokio::test]
    async fn timed_out_waiter_does_not_leak_capacity() {
        let table = FunctionTable::new(LoadBalancing::LeastInFlight);
        table.sync("f", v(1), 1, vec![spec("a", 1)], LONG).await;
        let entry = table.get("f").unwrap();
        let first = entry.acquire(LONG, || {}).await.unwrap();
        assert!(entry.acquire(Duration::from_millis(5), || {}).await.is_err());
        drop(first);
        let again = entry.acquire(LONG, || {}).await.unwrap();
        assert_eq!(again.lease.endpoint().in_flight(), 1);
    }

    #[tokio::test]
    async fn before_the_first_resync_a_lookup_waits_for_the_function() {
        let table = Arc::new(FunctionTable::new(LoadBalancing::RoundRobin));
        let waiting = tokio::spawn({
            let table = Arc::clone(&table);
            async move { table.lookup(&["f"], LONG).await.map(|entry| entry.name().to_owned()) }
        });
        tokio::task::yield_now().await;
        table.retain(&HashSet::from(["f".to_owned()]), v(1), LONG).await;
        assert!(!waiting.is_finished(), "f is announced but not yet here");
        table.sync("f", v(1), 1, vec![spec("a", 1)], LONG).await;
        assert_eq!(waiting.await.unwrap().unwrap(), "f");
    }

    #[tokio::test]
    async fn after_a_resync_only_announced_functions_are_awaited() {
        let table = FunctionTable::new(LoadBalancing::RoundRobin);
        let unsynced = table.lookup(&["f"], Duration::from_millis(20)).await.unwrap_err();
        assert!(matches!(unsynced, AcquireError::NotReceived { .. }), "{unsynced}");
        table.retain(&HashSet::from(["f".to_owned(), "g".to_owned()]), v(1), LONG).await;
        let unknown = table.lookup(&["h"], LONG).await.unwrap_err();
        assert_eq!(unknown, AcquireError::UnknownFunction("h".into()), "h was not announced: no wait");
        table.sync("g", v(1), 1, vec![], LONG).await;
        assert_eq!(table.lookup(&["x.default", "g"], LONG).await.unwrap().name(), "g", "the second name is tried");
        assert!(!table.remove("f", v(2), LONG).await, "f never arrived: nothing to remove");
        let removed = table.lookup(&["f"], LONG).await.unwrap_err();
        assert_eq!(removed, AcquireError::UnknownFunction("f".into()), "a removal ends the wait for f");
    }
}
