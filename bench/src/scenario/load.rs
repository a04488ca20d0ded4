//! `load`: U users, each with one socket, in K conversations, sending at a planned rate.
//!
//! Open loop: every send of a step is planned before the step starts, at fixed times (`i /
//! rate`), and leaves at its time whatever happened to earlier ones (acks are not awaited),
//! so a slow server shows up as latency and backlog instead of as a politely lower rate.
//! The sender of each send is drawn at random among users with a conversation, subject to a
//! per-user budget that stays under the server's rate limit (a sliding log, as the server's).
//!
//! Every message's content is `bench <run> <unix µs at send> <step> <seq>`: a receiving socket
//! knows from the content alone when it left and which planned send it is, so deliveries are
//! matched without shared lookups: each planned send keeps a bit mask of the participants
//! whose socket got it (a second delivery to the same socket finds its bit set: a duplicate).

use crate::LoadArgs;
use crate::report;
use crate::rest::{Rest, token};
use crate::scenario::{ConnectFigures, Target, close_all, connect_all, run_id, splitmix};
use crate::sio::{AckKind, Observer, Outgoing, SocketHandle, ack_result, event_name};
use crate::stats::{Codes, CpuProbe, Hist, ServerCpu, Summary, bump, cores, lock};
use anyhow::{Context, bail};
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Margin on the per-user window: sends planned exactly `window` apart could reach the server
/// closer together (pacing jitter, queueing) and be refused by its sliding log.
const WINDOW_MARGIN: f64 = 1.1;

/// How long before its message a `typing_start` goes (the `typing_stop` follows the
/// message). Sent back to back, a start and its stop would race: the server handles the
/// events of one socket concurrently, and a stop handled first leaves the indicator up for
/// the typing timeout (8 s). A user types for a while before sending anyway.
const TYPING_LEAD: Duration = Duration::from_millis(300);

/// States of a planned send.
const PLANNED: u8 = 0;
const SENT: u8 = 1;
const ACKED: u8 = 2;
const FAILED: u8 = 3;
const NOT_SENT: u8 = 4;

/// No step yet (setup).
const NO_STEP: usize = usize::MAX;

struct Conv {
    id: Arc<str>,
    /// Participants; the first created it. A participant's place here is its bit in
    /// [`Msg::mask`].
    members: Vec<u32>,
}

/// One planned send.
struct Msg {
    /// When, from the step's start.
    at: Duration,
    conv: u32,
    sender: u32,
    via_rest: bool,
    typing: bool,
    state: AtomicU8,
    /// Bit `j`: participant `j` of the conversation received it.
    mask: AtomicU64,
}

/// Figures of one step that are recorded from several tasks.
#[derive(Default)]
struct Figures {
    lat_others: Hist,
    lat_own: Hist,
    ack_socket: Hist,
    ack_rest: Hist,
    ack_read: Hist,
    ack_typing: Hist,
    lag: Hist,
    errors: Codes,
    events: Codes,
    dup_others: u64,
    dup_own: u64,
    /// A delivery to a socket whose user is not a participant, or under the wrong
    /// conversation id.
    misdelivered: u64,
}

struct Step {
    index: u32,
    rate: f64,
    duration: Duration,
    msgs: Vec<Msg>,
    /// Sends no user had budget for (cannot happen once the start check passed).
    unschedulable: u64,
    figures: Mutex<Figures>,
    sent_socket: AtomicU64,
    sent_rest: AtomicU64,
    typing_sent: AtomicU64,
    reads_sent: AtomicU64,
    /// Set once the step's figures are taken; deliveries after that are late.
    evaluated: AtomicBool,
}

/// What the socket tasks share with the scheduler.
struct Shared {
    run: Arc<str>,
    convs: Vec<Conv>,
    read_share: f64,
    steps: RwLock<Vec<Arc<Step>>>,
    current: AtomicUsize,
    /// Events and disconnects before the first step.
    setup: Mutex<Figures>,
    disconnects: Mutex<Codes>,
    /// Deliveries that came after their step was evaluated (already counted as lost).
    late: AtomicU64,
    /// `new_message` of another run or of no run (e.g. an `initialMessage`): ignored.
    foreign: AtomicU64,
}

impl Shared {
    fn step(&self, i: usize) -> Option<Arc<Step>> {
        self.steps
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(i)
            .cloned()
    }

    /// Runs `f` on the figures of the current step (or of the setup).
    fn with_current(&self, f: impl FnOnce(&mut Figures)) {
        match self.step(self.current.load(Ordering::Relaxed)) {
            Some(step) => f(&mut lock(&step.figures)),
            None => f(&mut lock(&self.setup)),
        }
    }

