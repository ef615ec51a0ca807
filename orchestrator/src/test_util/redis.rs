//! A real `redis-server` for tests: on a free loopback port with a folder of its own, nothing persisted, stopped
//! (and its folder removed) when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::script::PATIENCE;

/// Tries with another port when the chosen one was taken between choosing and binding.
const ATTEMPTS: u32 = 5;

/// A running `redis-server`.
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts one and waits until it answers PING; panics (saying to install `redis-server`) when the binary is
    /// missing.
    pub fn start() -> Self {
        for _ in 0..ATTEMPTS {
            if let Some(server) = Self::try_start() {
                return server;
            }
        }
        panic!("redis-server did not start on a free loopback port in {ATTEMPTS} attempts");
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The server's process id (for its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn try_start() -> Option<Self> {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let port = free_port();
        let serial = STARTED.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("redis-test-{}-{serial}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}): install redis-server (apt-get install redis-server)")
            });
        let mut server = Self { child, port, dir };
        server.answers().then_some(server)
    }

    /// Whether it answers PING before [`PATIENCE`] runs out or it exits.
    fn answers(&mut self) -> bool {
        let client = redis::Client::open(self.url()).expect("a valid URL");
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            let ping = client
                .get_connection_with_timeout(Duration::from_secs(1))
                .and_then(|mut connection| redis::cmd("PING").query::<String>(&mut connection));
            if ping.is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free loopback port");
    listener.local_addr().expect("its address").port()
}
