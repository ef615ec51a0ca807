//! Several data planes behind one target: invocations spread round robin over every known proxy, and a request
//! whose connection a proxy refused goes to the next one at once.
//!
//! Round robin per invocation (not per function by hash) because it spreads load evenly whatever the functions'
//! rates; every data plane knows every function's sandboxes, so nothing is gained by pinning a function to one.
//! Only a failed connect is retried: no byte of the request was written, so nothing can have run twice. A request
//! that may have reached a proxy (a reset after sending, a broken reply) is failed, never sent again. A proxy that
//! refused is passed over for [`ProxyPool`]'s avoid window and tried again after it (last of all within it), so a
//! data plane that comes back gets load again and a run whose proxies all died still tries each one.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::http::{Attempt, HttpTarget, HttpTargetConfig};
use super::{TargetError, TargetResponse};
use crate::record::Outcome;
use crate::schedule::Invocation;

/// One data plane's proxy and when it may be tried first again.
struct Proxy {
    address: String,
    http: HttpTarget,
    /// Milliseconds since the pool's epoch before which this proxy is passed over (it refused a connection).
    avoid_until_ms: AtomicU64,
}

/// The proxies one target sends to, with round-robin spreading and failover on refused connections.
pub(crate) struct ProxyPool {
    proxies: RwLock<Arc<[Arc<Proxy>]>>,
    next: AtomicUsize,
    epoch: Instant,
    avoid_for: Duration,
    request_timeout: Option<Duration>,
}

impl ProxyPool {
    /// A pool of `addresses` (`host:port`, duplicates dropped); every request is bounded by `request_timeout`
    /// over all its attempts, and a proxy that refused is passed over for `avoid_for`.
    pub(crate) fn new(
        addresses: &[String],
        request_timeout: Option<Duration>,
        avoid_for: Duration,
    ) -> Result<Self, TargetError> {
        let pool = ProxyPool {
            proxies: RwLock::new(Arc::from(Vec::new())),
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
            avoid_for,
            request_timeout,
        };
        for address in addresses {
            pool.add(address)?;
        }
        Ok(pool)
    }

    /// Adds the proxy at `address` unless it is known; whether it was new.
    pub(crate) fn add(&self, address: &str) -> Result<bool, TargetError> {
        let mut proxies = self.proxies.write().unwrap_or_else(|e| e.into_inner());
        if proxies.iter().any(|p| p.address == address) {
            return Ok(false);
        }
        let mut config = HttpTargetConfig::new(format!("http://{address}/"));
        config.host_template = Some(super::http::FUNCTION_PLACEHOLDER.into());
        config.request_timeout = self.request_timeout;
        let http = HttpTarget::new(config)
            .map_err(|e| TargetError::Config(format!("data plane proxy '{address}' is not host:port: {e}")))?;
        let proxy = Arc::new(Proxy { address: address.to_owned(), http, avoid_until_ms: AtomicU64::new(0) });
        *proxies = proxies.iter().cloned().chain([proxy]).collect();
        Ok(true)
    }

    /// The proxies' addresses, in the order they were added.
    pub(crate) fn addresses(&self) -> Vec<String> {
        self.snapshot().iter().map(|p| p.address.clone()).collect()
    }

    fn snapshot(&self) -> Arc<[Arc<Proxy>]> {
        self.proxies.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Sends one invocation of `function` (in the `Host` header) to the next proxy in turn, failing over on a
    /// refused connection; the response counts the failovers, also when the timeout cut it short.
    pub(crate) async fn invoke(&self, function: &str, invocation: &Invocation) -> TargetResponse {
        let proxies = self.snapshot();
        let mut failovers = 0;
        let sending = self.send(&proxies, function, invocation, &mut failovers);
        let mut response = match self.request_timeout {
            Some(limit) => tokio::time::timeout(limit, sending)
                .await
                .unwrap_or_else(|_| TargetResponse::from_outcome(Outcome::Timeout)),
            None => sending.await,
        };
        response.failovers = failovers;
        response
    }

    async fn send(
        &self,
        proxies: &[Arc<Proxy>],
        function: &str,
        invocation: &Invocation,
        failovers: &mut u32,
    ) -> TargetResponse {
        let mut refused = None;
        for (tried, index) in self.order(proxies).into_iter().enumerate() {
            if tried > 0 {
                *failovers += 1;
            }
            let proxy = &proxies[index];
            match proxy.http.attempt(function, None, invocation).await {
                Attempt::Done(response) => return response,
                Attempt::NotSent(message) => {
                    let until = self.now_ms().saturating_add(u64::try_from(self.avoid_for.as_millis()).unwrap_or(0));
                    proxy.avoid_until_ms.fetch_max(until, Ordering::Relaxed);
                    refused = Some(format!("{}: {message}", proxy.address));
                }
            }
        }
        let message = match refused {
            Some(last) => format!("every data plane refused the connection ({} tried; last {last})", proxies.len()),
            None => "no data plane proxy is known: configure target.proxy".into(),
        };
        TargetResponse::from_outcome(Outcome::ConnectionFailed(message))
    }

    /// The proxies to try, in turn: from the next round-robin position, those not avoided first.
    fn order(&self, proxies: &[Arc<Proxy>]) -> Vec<usize> {
        if proxies.is_empty() {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % proxies.len();
        let now = self.now_ms();
        let (ready, avoided): (Vec<usize>, Vec<usize>) = (0..proxies.len())
            .map(|i| (start + i) % proxies.len())
            .partition(|&i| proxies[i].avoid_until_ms.load(Ordering::Relaxed) <= now);
        ready.into_iter().chain(avoided).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(addresses: &[&str]) -> ProxyPool {
        let addresses: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
        ProxyPool::new(&addresses, None, Duration::from_secs(60)).unwrap()
    }

    #[test]
    fn turns_go_round_and_avoided_proxies_come_last() {
        let pool = pool(&["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]);
        let proxies = pool.snapshot();
        assert_eq!(pool.order(&proxies), [0, 1, 2]);
        assert_eq!(pool.order(&proxies), [1, 2, 0]);
        proxies[2].avoid_until_ms.store(u64::MAX, Ordering::Relaxed);
        assert_eq!(pool.order(&proxies), [0, 1, 2], "the avoided one is last, not dropped");
        assert_eq!(pool.order(&proxies), [0, 1, 2]);
        assert_eq!(pool.order(&proxies), [1, 0, 2]);
    }

    #[test]
    fn duplicates_are_dropped_and_bad_addresses_named() {
        let pool = pool(&["127.0.0.1:1", "127.0.0.1:1"]);
        assert!(!pool.add("127.0.0.1:1").unwrap());
        assert!(pool.add("127.0.0.1:2").unwrap());
        assert_eq!(pool.addresses(), ["127.0.0.1:1", "127.0.0.1:2"]);
        let error = pool.add("not an address").unwrap_err().to_string();
        assert!(error.contains("'not an address'"), "{error}");
    }

    #[tokio::test]
    async fn an_empty_pool_fails_the_invocation_and_says_why() {
        let response = pool(&[]).invoke("f", &Invocation::single(1, 1)).await;
        assert!(
            matches!(&response.outcome, Outcome::ConnectionFailed(m) if m.contains("target.proxy")),
            "{:?}",
            response.outcome
        );
    }
}