    fn on_new_message(&self, socket: usize, frame: &str, received: u64) -> Option<Outgoing> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct NewMessage<'a> {
            #[serde(borrow)]
            conversation_id: Cow<'a, str>,
            seq: u64,
            #[serde(borrow)]
            content: Cow<'a, str>,
        }
        let Ok((_, m)) = serde_json::from_str::<(serde::de::IgnoredAny, NewMessage)>(frame) else {
            self.with_current(|f| bump(&mut f.errors, "malformed_new_message"));
            return None;
        };
        let Some((sent, step_index, seq)) = parse_content(&m.content, &self.run) else {
            self.foreign.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let step = self.step(step_index)?;
        let msg = step.msgs.get(seq)?;
        let conv = self.convs.get(msg.conv as usize)?;
        let me = u32::try_from(socket).ok()?;
        let place = conv.members.iter().position(|&u| u == me);
        let Some(place) = place.filter(|_| *m.conversation_id == *conv.id) else {
            lock(&step.figures).misdelivered += 1;
            return None;
        };
        if step.evaluated.load(Ordering::Relaxed) {
            self.late.fetch_add(1, Ordering::Relaxed);
        }
        let bit = 1u64 << place;
        let first = msg.mask.fetch_or(bit, Ordering::Relaxed) & bit == 0;
        let own = me == msg.sender;
        {
            let mut f = lock(&step.figures);
            bump(&mut f.events, "new_message");
            match (first, own) {
                (true, true) => f.lat_own.record_micros(received.saturating_sub(sent)),
                (true, false) => f.lat_others.record_micros(received.saturating_sub(sent)),
                (false, true) => f.dup_own += 1,
                (false, false) => f.dup_others += 1,
            }
        }
        // A share of receivers read at once (deterministic per message and socket, so no
        // shared random generator is needed here).
        if own || !first || chance(step_index, seq, socket) >= self.read_share {
            return None;
        }
        step.reads_sent.fetch_add(1, Ordering::Relaxed);
        let payload = serde_json::json!({ "conversationId": &*conv.id, "upToSeq": m.seq });
        Some(Outgoing::Emit {
            event: "mark_as_read",
            build: Box::new(move || payload.to_string()),
            ack: Some(AckKind::Read { step: step.index }),
            scheduled: None,
        })
    }
}

/// A number in [0, 1) from (step, seq, socket).
fn chance(step: usize, seq: usize, socket: usize) -> f64 {
    let h = splitmix(splitmix(((step as u64) << 32) | seq as u64) ^ socket as u64);
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// `bench <run> <µs> <step> <seq>` → (µs, step, seq) when `run` is ours.
fn parse_content(content: &str, run: &str) -> Option<(u64, usize, usize)> {
    let mut parts = content.split(' ');
    if parts.next()? != "bench" || parts.next()? != run {
        return None;
    }
    let sent = parts.next()?.parse().ok()?;
    let step = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    Some((sent, step, seq))
}

fn content(run: &str, step: u32, seq: usize) -> (String, String) {
    (
        format!("bench {run} {} {step} {seq}", crate::now_micros()),
        format!("bench-{run}-{step}-{seq}"),
    )
}

impl Observer for Shared {
    fn on_event(&self, socket: usize, frame: &str, received: u64) -> Option<Outgoing> {
        if frame.starts_with("[\"new_message\"") {
            return self.on_new_message(socket, frame, received);
        }
        let name = event_name(frame);
        self.with_current(|f| bump(&mut f.events, name));
        None
    }

    fn on_ack(&self, _socket: usize, kind: AckKind, frame: &str, elapsed: Duration) {
        let result = ack_result(frame);
        let (step_index, seq) = match kind {
            AckKind::Send { step, seq } => (step, Some(seq)),
            AckKind::Read { step } | AckKind::Typing { step } => (step, None),
        };
        let Some(step) = self.step(step_index as usize) else {
            return;
        };
        if let Some(msg) = seq.and_then(|s| step.msgs.get(s as usize)) {
            let state = if result.is_ok() { ACKED } else { FAILED };
            msg.state.store(state, Ordering::Relaxed);
        }
        let mut f = lock(&step.figures);
        let (hist, what) = match kind {
            AckKind::Send { .. } => (&mut f.ack_socket, "send_message"),
            AckKind::Read { .. } => (&mut f.ack_read, "mark_as_read"),
            AckKind::Typing { .. } => (&mut f.ack_typing, "typing"),
        };
        match result {
            Ok(()) => hist.record(elapsed),
            Err(code) => bump(&mut f.errors, &format!("socket:{what}:{code}")),
        }
    }

    fn on_written(&self, kind: Option<AckKind>, lag: Duration) {
        if let Some(AckKind::Send { step, .. }) = kind
            && let Some(step) = self.step(step as usize)
        {
            lock(&step.figures).lag.record(lag);
        }
    }

    fn on_disconnect(&self, _socket: usize, reason: &str) {
        bump(&mut lock(&self.disconnects), reason);
        self.with_current(|f| bump(&mut f.errors, &format!("disconnect:{reason}")));
    }
}

/// The per-user send budget: the planned send times of each user within the last window.
struct Budget {
    limit: usize,
    window: f64,
    log: Vec<VecDeque<f64>>,
    /// Users who may send (those in a conversation).
    pool: Vec<u32>,
}

impl Budget {
    /// A sender for a send at `t` (seconds since the run's start), or `None` if every user
    /// is at the limit. Random picks first; near capacity, a scan from a random place.
    fn pick(&mut self, t: f64, rng: &mut StdRng) -> Option<u32> {
        let n = self.pool.len();
        if n == 0 {
            return None;
        }
        let start = rng.random_range(0..n);
        let tries = (0..8)
            .map(|_| rng.random_range(0..n))
            .chain((0..n).map(|k| (start + k) % n))
            .collect::<Vec<_>>();
        for i in tries {
            let user = self.pool[i];
            let log = &mut self.log[user as usize];
            while log.front().is_some_and(|&s| t - s >= self.window) {
                log.pop_front();
            }
            if log.len() < self.limit {
                log.push_back(t);
                return Some(user);
            }
        }
        None
    }
}

/// Conversations as lists of user indexes: `k` of them, `groups` with 3 or 4 participants,
/// the rest with two. Users are dealt from a shuffled deck, reshuffled when it runs out, so
/// that every user is in about as many conversations as any other (and in at least one when
/// `k >= users / 2`).
fn assign(users: usize, k: usize, group_share: f64, rng: &mut StdRng) -> Vec<Vec<u32>> {
    let groups = (k as f64 * group_share).round() as usize;
    let mut deck: Vec<u32> = (0..u32::try_from(users).unwrap_or(u32::MAX)).collect();
    deck.shuffle(rng);
    let mut pos = 0;
    let mut convs = Vec::with_capacity(k);
    for c in 0..k {
        let size = if c < groups { 3 + c % 2 } else { 2 }.min(users);
        let mut members: Vec<u32> = Vec::with_capacity(size);
        while members.len() < size {
            if pos == deck.len() {
                deck.shuffle(rng);
                pos = 0;
            }
            let u = deck[pos];
            pos += 1;
            if !members.contains(&u) {
                members.push(u);
            }
        }
        convs.push(members);
    }
    convs.shuffle(rng);
    convs
}

/// As [`assign`], with every conversation inside one residue class of the users modulo
/// `gateways` (user `u` holds socket `u`, which goes to gateway `u % gateways`).
fn assign_disjoint(
    users: usize,
    k: usize,
    group_share: f64,
    gateways: usize,
    rng: &mut StdRng,
) -> Vec<Vec<u32>> {
    let g = gateways.max(1);
    let mut convs = Vec::with_capacity(k);
    for class in 0..g {
        let class_users = (users + g - 1 - class) / g;
        let class_k = (k + g - 1 - class) / g;
        if class_users == 0 {
            continue;
        }
        for members in assign(class_users, class_k, group_share, rng) {
            convs.push(
                members
                    .into_iter()
                    .map(|j| j * g as u32 + class as u32)
                    .collect(),
            );
        }
    }
    convs.shuffle(rng);
    convs
}

/// The event bus counters of one `/metrics` endpoint over the run.
#[derive(Debug, Clone, Serialize)]
pub struct BusFigures {
    pub url: String,
    /// Seconds between the two readings.
    pub seconds: f64,
    pub received: u64,
    pub received_bytes: u64,
    pub published: u64,
    pub published_bytes: u64,
    /// Channels subscribed at the end.
    pub channels: u64,
}

/// The bus counters at one `/metrics` URL: (received, received bytes, published, published
/// bytes, channels). Missing figures read as 0 (a process without Redis).
async fn read_bus(client: &reqwest::Client, url: &str) -> anyhow::Result<[u64; 5]> {
    let text = client
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("GET {url}"))?
        .text()
        .await?;
    let value = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    };
    Ok([
        value("chat_bus_received_total"),
        value("chat_bus_received_bytes_total"),
        value("chat_bus_published_total"),
        value("chat_bus_published_bytes_total"),
        value("chat_bus_channels"),
    ])
}

