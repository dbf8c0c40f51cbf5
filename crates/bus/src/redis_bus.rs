//! The bus over Redis pub/sub: a PubSub connection for SUBSCRIBE and a multiplexed one
//! for pipelined PUBLISH, reconnected (and resubscribed) by this module.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSub, PubSubSink};
use tokio::sync::mpsc;

use crate::BusError;
use crate::shared::{Ctx, Outgoing, first_connect};

/// Most publishes in one pipeline (one write, one round trip).
const BATCH: usize = 512;
/// Most channels in one SUBSCRIBE or UNSUBSCRIBE.
const CHUNK: usize = 512;
/// How often the subscriber connection is checked with a PING.
const PING_EVERY: Duration = Duration::from_secs(5);

type Ready = std::sync::mpsc::Sender<Result<(), BusError>>;

pub(crate) async fn run(ctx: Rc<Ctx>, mut queue: mpsc::Receiver<Outgoing>, ready: Ready) {
    let url = ctx.shared.url.clone();
    let client = match redis::Client::open(format!("redis://{}/", ctx.config.address())) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(BusError::Connect { url, source: e.into() }));
            return;
        }
    };
    let Some(mut conns) = first_connect(&ctx, &ready, || connect(&client)).await else { return };
    drop(ready);
    loop {
        let why = session(&ctx, conns, &mut queue).await;
        let count = &ctx.shared.count;
        count.set_connected(false);
        count.set_subscriptions(0);
        tracing::warn!("bus: lost {url} ({why}); reconnecting");
        let mut attempt = 0;
        conns = loop {
            attempt += 1;
            tokio::time::sleep(ctx.config.backoff_jittered(attempt)).await;
            match tokio::time::timeout(ctx.config.connect_timeout, connect(&client)).await {
                Ok(Ok(c)) => break c,
                Ok(Err(e)) => tracing::debug!("bus: {url} still unreachable ({e})"),
                Err(_) => tracing::debug!("bus: {url} still unreachable (timed out)"),
            }
        };
        count.reconnected();
        count.set_connected(true);
        tracing::info!("bus: connected to {url} again");
    }
}

async fn connect(client: &redis::Client) -> redis::RedisResult<(PubSub, MultiplexedConnection)> {
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(5)));
    let pubsub = client.get_async_pubsub().await?;
    let conn = client.get_multiplexed_async_connection_with_config(&config).await?;
    Ok((pubsub, conn))
}

/// One connected session: resubscribes, then publishes, delivers and follows the desired
/// topics until the connection fails; returns why.
async fn session(
    ctx: &Ctx,
    (pubsub, mut conn): (PubSub, MultiplexedConnection),
    queue: &mut mpsc::Receiver<Outgoing>,
) -> String {
    let (mut sink, mut stream) = pubsub.split();
    let mut subscribed = HashMap::new();
    if let Err(why) = reconcile(ctx, &mut sink, &mut subscribed, true).await {
        return why;
    }
    // The subscriber connection only reads: a broker host that died or a NAT that forgot
    // the flow would leave it waiting for good. A PING every few seconds, answered within
    // the connect timeout, finds out.
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let prefix = ctx.config.prefix();
    let mut batch = Vec::with_capacity(BATCH);
    let mut envelope = Vec::new();
    loop {
        // not biased: a flood of incoming messages must not starve the publishes, nor the
        // other way round
        tokio::select! {
            () = ctx.shared.changed.notified() => {
                if let Err(why) = reconcile(ctx, &mut sink, &mut subscribed, false).await {
                    return why;
                }
            }
            _ = ping.tick() => {
                match tokio::time::timeout(ctx.config.connect_timeout, sink.ping::<()>()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return format!("PING failed: {e}"),
                    Err(_) => return format!("no answer to PING within {:?}", ctx.config.connect_timeout),
                }
            }
            msg = stream.next() => {
                let Some(msg) = msg else { return "the subscriber connection closed".into() };
                // Only while subscribed: nothing is delivered after an UNSUBSCRIBE was sent.
                if let Some(topic) = msg.get_channel_name().strip_prefix(prefix)
                    && subscribed.contains_key(topic)
                {
                    ctx.on_message(topic, Bytes::copy_from_slice(msg.get_payload_bytes()));
                }
            }
            n = queue.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    // the Bus is being dropped: its stop ends this thread
                    std::future::pending::<()>().await;
                }
                let bytes = batch.iter().map(|m| m.payload.len()).sum();
                let mut pipe = redis::pipe();
                for m in batch.drain(..) {
                    envelope.clear();
                    ctx.envelope_into(&mut envelope, m.kind, &m.payload);
                    pipe.cmd("PUBLISH").arg(ctx.channel(&m.topic)).arg(&envelope[..]).ignore();
                }
                // the batch stays in the queue's budget until the broker has it
                let sent = pipe.query_async::<()>(&mut conn).await;
                ctx.shared.release_bytes(bytes);
                match sent {
                    Ok(()) => ctx.shared.count.published(n as u64),
                    Err(e) => {
                        ctx.shared.count.dropped(n as u64);
                        return e.to_string();
                    }
                }
            }
        }
    }
}

/// Makes the broker's subscriptions the desired set (every topic when `full`, else those
/// changed), within the connect timeout: a broker that does not confirm ends the session.
async fn reconcile(
    ctx: &Ctx,
    sink: &mut PubSubSink,
    subscribed: &mut HashMap<String, ()>,
    full: bool,
) -> Result<(), String> {
    match tokio::time::timeout(ctx.config.connect_timeout, follow(ctx, sink, subscribed, full)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer to SUBSCRIBE within {:?}", ctx.config.connect_timeout)),
    }
}

async fn follow(
    ctx: &Ctx,
    sink: &mut PubSubSink,
    subscribed: &mut HashMap<String, ()>,
    full: bool,
) -> redis::RedisResult<()> {
    let (add, remove) = ctx.shared.diff(subscribed, full);
    for chunk in remove.chunks(CHUNK) {
        for topic in chunk {
            subscribed.remove(topic);
        }
        let channels: Vec<String> = chunk.iter().map(|t| ctx.channel(t)).collect();
        sink.unsubscribe(&channels).await?;
    }
    for chunk in add.chunks(CHUNK) {
        let channels: Vec<String> = chunk.iter().map(|t| ctx.channel(t)).collect();
        sink.subscribe(&channels).await?;
        subscribed.extend(chunk.iter().map(|t| (t.clone(), ())));
    }
    ctx.shared.count.set_subscriptions(subscribed.len());
    Ok(())
}
