//! The HTTP readiness probe: a sandbox is ready when `GET /health` answers 200.
//!
//! The probe loop runs on a blocking thread: tokio's timers tick in whole milliseconds, while a process
//! sandbox is usually listening within two or three, so sub-millisecond retries shave most of a cold
//! start's probe delay.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{RuntimeError, SandboxInfo};

/// The readiness rule of every runtime: `sandbox` is ready once it answers 200, not ready at `timeout`, and
/// exited early as soon as `ended` holds the reason it ended for.
pub async fn ready_unless_ended(
    sandbox: &SandboxInfo,
    timeout: Duration,
    mut ended: watch::Receiver<Option<String>>,
) -> Result<(), RuntimeError> {
    tokio::select! {
        ready = wait_http_ready(sandbox.address, timeout) => match ready {
            true => Ok(()),
            false => Err(RuntimeError::NotReady { id: sandbox.id.clone(), address: sandbox.address, timeout }),
        },
        reason = ended.wait_for(Option::is_some) => {
            let reason = reason.map(|r| r.clone().unwrap_or_default()).unwrap_or_else(|_| "unknown".into());
            Err(RuntimeError::ExitedEarly { id: sandbox.id.clone(), reason })
        }
    }
}

/// Probes `address` until it answers 200 or `timeout` passes; true when ready.
pub async fn wait_http_ready(address: SocketAddr, timeout: Duration) -> bool {
    let cancelled = Arc::new(AtomicBool::new(false));
    // Stops the probe thread when the caller gives up early (for instance because the sandbox exited).
    let _stop = StopOnDrop(Arc::clone(&cancelled));
    let deadline = Instant::now() + timeout;
    tokio::task::spawn_blocking(move || probe_until(address, deadline, &cancelled)).await.unwrap_or(false)
}

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Probe every 150 µs for the first 20 ms (a refused connect costs a few microseconds, and a sandbox that
/// starts in 2 ms should not wait for a doubling backoff's next slot), then back off.
const FAST_PROBING: Duration = Duration::from_millis(20);

fn probe_until(address: SocketAddr, deadline: Instant, cancelled: &AtomicBool) -> bool {
    let started = Instant::now();
    let mut delay = Duration::from_micros(150);
    while !cancelled.load(Ordering::Relaxed) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        if probe(address, left.min(Duration::from_secs(1))) {
            return true;
        }
        std::thread::sleep(delay.min(deadline.saturating_duration_since(Instant::now())));
        if started.elapsed() > FAST_PROBING {
            // Back off so a slow-starting image does not cost a core.
            delay = (delay * 2).min(Duration::from_millis(10));
        }
    }
    false
}

/// One probe within `timeout`: connect, `GET /health`, check the status line.
pub fn probe(address: SocketAddr, timeout: Duration) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, timeout) else { return false };
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let request = format!("GET /health HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && (head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn answer_once(listener: TcpListener, reply: &'static [u8]) {
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = [0u8; 256];
            let _ = stream.read(&mut buf);
            stream.write_all(reply).unwrap();
        });
    }

    #[tokio::test]
    async fn ready_on_200_not_on_500_or_closed_port() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        answer_once(listener, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        assert!(wait_http_ready(address, Duration::from_secs(5)).await);

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        answer_once(listener, b"HTTP/1.1 500 Oops\r\ncontent-length: 0\r\n\r\n");
        assert!(!probe(address, Duration::from_secs(5)));

        let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert!(!wait_http_ready(closed, Duration::from_millis(30)).await);
    }
}
