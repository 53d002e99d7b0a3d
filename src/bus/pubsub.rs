//! Live subscriptions on a dedicated connection.
//!
//! A subscribed connection can run nothing but (un)subscribe commands, so it never shares the
//! multiplexed [`super::RedisConn`]. When it drops, the stream yields
//! [`BusError::Disconnected`] and ends: the caller subscribes again and replays the events
//! stream for the gap, which a transparent reconnect here could not do for it.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::{self, BoxStream, Stream, StreamExt};
use redis::{Client, ConnectionInfo};

use super::BusError;
use super::conn::CONNECT_TIMEOUT;

/// One pub/sub message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The channel it was published on.
    pub channel: String,
    /// The published bytes (event JSON for the events channel).
    pub payload: Vec<u8>,
}

/// A live subscription: a stream of messages, ending with `Err(Disconnected)` when the
/// connection is lost.
pub struct Subscription {
    messages: BoxStream<'static, Result<Message, BusError>>,
    target: String,
}

impl Subscription {
    /// The server this subscription listens to, without credentials.
    pub fn target(&self) -> &str {
        &self.target
    }
}

impl Stream for Subscription {
    type Item = Result<Message, BusError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.messages.poll_next_unpin(cx)
    }
}

/// Subscribes to `channels` on the first of `servers` that answers; returns once the server
/// has confirmed the subscriptions, so nothing published afterwards is missed.
/// Each server is `(target for messages, connection settings)`.
pub(crate) async fn subscribe(
    servers: &[(String, ConnectionInfo)],
    channels: &[&str],
) -> Result<Subscription, BusError> {
    let mut last_err = BusError::Config("no server to subscribe on".into());
    for (target, info) in servers {
        match subscribe_one(target, info.clone(), channels).await {
            Ok(sub) => return Ok(sub),
            // Another seed may answer (Cluster); a refused password will not get better.
            Err(err) if err.is_fatal() => return Err(err),
            Err(err) => last_err = err,
        }
    }
    Err(last_err)
}

async fn subscribe_one(
    target: &str,
    info: ConnectionInfo,
    channels: &[&str],
) -> Result<Subscription, BusError> {
    let op = format!("SUBSCRIBE {}", channels.join(" "));
    let err = |e| BusError::from_redis(target, op.clone(), e);
    let client = Client::open(info).map_err(err)?;
    let timed_out = || {
        BusError::from_redis(target, op.clone(), std::io::Error::from(std::io::ErrorKind::TimedOut).into())
    };
    let mut pubsub = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| timed_out())?
        .map_err(err)?;
    for channel in channels {
        pubsub.subscribe(*channel).await.map_err(err)?;
    }
    let owned_target = target.to_owned();
    let messages = pubsub
        .into_on_message()
        .map(|msg| {
            Ok(Message {
                channel: msg.get_channel_name().to_owned(),
                payload: msg.get_payload_bytes().to_vec(),
            })
        })
        .chain(stream::once(async move { Err(BusError::Disconnected { target: owned_target }) }))
        .boxed();
    Ok(Subscription { messages, target: target.to_owned() })
}
