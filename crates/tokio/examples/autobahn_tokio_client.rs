//! The Autobahn client gate's agent for the tokio adapter: the fuzzingserver protocol
//! against kosoku (or wstest), echoing every message of every case.
//!
//! ```text
//! autobahn_tokio_client ws://127.0.0.1:9001
//! ```
//!
//! `GET /getCaseCount` answers one text message with the number of cases; each case N runs
//! on `/runCase?case=N&agent=ringwire-tokio` and lasts until the server closes;
//! `/updateReports` writes the report. Cases run four at a time on a current-thread
//! runtime. `RINGWIRE_DEFLATE=off` offers no permessage-deflate (sections 12 and 13 are
//! then UNIMPLEMENTED).

use futures_util::{SinkExt, StreamExt};
use ringwire_tokio::{Config, Message, connect_with};

const AGENT: &str = "ringwire-tokio";

/// Connects to `url` and echoes until the server closes; the messages received, as text.
async fn run(url: &str, config: &Config, echo: bool) -> Result<Vec<String>, ringwire_tokio::Error> {
    let (mut ws, _) = connect_with(url, config.clone()).await?;
    let mut texts = Vec::new();
    while let Some(message) = ws.next().await {
        // A failure (the case's bad frame, say) closes the connection with its code; the
        // stream ends after that close.
        let Ok(message) = message else { continue };
        if let Message::Text(t) = &message {
            texts.push(t.to_string());
        }
        if echo && ws.send(message).await.is_err() {
            // Not open any more: the rest of the close handshake goes on in next().
            continue;
        }
    }
    Ok(texts)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let base = std::env::args().nth(1).unwrap_or_else(|| "ws://127.0.0.1:9001".to_owned());
    let base = base.trim_end_matches('/');
    let mut config = Config::client();
    // Section 9 sends messages and frames of up to 16 MiB.
    config.max_received_frame_size = 16 << 20;
    config.max_received_message_size = 16 << 20;
    config.max_buffered = Some(64 << 20);
    config.fragment_outgoing_messages = false;
    // Sections 12 and 13, offered as the native client offers them (the fuzzing server
    // picks every parameter its cases need).
    if std::env::var("RINGWIRE_DEFLATE").as_deref() != Ok("off") {
        let mut deflate = ringwire_tokio::DeflateConfig::default();
        deflate.client_no_context_takeover = true;
        config.deflate = Some(deflate);
    }
    let count = match run(&format!("{base}/getCaseCount"), &config, false).await {
        Ok(texts) => texts.first().and_then(|t| t.trim().parse::<u32>().ok()),
        Err(e) => {
            eprintln!("cannot get the case count from {base}: {e}");
            std::process::exit(1);
        }
    };
    let Some(count) = count else {
        eprintln!("getCaseCount answered no number");
        std::process::exit(1);
    };
    // Four cases at a time (as the server gate's `kosoku -p 4`): one at a time kept one
    // core of two busy, and the gate took twice as long.
    futures_util::stream::iter(1..=count)
        .for_each_concurrent(4, |n| {
            let config = &config;
            async move {
                if n.is_multiple_of(50) || n == 1 {
                    eprintln!("case {n}/{count}");
                }
                if let Err(e) = run(&format!("{base}/runCase?case={n}&agent={AGENT}"), config, true).await {
                    // The case is lost (the report says so); carry on with the rest.
                    eprintln!("case {n}: {e}");
                }
            }
        })
        .await;
    if let Err(e) = run(&format!("{base}/updateReports?agent={AGENT}"), &config, false).await {
        eprintln!("cannot update the reports: {e}");
        std::process::exit(1);
    }
    eprintln!("ran {count} case(s)");
}