async fn read_all_bus(urls: &[String]) -> anyhow::Result<Vec<[u64; 5]>> {
    let client = reqwest::Client::new();
    let mut out = Vec::with_capacity(urls.len());
    for url in urls {
        let url = crate::loopback(url)?;
        out.push(read_bus(&client, url.as_str()).await?);
    }
    Ok(out)
}

/// The rates of the steps: `[rate]`, or START, START+STEP, … up to MAX.
fn rates(args: &LoadArgs) -> anyhow::Result<Vec<f64>> {
    if let Some(ramp) = &args.ramp {
        let parts: Vec<f64> = ramp
            .split(',')
            .map(|p| p.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .with_context(|| format!("--ramp {ramp}: expected START,STEP,MAX numbers"))?;
        let [start, step, max] = parts[..] else {
            bail!("--ramp {ramp}: expected START,STEP,MAX");
        };
        if start <= 0.0 || step <= 0.0 || max < start {
            bail!("--ramp {ramp}: need START > 0, STEP > 0, MAX >= START");
        }
        let mut out = Vec::new();
        let mut r = start;
        while r <= max + 1e-9 && out.len() < 10_000 {
            out.push(r);
            r += step;
        }
        return Ok(out);
    }
    match args.rate {
        Some(r) if r > 0.0 => Ok(vec![r]),
        Some(_) => bail!("--rate must be > 0"),
        None => bail!("give --rate R or --ramp START,STEP,MAX"),
    }
}

fn check_args(args: &LoadArgs) -> anyhow::Result<()> {
    for (name, v) in [
        ("--group-share", args.group_share),
        ("--rest-share", args.rest_share),
        ("--typing-share", args.typing_share),
        ("--read-share", args.read_share),
    ] {
        if !(0.0..=1.0).contains(&v) {
            bail!("{name} must be between 0 and 1");
        }
    }
    if args.users < 2 {
        bail!("--users must be at least 2");
    }
    if args.user_rate_limit == 0 || args.user_rate_window_secs <= 0.0 {
        bail!("--user-rate-limit and --user-rate-window-secs must be > 0");
    }
    if args.duration_secs <= 0.0 || args.step_secs <= 0.0 || args.drain_secs < 0.0 {
        bail!("--duration-secs and --step-secs must be > 0, --drain-secs >= 0");
    }
    Ok(())
}

/// Figures of one step, as reported.
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub step: u32,
    pub rate: f64,
    pub duration_secs: f64,
    pub planned: usize,
    pub unschedulable: u64,
    pub sent_socket: u64,
    pub sent_rest: u64,
    /// Sends that actually left per second of the step.
    pub achieved_rate: f64,
    pub acked: u64,
    pub ack_failed: u64,
    pub no_ack: u64,
    pub not_sent: u64,
    pub deliveries: Deliveries,
    /// Send → `new_message` at a participant other than the sender.
    pub latency_others: Summary,
    /// Send → `new_message` at the sender's own socket.
    pub latency_own: Summary,
    pub ack_socket: Summary,
    pub ack_rest: Summary,
    pub ack_read: Summary,
    pub ack_typing: Summary,
    pub reads_sent: u64,
    pub typing_sent: u64,
    /// Actual send time minus planned send time.
    pub pacing_lag: Summary,
    /// The generator's CPU (user + system) over the sending span, % of one core.
    pub generator_cpu_percent: f64,
    pub generator_bound: bool,
    pub generator_note: Option<String>,
    pub servers: Vec<ServerCpu>,
    /// Busy share of all the machine's cores over the sending span (server, generator,
    /// database and anything else), percent.
    pub machine_cpu_busy_percent: Option<f64>,
    /// Errors by code: `socket:<event>:<code>`, `rest:http:<status>:<code>`, `no_ack`,
    /// `disconnect:<reason>`, …
    pub errors: Codes,
    pub error_count: u64,
    /// Events received during the step, by name.
    pub events: Codes,
    pub holds: bool,
    /// Why it does not hold (empty when it holds).
    pub reasons: Vec<String>,
}

