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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use contracts::api::FunctionSpec;
    use futures_util::future::join_all;

    use super::*;
    use crate::test_util::script::PATIENCE;

    /// Records every batch it is asked to commit (names, in order); holds the first commit until released, and
    /// refuses any batch holding the name `refused`.
    struct Recording {
        batches: Arc<Mutex<Vec<Vec<String>>>>,
        gate: Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>,
        refused: &'static str,
    }

    impl Commit for Recording {
        fn commit(&mut self, rows: &[Row]) -> Result<(), StoreError> {
            if let Some((entered, release)) = self.gate.take() {
                entered.send(()).expect("the test waits");
                release.recv().expect("the test releases");
            }
            self.batches.lock().unwrap().push(rows.iter().map(|row| row.name.clone()).collect());
            match rows.iter().any(|row| row.name == self.refused) {
                true => Err(StoreError::WriterGone { store: "refused".into() }),
                false => Ok(()),
            }
        }
    }

    /// Gates of a [`Recording`]: seen when its first commit starts, and what lets that commit go on.
    struct Gate {
        entered: mpsc::Receiver<()>,
        release: mpsc::Sender<()>,
    }

    impl Gate {
        fn entered(&self) {
            self.entered.recv_timeout(PATIENCE).expect("the writer starts committing");
        }
    }

    fn recording(refused: &'static str) -> (Writer, Arc<Mutex<Vec<Vec<String>>>>, Gate) {
        let (entered, seen) = mpsc::channel();
        let (release, released) = mpsc::channel();
        let batches = Arc::new(Mutex::new(Vec::new()));
        let sink = Recording { batches: Arc::clone(&batches), gate: Some((entered, released)), refused };
        let writer = Writer::spawn("test".into(), sink).expect("a thread");
        (writer, batches, Gate { entered: seen, release })
    }

    fn save(name: &str) -> StoreChange {
        StoreChange::SaveFunction(FunctionSpec::new(name, "image"))
    }

    fn sizes(batches: &Mutex<Vec<Vec<String>>>) -> Vec<usize> {
        batches.lock().unwrap().iter().map(Vec::len).collect()
    }

    #[tokio::test]
    async fn commits_what_queued_meanwhile_together_up_to_the_bound() {
        let (writer, batches, gate) = recording("");
        let first = writer.apply(&save("first"));
        gate.entered();
        let names: Vec<String> = (0..MAX_BATCH + 5).map(|i| format!("f{i}")).collect();
        let queued: Vec<_> = names.iter().map(|name| writer.apply(&save(name))).collect();
        gate.release.send(()).unwrap();
        first.await.expect("the first change");
        join_all(queued).await.into_iter().for_each(|result| result.expect("a queued change"));
        assert_eq!(sizes(&batches), [1, MAX_BATCH, 5]);
        let committed: Vec<String> = batches.lock().unwrap()[1..].concat();
        assert_eq!(committed, names, "in the order applied");
        assert_eq!(writer.writes(), (MAX_BATCH + 6) as u64);
    }

    #[tokio::test]
    async fn a_refused_batch_fails_only_the_change_it_refuses() {
        let (writer, batches, gate) = recording("bad");
        let first = writer.apply(&save("first"));
        gate.entered();
        let queued: Vec<_> = ["x", "bad", "y"].map(|name| writer.apply(&save(name))).into_iter().collect();
        gate.release.send(()).unwrap();
        first.await.expect("the first change");
        let results: Vec<bool> = join_all(queued).await.iter().map(Result::is_ok).collect();
        assert_eq!(results, [true, false, true]);
        assert_eq!(sizes(&batches), [1, 3, 1, 1, 1], "the batch, then each change alone");
        assert_eq!(writer.writes(), 3);
    }
}
