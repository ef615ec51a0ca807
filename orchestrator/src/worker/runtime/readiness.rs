//! The HTTP readiness probe: a sandbox is ready when `GET /health` answers 200.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Probes `address` until it answers 200 or `deadline` passes; true when ready.
pub async fn wait_http_ready(address: SocketAddr, deadline: Instant) -> bool {
    // Start fast (a process sandbox binds within a millisecond or two), then back off to spare the CPU.
    let mut delay = Duration::from_micros(250);
    loop {
        let attempt = tokio::time::timeout_at(deadline, probe(address)).await;
        match attempt {
            Ok(true) => return true,
            Ok(false) => {}
            Err(_) => return false,
        }
        if Instant::now() + delay >= deadline {
            return false;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}

/// One probe: connect, `GET /health`, check the status line.
pub async fn probe(address: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(address).await else { return false };
    let _ = stream.set_nodelay(true);
    let request = format!("GET /health HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.is_ok() && (head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn answer_once(listener: TcpListener, reply: &'static [u8]) {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 256];
        let _ = stream.read(&mut buf).await;
        stream.write_all(reply).await.unwrap();
    }

    #[tokio::test]
    async fn ready_on_200_not_on_500_or_closed_port() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(answer_once(listener, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"));
        assert!(wait_http_ready(address, Instant::now() + Duration::from_secs(5)).await);

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(answer_once(listener, b"HTTP/1.1 500 Oops\r\ncontent-length: 0\r\n\r\n"));
        assert!(!probe(address).await);

        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        assert!(!wait_http_ready(closed, Instant::now() + Duration::from_millis(30)).await);
    }
}