/// Deliveries of acknowledged messages to the sockets of their participants: "others" are the
/// participants other than the sender, "own" the sender's own socket (the server sends it
/// the event too; clients dedupe by id).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Deliveries {
    pub expected_others: u64,
    pub delivered_others: u64,
    pub lost_others: u64,
    pub expected_own: u64,
    pub delivered_own: u64,
    pub lost_own: u64,
    pub duplicates_others: u64,
    pub duplicates_own: u64,
    pub misdelivered: u64,
    /// Expected deliveries left out because the receiving socket was not connected.
    pub excluded_socket_down: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Setup {
    pub users: usize,
    pub conversations: usize,
    pub group_conversations: usize,
    pub senders: usize,
    pub conversations_created: usize,
    /// Answers of the create call by status (201 new, 200 an existing one: merged).
    pub create_status: Codes,
    pub create_failures: Codes,
    pub create_secs: f64,
    pub connect: ConnectFigures,
    pub joins: u64,
    pub join_failures: Codes,
    pub join_time: Summary,
    /// Events received during the setup, by name.
    pub events: Codes,
}

#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    pub scenario: &'static str,
    pub label: Option<String>,
    pub run: String,
    pub seed: u64,
    pub params: LoadArgs,
    pub setup: Setup,
    pub steps: Vec<StepReport>,
    /// Highest rate of a step that held (ramp: the capacity estimate).
    pub max_held_rate: Option<f64>,
    pub late_deliveries: u64,
    pub foreign_messages: u64,
    pub disconnects: Codes,
    /// The event bus counters of every --metrics URL over the steps.
    pub bus: Vec<BusFigures>,
    /// What `--strict` rejects (listed whether or not --strict was given).
    pub failures: Vec<String>,
}

