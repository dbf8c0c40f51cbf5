//! The bus over NATS core: one async-nats client (no_echo; it reconnects with our backoff
//! and resubscribes by itself), one subscription task per topic.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_nats::client::{PublishErrorKind, RequestErrorKind};
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

use crate::BusError;
use crate::shared::{Ctx, Outgoing, Shared, first_connect};

/// Most publishes taken from the queue at once.
const BATCH: usize = 512;

type Ready = std::sync::mpsc::Sender<Result<(), BusError>>;

pub(crate) async fn run(ctx: Rc<Ctx>, mut queue: mpsc::Receiver<Outgoing>, ready: Ready) {
    let address = format!("nats://{}", ctx.config.address());
    let lost = Arc::new(AtomicBool::new(false));
    let options = || {
        let (shared, lost, config) = (ctx.shared.clone(), lost.clone(), ctx.config.clone());
        async_nats::ConnectOptions::new()
            .no_echo()
            .connection_timeout(ctx.config.connect_timeout)
            .reconnect_delay_callback(move |attempt| config.backoff_jittered(attempt))
            .event_callback(move |event| {
                on_event(&shared, &lost, event);
                std::future::ready(())
            })
    };
    let Some(client) = first_connect(&ctx, &ready, || options().connect(address.as_str())).await else { return };
    drop(ready);
    let mut subscribed: HashMap<String, oneshot::Sender<()>> = HashMap::new();
    let mut batch = Vec::with_capacity(BATCH);
    reconcile(&ctx, &client, &mut subscribed, true).await;
    loop {
        tokio::select! {
            biased;
            () = ctx.shared.changed.notified() => reconcile(&ctx, &client, &mut subscribed, false).await,
            n = queue.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    std::future::pending::<()>().await;
                }
                let bytes = batch.iter().map(|m| m.payload.len()).sum();
                for m in batch.drain(..) {
                    let envelope = ctx.envelope(m.kind, &m.payload);
                    match client.publish(ctx.channel(&m.topic), envelope).await {
                        Ok(()) => ctx.shared.count.published(1),
                        Err(e) => {
                            ctx.shared.count.dropped(1);
                            if e.kind() == PublishErrorKind::MaxPayloadExceeded {
                                tracing::debug!(topic = &*m.topic, "bus: publish dropped: {e}");
                            } else {
                                tracing::warn!(topic = &*m.topic, "bus: publish failed: {e}");
                            }
                        }
                    }
                }
                // The client buffers what it is given while it reconnects, so the batch
                // stays in the queue's budget until written: its flush waits for that.
                if let Err(e) = client.flush().await {
                    tracing::debug!("bus: flush failed: {e}");
                }
                ctx.shared.release_bytes(bytes);
            }
        }
    }
}

/// The client's connection events: counted and logged once per change of state.
fn on_event(shared: &Shared, lost: &AtomicBool, event: async_nats::Event) {
    let url = &shared.url;
    match event {
        async_nats::Event::Disconnected => {
            shared.count.set_connected(false);
            if !lost.swap(true, Ordering::Relaxed) {
                tracing::warn!("bus: lost {url}; reconnecting");
            }
        }
        async_nats::Event::Connected => {
            shared.count.set_connected(true);
            if lost.swap(false, Ordering::Relaxed) {
                shared.count.reconnected();
                tracing::info!("bus: connected to {url} again");
            }
        }
        async_nats::Event::ServerError(e) => tracing::warn!("bus: {url}: server error: {e}"),
        async_nats::Event::SlowConsumer(_) => {
            // one event per message dropped: logged at 1, 2, 4, 8, ... so a flood of them
            // cannot flood the log (and slow the bus thread further)
            let n = shared.count.receive_dropped();
            if n.is_power_of_two() {
                tracing::warn!("bus: {url}: receiving fell behind; the client dropped {n} messages so far");
            }
        }
        other => tracing::debug!("bus: {url}: {other}"),
    }
}

/// Makes the client's subscriptions the desired set: a task per topic delivers until told
/// to unsubscribe (the client subscribes them again after a reconnect).
async fn reconcile(
    ctx: &Rc<Ctx>,
    client: &async_nats::Client,
    subscribed: &mut HashMap<String, oneshot::Sender<()>>,
    full: bool,
) {
    let (add, remove) = ctx.shared.diff(subscribed, full);
    let mut retry = false;
    for topic in remove {
        // the task stops before delivering anything more, and unsubscribes
        subscribed.remove(&topic);
    }
    for topic in add {
        let mut subscriber = match client.subscribe(ctx.channel(&topic)).await {
            Ok(s) => s,
            Err(e) => {
                // left out of `subscribed`: tried again at the next reconcile, soon
                tracing::warn!(topic, "bus: subscribe failed: {e}");
                ctx.shared.mark_changed(&topic);
                retry = true;
                continue;
            }
        };
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task_ctx = ctx.clone();
        let task_topic = topic.clone();
        tokio::task::spawn_local(async move {
            loop {
                tokio::select! {
                    biased;
                    _ = &mut stopped => break,
                    msg = subscriber.next() => match msg {
                        Some(msg) => task_ctx.on_message(&task_topic, msg.payload),
                        None => return,
                    },
                }
            }
            let _ = subscriber.unsubscribe().await;
        });
        subscribed.insert(topic, stop);
    }
    // The server has the new subscriptions once it answered something sent after them; only
    // then are they counted (a caller may wait on the count). async-nats' flush only writes,
    // so: a request to a subject no one has, which the server answers with "no responders".
    let round_trip = client.request(client.new_inbox(), bytes::Bytes::new());
    match tokio::time::timeout(ctx.config.connect_timeout, round_trip).await {
        Ok(Err(e)) if e.kind() == RequestErrorKind::NoResponders => {}
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::debug!("bus: round trip after subscribing: {e}"),
        Err(_) => tracing::debug!("bus: no round trip after subscribing within {:?}", ctx.config.connect_timeout),
    }
    ctx.shared.count.set_subscriptions(subscribed.len());
    if retry {
        let (shared, wait) = (ctx.shared.clone(), ctx.config.backoff_min);
        tokio::task::spawn_local(async move {
            tokio::time::sleep(wait).await;
            shared.changed.notify_one();
        });
    }
}
