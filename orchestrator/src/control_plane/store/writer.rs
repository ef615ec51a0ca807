//! The one writer a durable store has: a thread that takes every change queued while it was committing (up to
//! [`MAX_BATCH`]) and commits them together, so that thousands of concurrent registrations cost a few commits
//! (fsyncs, round trips) instead of one each.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::rows::Row;
use super::{StoreChange, StoreError, StoreFuture};

/// Most changes in one commit: bounds a transaction's size and the latency of its first change.
pub(super) const MAX_BATCH: usize = 1024;

/// Where a writer commits: one transaction (or MULTI) per call.
pub(super) trait Commit: Send + 'static {
    /// Writes `rows` in order, all or none.
    fn commit(&mut self, rows: &[Row]) -> Result<(), StoreError>;
}

struct Request {
    row: Row,
    answer: oneshot::Sender<Result<(), StoreError>>,
}

/// A running writer thread; dropping it lets the thread commit what is queued and waits for it.
pub(super) struct Writer {
    store: String,
    requests: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    writes: Arc<AtomicU64>,
}

impl Writer {
    /// Starts the thread; `store` names the file or server in errors and the thread's name.
    pub(super) fn spawn(store: String, sink: impl Commit) -> Result<Self, StoreError> {
        let (requests, queue) = mpsc::channel();
        let writes = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&writes);
        let thread = std::thread::Builder::new()
            .name("registry-store".into())
            .spawn(move || run(sink, &queue, &counter))
            .map_err(|source| StoreError::Spawn { store: store.clone(), source })?;
        Ok(Self { store, requests: Some(requests), thread: Some(thread), writes })
    }

    /// Queues `change`; the future resolves when its batch is committed.
    pub(super) fn apply(&self, change: &StoreChange) -> StoreFuture<'_> {
        let row = match Row::of(change) {
            Ok(row) => row,
            Err(error) => return Box::pin(std::future::ready(Err(error))),
        };
        let (answer, answered) = oneshot::channel();
        let sent = self.requests.as_ref().is_some_and(|requests| requests.send(Request { row, answer }).is_ok());
        Box::pin(async move {
            match (sent, answered.await) {
                (true, Ok(result)) => result,
                _ => Err(StoreError::WriterGone { store: self.store.clone() }),
            }
        })
    }

    /// Changes committed since the writer started.
    pub(super) fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(thread) = self.thread.take() {
            // A panicked writer has already failed its callers (their answers were dropped).
            let _ = thread.join();
        }
    }
}

fn run(mut sink: impl Commit, queue: &mpsc::Receiver<Request>, writes: &AtomicU64) {
    let mut rows = Vec::with_capacity(MAX_BATCH);
    let mut answers = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = queue.recv() {
        let more = std::iter::from_fn(|| queue.try_recv().ok()).take(MAX_BATCH - 1);
        for request in std::iter::once(first).chain(more) {
            rows.push(request.row);
            answers.push(request.answer);
        }
        commit(&mut sink, &rows, &mut answers, writes);
        rows.clear();
    }
}

/// Commits the batch, and when that fails each change alone, so that one bad change fails only its caller.
fn commit(
    sink: &mut impl Commit,
    rows: &[Row],
    answers: &mut Vec<oneshot::Sender<Result<(), StoreError>>>,
    writes: &AtomicU64,
) {
    if rows.len() > 1 && sink.commit(rows).is_ok() {
        writes.fetch_add(rows.len() as u64, Ordering::Relaxed);
        answers.drain(..).for_each(|answer| drop(answer.send(Ok(()))));
        return;
    }
    for (row, answer) in rows.iter().zip(answers.drain(..)) {
        let result = sink.commit(std::slice::from_ref(row));
        if result.is_ok() {
            writes.fetch_add(1, Ordering::Relaxed);
        }
        drop(answer.send(result));
    }
}