pub async fn run(args: &LoadArgs) -> anyhow::Result<Vec<String>> {
    check_args(args)?;
    let rates = rates(args)?;
    let step_duration = Duration::from_secs_f64(if args.ramp.is_some() {
        args.step_secs
    } else {
        args.duration_secs
    });
    let common = &args.common;
    let target = Target::new(common)?;
    let seed = common.seed.unwrap_or_else(rand::random);
    let mut rng = StdRng::seed_from_u64(seed);
    let run: Arc<str> = run_id(seed).into();

    // Users and conversations.
    let users: Vec<String> = (0..args.users)
        .map(|i| format!("bench-{run}-u{i}"))
        .collect();
    let k = args.conversations.unwrap_or(args.users / 2).max(1);
    let members = if args.disjoint {
        assign_disjoint(
            args.users,
            k,
            args.group_share,
            target.ws_urls.len(),
            &mut rng,
        )
    } else {
        assign(args.users, k, args.group_share, &mut rng)
    };
    let mut user_convs: Vec<Vec<u32>> = vec![Vec::new(); args.users];
    for (c, m) in members.iter().enumerate() {
        for &u in m {
            user_convs[u as usize].push(u32::try_from(c).unwrap_or(u32::MAX));
        }
    }
    let pool: Vec<u32> = (0..args.users)
        .filter(|&u| !user_convs[u].is_empty())
        .filter_map(|u| u32::try_from(u).ok())
        .collect();

    // Refuse a plan the server's rate limit would reject.
    let window = args.user_rate_window_secs * WINDOW_MARGIN;
    let max_rate = rates.iter().copied().fold(0.0, f64::max);
    let per_user = max_rate * window / pool.len().max(1) as f64;
    if per_user > args.user_rate_limit as f64 {
        let need = (max_rate * window / args.user_rate_limit as f64).ceil();
        bail!(
            "{max_rate} msg/s over {} sending users is {per_user:.1} messages per user per {:.1} s \
             (the {} s window plus a 10% margin), over the per-user limit of {}: at least {need} \
             users in conversations are needed (--users, --conversations), or a higher \
             --user-rate-limit if the server's RATE_LIMIT_MESSAGES was raised",
            pool.len(),
            window,
            args.user_rate_window_secs,
            args.user_rate_limit
        );
    }

    let ttl = Duration::from_secs(common.deadline_secs + 3600);
    let secret = common.jwt_secret.as_bytes();
    let tokens: Vec<String> = users
        .iter()
        .map(|u| token(secret, u, ttl))
        .collect::<anyhow::Result<_>>()?;
    let rest = Rest::new(&target.api)?;

    let mut setup = Setup {
        users: args.users,
        conversations: k,
        group_conversations: members.iter().filter(|m| m.len() > 2).count(),
        senders: pool.len(),
        ..Setup::default()
    };

    // Conversations over REST, a bounded number at once.
    eprintln!(
        "chat-bench: run {run}: creating {k} conversations for {} users",
        args.users
    );
    let created_at = Instant::now();
    let results: Vec<_> = futures::stream::iter(members.iter().enumerate().map(|(c, m)| {
        let rest = rest.clone();
        let creator = &tokens[m[0] as usize];
        let others: Vec<String> = m[1..].iter().map(|&u| users[u as usize].clone()).collect();
        let property = format!("bench-{run}-p{c}");
        async move {
            let r = rest.create_conversation(creator, &others, &property).await;
            (c, r)
        }
    }))
    .buffer_unordered(args.setup_concurrency.max(1))
    .collect()
    .await;
    setup.create_secs = created_at.elapsed().as_secs_f64();
    let mut ids: Vec<Option<Arc<str>>> = vec![None; k];
    for (c, r) in results {
        match r {
            Ok((status, created)) => {
                bump(&mut setup.create_status, &status.to_string());
                ids[c] = Some(created.id.into());
            }
            Err(e) => bump(&mut setup.create_failures, &e.0),
        }
    }
    setup.conversations_created = ids.iter().filter(|i| i.is_some()).count();
    if setup.conversations_created < k {
        bail!(
            "{} of {k} conversations could not be created: {:?}",
            k - setup.conversations_created,
            setup.create_failures
        );
    }
    let convs: Vec<Conv> = ids
        .into_iter()
        .zip(members)
        .filter_map(|(id, members)| Some(Conv { id: id?, members }))
        .collect();

    let shared = Arc::new(Shared {
        run: run.clone(),
        convs,
        read_share: args.read_share,
        steps: RwLock::new(Vec::new()),
        current: AtomicUsize::new(NO_STEP),
        setup: Mutex::default(),
        disconnects: Mutex::default(),
        late: AtomicU64::new(0),
        foreign: AtomicU64::new(0),
    });

    eprintln!(
        "chat-bench: connecting {} sockets over {} gateway(s)",
        args.users,
        target.ws_urls.len()
    );
    let (sockets, connect) = connect_all(&target, &tokens, common, shared.clone()).await;
    setup.connect = connect;

    if args.join {
        join_all(&shared, &sockets, &user_convs, &mut setup).await;
    }
    tokio::time::sleep(Duration::from_secs_f64(args.settle_secs)).await;
    setup.events = lock(&shared.setup).events.clone();

    // The steps.
    let bus_before = read_all_bus(&args.metrics).await?;
    let epoch = Instant::now();
    let mut budget = Budget {
        limit: args.user_rate_limit,
        window,
        log: vec![VecDeque::new(); args.users],
        pool,
    };
    let tokens: Vec<Arc<str>> = tokens.into_iter().map(Into::into).collect();
    let mut reports = Vec::new();
    for (i, &rate) in rates.iter().enumerate() {
        let plan = StepPlan {
            index: u32::try_from(i).unwrap_or(u32::MAX),
            rate,
            duration: step_duration,
        };
        let ctx = StepContext {
            shared: &shared,
            sockets: &sockets,
            tokens: &tokens,
            user_convs: &user_convs,
            rest: &rest,
            args,
        };
        let report = run_step(&ctx, &plan, &mut budget, &mut rng, epoch).await;
        report::load_step_line(&report, i == 0);
        let holds = report.holds;
        reports.push(report);
        if args.ramp.is_some() && !holds {
            break;
        }
    }
    let bus_after = read_all_bus(&args.metrics).await?;
    let seconds = epoch.elapsed().as_secs_f64();
    close_all(&sockets).await;
    let bus: Vec<BusFigures> = args
        .metrics
        .iter()
        .zip(bus_before.iter().zip(&bus_after))
        .map(|(url, (b, a))| BusFigures {
            url: url.clone(),
            seconds,
            received: a[0].saturating_sub(b[0]),
            received_bytes: a[1].saturating_sub(b[1]),
            published: a[2].saturating_sub(b[2]),
            published_bytes: a[3].saturating_sub(b[3]),
            channels: a[4],
        })
        .collect();

    let mut failures = Vec::new();
    if setup.connect.failed > 0 {
        failures.push(format!("{} connect failure(s)", setup.connect.failed));
    }
    let join_failed: u64 = setup.join_failures.values().sum();
    if join_failed > 0 {
        failures.push(format!("{join_failed} join_conversation failure(s)"));
    }
    let setup_errors = lock(&shared.setup).errors.clone();
    if !setup_errors.is_empty() {
        failures.push(format!("before the first step: {setup_errors:?}"));
    }
    let merged = setup.create_status.get("200").copied().unwrap_or(0);
    if merged > 0 {
        failures.push(format!("{merged} conversation(s) merged by create-or-get"));
    }
    for s in &reports {
        let d = &s.deliveries;
        let mut what = Vec::new();
        if d.lost_others + d.lost_own > 0 {
            what.push(format!(
                "lost {}+{} (others+own)",
                d.lost_others, d.lost_own
            ));
        }
        if d.duplicates_others + d.duplicates_own > 0 {
            what.push(format!(
                "duplicates {}+{}",
                d.duplicates_others, d.duplicates_own
            ));
        }
        if d.misdelivered > 0 {
            what.push(format!("misdelivered {}", d.misdelivered));
        }
        if s.error_count > 0 {
            what.push(format!("errors {:?}", s.errors));
        }
        if !what.is_empty() {
            failures.push(format!(
                "step {} ({} msg/s): {}",
                s.step,
                s.rate,
                what.join(", ")
            ));
        }
    }

    let report = LoadReport {
        scenario: "load",
        label: common.label.clone(),
        run: run.to_string(),
        seed,
        params: args.clone(),
        setup,
        max_held_rate: reports
            .iter()
            .filter(|s| s.holds)
            .map(|s| s.rate)
            .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r)))),
        steps: reports,
        late_deliveries: shared.late.load(Ordering::Relaxed),
        foreign_messages: shared.foreign.load(Ordering::Relaxed),
        disconnects: lock(&shared.disconnects).clone(),
        bus,
        failures: failures.clone(),
    };
    report::load_summary(&report);
    if let Some(path) = &common.json {
        report::write_json(path, &report)?;
    }
    Ok(failures)
}

