//! A worker's or data plane's long-lived attachment to the control plane (the `Attach` stream): the
//! registration is its first message, heartbeats follow, and the peer attaches again whenever it ends.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::Call;
use crate::net::Backoff;
use crate::proto::dirigent::{AttachReply, AttachRequest, Heartbeat, attach_request};

/// What a peer sends down its attachment: its registration first, then heartbeats.
pub type Outbound = ReceiverStream<AttachRequest>;

/// The control plane's replies on an attachment; the stream ends when the control plane is gone or dropped
/// the peer.
pub type Replies = BoxStream<'static, Result<AttachReply, tonic::Status>>;

/// Opens an attachment to the control plane.
pub trait Attach: Send + Sync + 'static {
    /// Sends `messages` down a new attachment; answers with the control plane's replies.
    fn attach(&self, messages: Outbound) -> Call<'_, Replies>;
}

/// The messages sent on a channel, as a stream that ends when every sender is gone.
#[derive(Debug)]
pub struct ReceiverStream<T>(pub mpsc::Receiver<T>);

impl<T> futures_util::Stream for ReceiverStream<T> {
    type Item = T;

    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

/// The longest wait between two attempts to attach: a restarted control plane, or a newly elected leader, sees
/// every peer again within about this long (at 500 ms, peers reached a leader elected 560 ms after its
/// predecessor's death only 1.1 s after it: the backoff had grown while the replicas elected). Ten attempts a
/// second at a dead address cost nothing worth saving.
const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// Heartbeats without a reply before the peer takes the control plane for gone (it went silent without
/// closing the connection).
const UNANSWERED_HEARTBEATS: u32 = 4;

/// What one peer says on its attachment, and what it does around each one.
pub trait AttachingPeer: Send + Sync {
    /// The registration, the attachment's first message.
    fn registration(&self) -> attach_request::Message;
    /// The next heartbeat.
    fn heartbeat(&self) -> Heartbeat;
    /// Runs before each attempt to attach.
    fn attaching(&self) {}
    /// Runs once the control plane accepted the registration.
    fn attached(&self) {}
}

/// How an attachment ended.
enum Ended {
    /// The process is shutting down.
    Shutdown,
    /// The control plane refused the registration, or could not be reached.
    Refused(tonic::Status),
    /// The attachment was accepted, then ended.
    Lost(String),
}

/// What keeps a peer attached: the uplink, what the peer says, how often, and the signals around it.
pub struct Attachment<'a> {
    /// The control plane's attach call.
    pub uplink: &'a dyn Attach,
    /// The registration and heartbeats.
    pub peer: &'a dyn AttachingPeer,
    /// Between heartbeats.
    pub interval: Duration,
    /// Notified: end the attachment and attach again (the control plane forgot this peer).
    pub reattach: &'a Notify,
    /// Whether an attachment is up.
    pub attached: &'a watch::Sender<bool>,
    /// Ends it all.
    pub shutdown: &'a CancellationToken,
}

impl Attachment<'_> {
    /// Keeps the peer attached until `shutdown`: attaches, heartbeats every `interval`, and attaches again
    /// when the stream ends (first retry after 20 ms, doubling up to [`MAX_BACKOFF`]) or when `reattach` is
    /// notified.
    pub async fn stay(&self) {
        let mut backoff = Backoff::new(MAX_BACKOFF);
        loop {
            self.peer.attaching();
            let ended = self.once().await;
            self.attached.send_replace(false);
            match ended {
                Ended::Shutdown => return,
                Ended::Refused(status) => tracing::debug!(%status, "attaching to the control plane"),
                Ended::Lost(why) => {
                    tracing::warn!(%why, "attachment to the control plane ended; attaching again");
                    backoff = Backoff::new(MAX_BACKOFF);
                }
            }
            if !backoff.wait(self.shutdown).await {
                return;
            }
        }
    }

    async fn once(&self) -> Ended {
        let (uplink, peer, interval, shutdown) = (self.uplink, self.peer, self.interval, self.shutdown);
        // Small: a heartbeat that cannot be sent at once is stale by the next one.
        let (messages, outbound) = mpsc::channel(2);
        let registration = AttachRequest { message: Some(peer.registration()) };
        if messages.try_send(registration).is_err() {
            return Ended::Refused(tonic::Status::internal("the attachment's channel refused its first message"));
        }
        // A control plane that accepts the connection but never answers is as good as gone.
        let accepting = tokio::time::timeout(interval * UNANSWERED_HEARTBEATS, accepted(uplink, outbound));
        let mut replies = tokio::select! {
            replies = accepting => match replies {
                Ok(Ok(replies)) => replies,
                Ok(Err(status)) => return Ended::Refused(status),
                Err(_) => return Ended::Refused(tonic::Status::deadline_exceeded("the control plane did not answer the registration")),
            },
            () = shutdown.cancelled() => return Ended::Shutdown,
        };
        self.attached.send_replace(true);
        peer.attached();
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.reset();
        let mut unanswered = 0;
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    if unanswered >= UNANSWERED_HEARTBEATS {
                        return Ended::Lost(format!("{unanswered} heartbeats without a reply"));
                    }
                    let heartbeat = AttachRequest { message: Some(attach_request::Message::Heartbeat(peer.heartbeat())) };
                    if let Err(mpsc::error::TrySendError::Closed(_)) = messages.try_send(heartbeat) {
                        return Ended::Lost("the stream closed".into());
                    }
                    unanswered += 1;
                }
                reply = replies.next() => match reply {
                    Some(Ok(_)) => unanswered = 0,
                    Some(Err(status)) => return Ended::Lost(status.to_string()),
                    None => return Ended::Lost("the control plane closed the stream".into()),
                },
                () = self.reattach.notified() => return Ended::Lost("the control plane does not know this peer".into()),
                () = shutdown.cancelled() => return Ended::Shutdown,
            }
        }
    }
}

/// Opens the attachment and waits for the control plane to accept the registration.
async fn accepted(uplink: &dyn Attach, outbound: mpsc::Receiver<AttachRequest>) -> Result<Replies, tonic::Status> {
    let mut replies = uplink.attach(ReceiverStream(outbound)).await?;
    match replies.next().await {
        Some(Ok(_)) => Ok(replies),
        Some(Err(status)) => Err(status),
        None => Err(tonic::Status::unavailable("the attachment ended before it was accepted")),
    }
}
