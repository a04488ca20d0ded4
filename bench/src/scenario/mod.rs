//! The scenarios, and what they share: targets, tokens, connecting many sockets.

pub mod idle;
pub mod load;
pub mod reads;

use crate::Common;
use crate::sio::{self, Observer, SocketHandle};
use crate::stats::{Codes, Hist, Summary, bump};
use futures::StreamExt;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the run goes, checked: the REST origin and the Socket.IO URLs.
pub struct Target {
    pub api: reqwest::Url,
    /// `ws://…/socket.io/?EIO=4&transport=websocket`, one per gateway.
    pub ws_urls: Vec<String>,
}

impl Target {
    pub fn new(common: &Common) -> anyhow::Result<Self> {
        let api = crate::loopback(&common.api)?;
        let gateways = if common.gateways.is_empty() {
            vec![api.clone()]
        } else {
            common
                .gateways
                .iter()
                .map(|g| crate::loopback(g))
                .collect::<anyhow::Result<_>>()?
        };
        Ok(Self {
            api,
            ws_urls: gateways.iter().map(sio::ws_url).collect(),
        })
    }
}

/// A short random id for this run: user ids, property ids and message contents carry it, so
/// that runs against the same database never meet (create-or-get would merge conversations
/// of equal participants, and old messages would be counted).
pub fn run_id(seed: u64) -> String {
    // The seed alone would repeat ids across runs with the same --seed: mix in the clock.
    let mixed = splitmix(seed ^ crate::now_micros());
    format!("{:08x}", mixed as u32)
}

/// SplitMix64: a cheap, well-mixed hash for deterministic "random" choices.
pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// How connecting went.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ConnectFigures {
    pub attempted: usize,
    pub connected: usize,
    pub failed: usize,
    pub failures: Codes,
    /// Time of one connect (WebSocket upgrade + Socket.IO connect answered).
    pub connect_time: Summary,
    pub wall_secs: f64,
    pub per_second: f64,
    /// Sockets per gateway URL.
    pub per_gateway: Vec<usize>,
}

/// Connects socket `i` with `tokens[i]` to gateway `i % gateways`, at most `concurrency` at
/// once. Sockets that fail are `None`.
pub async fn connect_all<O: Observer>(
    target: &Target,
    tokens: &[String],
    common: &Common,
    observer: Arc<O>,
) -> (Vec<Option<SocketHandle>>, ConnectFigures) {
    let started = Instant::now();
    let within = Duration::from_secs(common.connect_timeout_secs);
    let gateways = target.ws_urls.len().max(1);
    let attempts = futures::stream::iter(tokens.iter().enumerate().map(|(i, token)| {
        let url = target.ws_urls[i % gateways].clone();
        let observer = observer.clone();
        async move {
            let t = Instant::now();
            let result = sio::connect(&url, token, within).await;
            let took = t.elapsed();
            (
                i,
                result.map(|opened| sio::spawn(opened, i, observer)),
                took,
            )
        }
    }))
    .buffer_unordered(common.connect_concurrency.max(1));
    tokio::pin!(attempts);

    let mut sockets: Vec<Option<SocketHandle>> = vec![None; tokens.len()];
    let mut figures = ConnectFigures {
        attempted: tokens.len(),
        per_gateway: vec![0; gateways],
        ..ConnectFigures::default()
    };
    let mut times = Hist::default();
    let mut first_error: Option<String> = None;
    while let Some((i, result, took)) = attempts.next().await {
        match result {
            Ok(handle) => {
                times.record(took);
                sockets[i] = Some(handle);
                figures.connected += 1;
                figures.per_gateway[i % gateways] += 1;
            }
            Err(e) => {
                if first_error.is_none() {
                    first_error = Some(e.to_string());
                }
                figures.failed += 1;
                bump(&mut figures.failures, &e.code());
            }
        }
    }
    if let Some(e) = first_error {
        eprintln!(
            "chat-bench: {} socket(s) failed to connect; first: {e}",
            figures.failed
        );
    }
    figures.connect_time = times.summary();
    figures.wall_secs = started.elapsed().as_secs_f64();
    figures.per_second = if figures.wall_secs > 0.0 {
        (figures.connected as f64 / figures.wall_secs).round()
    } else {
        0.0
    };
    (sockets, figures)
}

/// Closes every socket (not counted as disconnects) and gives the tasks a moment to say so.
pub async fn close_all(sockets: &[Option<SocketHandle>]) {
    for s in sockets.iter().flatten() {
        s.close();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
}