/// Every socket joins the rooms of its user's conversations (typing fans out to rooms).
async fn join_all(
    shared: &Shared,
    sockets: &[Option<SocketHandle>],
    user_convs: &[Vec<u32>],
    setup: &mut Setup,
) {
    let calls = sockets.iter().enumerate().flat_map(|(u, s)| {
        let convs = &user_convs[u];
        convs.iter().filter_map(move |&c| {
            let handle = s.as_ref()?.clone();
            let id = shared.convs.get(c as usize)?.id.clone();
            Some(async move {
                let payload = serde_json::json!({ "conversationId": &*id }).to_string();
                let t = Instant::now();
                let ack = handle
                    .call("join_conversation", payload, Duration::from_secs(10))
                    .await;
                (ack.map(|a| ack_result(&a)), t.elapsed())
            })
        })
    });
    let results: Vec<_> = futures::stream::iter(calls)
        .buffer_unordered(256)
        .collect()
        .await;
    let mut times = Hist::default();
    for (result, took) in results {
        setup.joins += 1;
        match result {
            Some(Ok(())) => times.record(took),
            Some(Err(code)) => bump(&mut setup.join_failures, &code),
            None => bump(&mut setup.join_failures, "timeout"),
        }
    }
    setup.join_time = times.summary();
}

struct StepPlan {
    index: u32,
    rate: f64,
    duration: Duration,
}

struct StepContext<'a> {
    shared: &'a Arc<Shared>,
    sockets: &'a [Option<SocketHandle>],
    tokens: &'a [Arc<str>],
    user_convs: &'a [Vec<u32>],
    rest: &'a Rest,
    args: &'a LoadArgs,
}

/// Plans, runs, drains and evaluates one step.
async fn run_step(
    ctx: &StepContext<'_>,
    plan: &StepPlan,
    budget: &mut Budget,
    rng: &mut StdRng,
    epoch: Instant,
) -> StepReport {
    let args = ctx.args;
    // Plan against a start a little ahead; if planning takes longer, everything shifts
    // later, which only widens the gaps the budget planned (never narrows them).
    let lead = Duration::from_millis(50);
    let base = (epoch.elapsed() + lead).as_secs_f64();
    let n = (plan.rate * plan.duration.as_secs_f64()).round() as usize;
    let mut msgs = Vec::with_capacity(n);
    let mut unschedulable = 0;
    for i in 0..n {
        let at = i as f64 / plan.rate;
        let Some(sender) = budget.pick(base + at, rng) else {
            unschedulable += 1;
            continue;
        };
        let mine = &ctx.user_convs[sender as usize];
        let conv = mine[rng.random_range(0..mine.len())];
        let via_rest = rng.random::<f64>() < args.rest_share;
        let typing = !via_rest && rng.random::<f64>() < args.typing_share;
        msgs.push(Msg {
            at: Duration::from_secs_f64(at),
            conv,
            sender,
            via_rest,
            typing,
            state: AtomicU8::new(PLANNED),
            mask: AtomicU64::new(0),
        });
    }
    let step = Arc::new(Step {
        index: plan.index,
        rate: plan.rate,
        duration: plan.duration,
        msgs,
        unschedulable,
        figures: Mutex::default(),
        sent_socket: AtomicU64::new(0),
        sent_rest: AtomicU64::new(0),
        typing_sent: AtomicU64::new(0),
        reads_sent: AtomicU64::new(0),
        evaluated: AtomicBool::new(false),
    });
    {
        let mut steps = ctx
            .shared
            .steps
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        steps.push(step.clone());
        ctx.shared.current.store(steps.len() - 1, Ordering::Relaxed);
    }

    let t0 = (epoch + Duration::from_secs_f64(base)).max(Instant::now());
    let probe = CpuProbe::start(&args.common.pids);
    // Two timelines merged: the sends, and the `typing_start`s that precede some of them.
    let mut typing = step
        .msgs
        .iter()
        .enumerate()
        .filter(|(_, m)| m.typing)
        .map(|(seq, m)| (m.at.saturating_sub(TYPING_LEAD), seq))
        .peekable();
    for (seq, msg) in step.msgs.iter().enumerate() {
        while let Some(&(at, typing_seq)) = typing.peek().filter(|(at, _)| *at <= msg.at) {
            typing.next();
            let when = t0 + at;
            if when > Instant::now() {
                tokio::time::sleep_until(when.into()).await;
            }
            typing_start(ctx, &step, typing_seq);
        }
        let when = t0 + msg.at;
        if when > Instant::now() {
            tokio::time::sleep_until(when.into()).await;
        }
        dispatch(ctx, &step, seq, msg, when);
    }
    // The sending span ends at the planned end even when the last send came earlier.
    let end = t0 + plan.duration;
    if end > Instant::now() {
        tokio::time::sleep_until(end.into()).await;
    }
    let send_wall = t0.elapsed();
    let (generator_cpu, servers) = probe.finish();
    let machine = probe.machine_busy_percent();
    tokio::time::sleep(Duration::from_secs_f64(args.drain_secs)).await;
    let mut report = evaluate(ctx, &step, generator_cpu, servers, send_wall);
    report.machine_cpu_busy_percent = machine;
    report
}

/// Sends planned message `seq` now (its planned time is `when`).
fn dispatch(ctx: &StepContext<'_>, step: &Arc<Step>, seq: usize, msg: &Msg, when: Instant) {
    let Some(conv) = ctx.shared.convs.get(msg.conv as usize) else {
        return;
    };
    let run = ctx.shared.run.clone();
    let step_index = step.index;
    if msg.via_rest {
        msg.state.store(SENT, Ordering::Relaxed);
        step.sent_rest.fetch_add(1, Ordering::Relaxed);
        let rest = ctx.rest.clone();
        let token = ctx.tokens[msg.sender as usize].clone();
        let conv_id = conv.id.clone();
        let step = step.clone();
        // One task per request: open loop, a slow answer never delays the next send.
        tokio::spawn(async move {
            let started = Instant::now();
            lock(&step.figures)
                .lag
                .record(started.saturating_duration_since(when));
            let (content, client_id) = content(&run, step_index, seq);
            let body =
                serde_json::json!({ "content": content, "clientMessageId": client_id }).to_string();
            let result = rest.send_message(&token, &conv_id, body).await;
            let took = started.elapsed();
            let Some(msg) = step.msgs.get(seq) else {
                return;
            };
            let mut f = lock(&step.figures);
            match result {
                Ok(_) => {
                    msg.state.store(ACKED, Ordering::Relaxed);
                    f.ack_rest.record(took);
                }
                Err(e) => {
                    msg.state.store(FAILED, Ordering::Relaxed);
                    bump(&mut f.errors, &format!("rest:{}", e.0));
                }
            }
        });
        return;
    }
    let Some(handle) = ctx.sockets[msg.sender as usize]
        .as_ref()
        .filter(|h| h.is_alive())
    else {
        msg.state.store(NOT_SENT, Ordering::Relaxed);
        bump(&mut lock(&step.figures).errors, "sender_socket_down");
        return;
    };
    msg.state.store(SENT, Ordering::Relaxed);
    let conv_id = conv.id.clone();
    let seq32 = u32::try_from(seq).unwrap_or(u32::MAX);
    let sent = handle.send(Outgoing::Emit {
        event: "send_message",
        // Built when written: the timestamp is when the frame left.
        build: Box::new(move || {
            let (content, client_id) = content(&run, step_index, seq);
            serde_json::json!({
                "conversationId": &*conv_id,
                "content": content,
                "clientMessageId": client_id,
            })
            .to_string()
        }),
        ack: Some(AckKind::Send {
            step: step_index,
            seq: seq32,
        }),
        scheduled: Some(when),
    });
    if sent {
        step.sent_socket.fetch_add(1, Ordering::Relaxed);
    } else {
        msg.state.store(NOT_SENT, Ordering::Relaxed);
        bump(&mut lock(&step.figures).errors, "sender_socket_down");
    }
    if msg.typing && handle.send(typing_event("typing_stop", &conv.id, step_index)) {
        step.typing_sent.fetch_add(1, Ordering::Relaxed);
    }
}

/// `typing_start` (or stop) for `conversation`, acknowledged.
fn typing_event(event: &'static str, conversation: &Arc<str>, step: u32) -> Outgoing {
    let id = conversation.clone();
    Outgoing::Emit {
        event,
        build: Box::new(move || serde_json::json!({ "conversationId": &*id }).to_string()),
        ack: Some(AckKind::Typing { step }),
        scheduled: None,
    }
}

/// The `typing_start` that precedes planned send `seq` by [`TYPING_LEAD`].
fn typing_start(ctx: &StepContext<'_>, step: &Step, seq: usize) {
    let Some(msg) = step.msgs.get(seq) else {
        return;
    };
    let (Some(conv), Some(Some(handle))) = (
        ctx.shared.convs.get(msg.conv as usize),
        ctx.sockets.get(msg.sender as usize),
    ) else {
        return;
    };
    if handle.send(typing_event("typing_start", &conv.id, step.index)) {
        step.typing_sent.fetch_add(1, Ordering::Relaxed);
    }
}

fn evaluate(
    ctx: &StepContext<'_>,
    step: &Step,
    generator_cpu: f64,
    servers: Vec<ServerCpu>,
    send_wall: Duration,
) -> StepReport {
    let args = ctx.args;
    step.evaluated.store(true, Ordering::Relaxed);
    let up = |u: u32| {
        ctx.sockets
            .get(u as usize)
            .and_then(Option::as_ref)
            .is_some_and(SocketHandle::is_alive)
    };
    let mut d = Deliveries::default();
    let (mut acked, mut ack_failed, mut no_ack, mut not_sent) = (0, 0, 0, 0);
    for msg in &step.msgs {
        match msg.state.load(Ordering::Relaxed) {
            ACKED => {
                acked += 1;
                let Some(conv) = ctx.shared.convs.get(msg.conv as usize) else {
                    continue;
                };
                let mask = msg.mask.load(Ordering::Relaxed);
                for (j, &member) in conv.members.iter().enumerate() {
                    if !up(member) {
                        d.excluded_socket_down += 1;
                        continue;
                    }
                    let got = mask & (1 << j) != 0;
                    if member == msg.sender {
                        d.expected_own += 1;
                        if got {
                            d.delivered_own += 1;
                        } else {
                            d.lost_own += 1;
                        }
                    } else {
                        d.expected_others += 1;
                        if got {
                            d.delivered_others += 1;
                        } else {
                            d.lost_others += 1;
                        }
                    }
                }
            }
            FAILED => ack_failed += 1,
            NOT_SENT => not_sent += 1,
            _ => no_ack += 1,
        }
    }
    let f = lock(&step.figures);
    d.duplicates_others = f.dup_others;
    d.duplicates_own = f.dup_own;
    d.misdelivered = f.misdelivered;
    let mut errors = f.errors.clone();
    if no_ack > 0 {
        errors.insert("no_ack".into(), no_ack);
    }
    if step.unschedulable > 0 {
        errors.insert("unschedulable".into(), step.unschedulable);
    }
    let error_count: u64 = errors.values().sum();
    let latency_others = f.lat_others.summary();
    let pacing_lag = f.lag.summary();

    // The generator was the bottleneck if it sent late or ran out of CPU: then the figures
    // say more about this process than about the server.
    let cpu_ceiling = 90.0 * cores() as f64;
    let mut notes = Vec::new();
    if pacing_lag.p99_ms > args.max_lag_ms {
        notes.push(format!(
            "pacing lag p99 {:.1} ms > {} ms",
            pacing_lag.p99_ms, args.max_lag_ms
        ));
    }
    if generator_cpu > cpu_ceiling {
        notes.push(format!(
            "generator CPU {generator_cpu:.0}% of {} core(s)",
            cores()
        ));
    }
    let generator_bound = !notes.is_empty();

    let mut reasons = Vec::new();
    if d.lost_others + d.lost_own > 0 {
        reasons.push(format!("lost {}", d.lost_others + d.lost_own));
    }
    if d.duplicates_others + d.duplicates_own > 0 {
        reasons.push(format!(
            "duplicates {}",
            d.duplicates_others + d.duplicates_own
        ));
    }
    if d.misdelivered > 0 {
        reasons.push(format!("misdelivered {}", d.misdelivered));
    }
    if error_count > 0 {
        reasons.push(format!("{error_count} error(s)"));
    }
    if latency_others.p99_ms > args.hold_p99_ms {
        reasons.push(format!(
            "p99 {:.1} ms > {} ms",
            latency_others.p99_ms, args.hold_p99_ms
        ));
    }
    if generator_bound {
        reasons.push(format!("generator-bound ({})", notes.join(", ")));
    }
    let sent_socket = step.sent_socket.load(Ordering::Relaxed);
    let sent_rest = step.sent_rest.load(Ordering::Relaxed);
    StepReport {
        step: step.index,
        rate: step.rate,
        duration_secs: step.duration.as_secs_f64(),
        planned: step.msgs.len() + usize::try_from(step.unschedulable).unwrap_or(0),
        unschedulable: step.unschedulable,
        sent_socket,
        sent_rest,
        achieved_rate: ((sent_socket + sent_rest) as f64 / send_wall.as_secs_f64().max(1e-9)
            * 10.0)
            .round()
            / 10.0,
        acked,
        ack_failed,
        no_ack,
        not_sent,
        deliveries: d,
        latency_others,
        latency_own: f.lat_own.summary(),
        ack_socket: f.ack_socket.summary(),
        ack_rest: f.ack_rest.summary(),
        ack_read: f.ack_read.summary(),
        ack_typing: f.ack_typing.summary(),
        reads_sent: step.reads_sent.load(Ordering::Relaxed),
        typing_sent: step.typing_sent.load(Ordering::Relaxed),
        pacing_lag,
        generator_cpu_percent: generator_cpu,
        generator_bound,
        generator_note: (!notes.is_empty()).then(|| notes.join(", ")),
        servers,
        machine_cpu_busy_percent: None,
        errors,
        error_count,
        events: f.events.clone(),
        holds: reasons.is_empty(),
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_round_trip() {
        let (c, id) = content("abc", 2, 17);
        let (_, step, seq) = parse_content(&c, "abc").unwrap_or_default();
        assert_eq!((step, seq), (2, 17));
        assert_eq!(id, "bench-abc-2-17");
        assert!(parse_content(&c, "other").is_none());
        assert!(parse_content("hello", "abc").is_none());
    }

    #[test]
    fn every_user_in_a_conversation() {
        let mut rng = StdRng::seed_from_u64(1);
        let convs = assign(101, 50, 0.1, &mut rng);
        assert_eq!(convs.len(), 50);
        assert_eq!(convs.iter().filter(|c| c.len() > 2).count(), 5);
        let mut seen = [false; 101];
        for c in &convs {
            let mut sorted = c.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), c.len(), "distinct members");
            for &u in c {
                seen[u as usize] = true;
            }
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn budget_never_exceeds_the_limit() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut b = Budget {
            limit: 3,
            window: 1.0,
            log: vec![VecDeque::new(); 4],
            pool: vec![0, 1, 2, 3],
        };
        // 12 sends fit in any window of 1 s; the 13th does not.
        let picks: Vec<_> = (0..13)
            .map(|i| b.pick(f64::from(i) * 0.01, &mut rng))
            .collect();
        assert!(picks[..12].iter().all(Option::is_some));
        assert!(picks[12].is_none());
        // A window later, everyone has budget again.
        assert!(b.pick(1.2, &mut rng).is_some());
    }

    #[test]
    fn ramp_steps() {
        use clap::Parser;
        #[derive(Parser)]
        struct W {
            #[command(flatten)]
            load: LoadArgs,
        }
        let w = W::try_parse_from([
            "x",
            "--jwt-secret",
            "0123456789abcdef",
            "--ramp",
            "50,50,200",
        ]);
        let rates = w.ok().map(|w| rates(&w.load).unwrap_or_default());
        assert_eq!(rates, Some(vec![50.0, 100.0, 150.0, 200.0]));
    }
}
