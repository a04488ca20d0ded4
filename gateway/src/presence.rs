//! Who is online: a user is online while any socket of theirs is connected on any replica.
//!
//! [`LocalPresence`] counts sockets in this process (the embedded default). [`RedisPresence`]
//! keeps, per user, a sorted set of their sockets scored by an expiry that each replica
//! refreshes for its own sockets; a replica that crashes stops refreshing, and the sweep of
//! any surviving replica takes its users offline once the entries expire. Every transition
//! is decided inside one Lua script, so exactly one caller announces it.

use async_trait::async_trait;
use chat_shared::time::Millis;
use redis::aio::ConnectionManager;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

pub type PresenceResult<T> = Result<T, redis::RedisError>;

#[async_trait]
pub trait Presence: Send + Sync + 'static {
    /// A socket connected. `true` when it is the user's first anywhere: they came online.
    async fn connected(&self, user: &str, socket: &str, now: Millis) -> PresenceResult<bool>;

    /// A socket disconnected. `true` when it was the user's last: they went offline (and
    /// `now` is their last seen).
    async fn disconnected(&self, user: &str, socket: &str, now: Millis) -> PresenceResult<bool>;

    /// Keeps this replica's sockets alive. Only sockets still registered are refreshed (one
    /// that disconnected meanwhile stays gone); those no longer registered (swept while this
    /// replica stalled, or lost with Redis's data) come back in [`Refreshed::missing`], for the
    /// caller to register again with [`Presence::connected`] if they are still connected.
    /// Batches that fail are skipped, not retried: the next refresh covers them.
    async fn refresh(&self, sockets: &[(String, String)], now: Millis) -> Refreshed;

    /// Takes offline the users whose sockets all expired (their replica died). Each such user
    /// is returned to exactly one caller, on one replica.
    async fn sweep(&self, now: Millis) -> PresenceResult<Vec<String>>;

    /// The user's last disconnect, if any was recorded.
    async fn last_seen(&self, user: &str) -> PresenceResult<Option<Millis>>;

    /// Which of `users` are online, as last announced to their contacts.
    async fn online(&self, users: &[String]) -> PresenceResult<Vec<String>>;
}

/// What a refresh found.
#[derive(Debug, Default)]
pub struct Refreshed {
    /// `(user, socket)` pairs no longer registered.
    pub missing: Vec<(String, String)>,
    /// Batches that failed.
    pub errors: usize,
}

/// Presence inside one process: nothing expires, because nothing can crash alone.
#[derive(Default)]
pub struct LocalPresence {
    state: Mutex<LocalState>,
}

#[derive(Default)]
struct LocalState {
    sockets: HashMap<String, HashSet<String>>,
    last_seen: HashMap<String, Millis>,
}

#[async_trait]
impl Presence for LocalPresence {
    async fn connected(&self, user: &str, socket: &str, _: Millis) -> PresenceResult<bool> {
        let Ok(mut state) = self.state.lock() else {
            return Ok(false);
        };
        let sockets = state.sockets.entry(user.to_owned()).or_default();
        Ok(sockets.insert(socket.to_owned()) && sockets.len() == 1)
    }

    async fn disconnected(&self, user: &str, socket: &str, now: Millis) -> PresenceResult<bool> {
        let Ok(mut state) = self.state.lock() else {
            return Ok(false);
        };
        let Some(sockets) = state.sockets.get_mut(user) else {
            return Ok(false);
        };
        if !sockets.remove(socket) || !sockets.is_empty() {
            return Ok(false);
        }
        state.sockets.remove(user);
        state.last_seen.insert(user.to_owned(), now);
        Ok(true)
    }

    async fn refresh(&self, _: &[(String, String)], _: Millis) -> Refreshed {
        Refreshed::default()
    }

    async fn sweep(&self, _: Millis) -> PresenceResult<Vec<String>> {
        Ok(Vec::new())
    }

    async fn last_seen(&self, user: &str) -> PresenceResult<Option<Millis>> {
        Ok(self
            .state
            .lock()
            .ok()
            .and_then(|s| s.last_seen.get(user).copied()))
    }

    async fn online(&self, users: &[String]) -> PresenceResult<Vec<String>> {
        Ok(self
            .state
            .lock()
            .map(|s| {
                users
                    .iter()
                    .filter(|u| s.sockets.contains_key(*u))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// How long a last-seen time is kept after the disconnect.
const LAST_SEEN_TTL_SECS: u64 = 90 * 24 * 3600;
/// Users examined per sweep.
const SWEEP_BATCH: isize = 200;

/// Registers a socket: KEYS = the user's sockets, the index; ARGV = socket, expiry, now,
/// user, key lifetime (ms). Returns 1 when this put the user in the index: the index holds
/// exactly the users announced online, so "online" and "offline" strictly alternate whoever
/// announces them. The user's key expires a while after its last refresh, so that nothing
/// stays behind if every replica stops at once.
const CONNECT: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return redis.call('ZADD', KEYS[2], 'GT', ARGV[2], ARGV[4])
";

/// Refreshes a socket only if it is still registered: KEYS = the user's sockets, the index;
/// ARGV = socket, expiry, user, key lifetime (ms). Returns 0 when it is not registered.
const REFRESH: &str = r"
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], 'GT', ARGV[2], ARGV[3])
return 1
";

/// Unregisters a socket: KEYS = the user's sockets, the index, last seen;
/// ARGV = socket, now, user, last-seen ttl. Returns 1 when this took the user out of the
/// index (their last live socket): announce "offline".
const DISCONNECT: &str = r"
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if removed == 1 and redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[4])
  return redis.call('ZREM', KEYS[2], ARGV[3])
end
return 0
";

/// Expires a user's dead sockets: KEYS = the user's sockets, the index, last seen;
/// ARGV = now, user, last-seen ttl. Returns 1 when this took the user offline.
const EXPIRE: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) == 0 then
  if redis.call('ZREM', KEYS[2], ARGV[2]) == 1 then
    redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[3])
    return 1
  end
  return 0
end
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('ZADD', KEYS[2], newest[2], ARGV[2])
return 0
";

/// Sockets refreshed per round trip.
const REFRESH_BATCH: usize = 500;
/// Sweep batches per tick at most (a dead replica's users are taken offline over a few ticks).
const SWEEP_ROUNDS: usize = 20;

pub struct RedisPresence {
    conn: ConnectionManager,
    prefix: String,
    ttl: Duration,
    connect: redis::Script,
    disconnect: redis::Script,
    expire: redis::Script,
}

impl RedisPresence {
    pub async fn connect(url: &str, prefix: &str, ttl: Duration) -> PresenceResult<Self> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(Some(Duration::from_secs(5)));
        // Lazy: a replica starts (and reports not ready) while Redis is still coming up.
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            ttl,
            connect: redis::Script::new(CONNECT),
            disconnect: redis::Script::new(DISCONNECT),
            expire: redis::Script::new(EXPIRE),
        })
    }

    fn sockets_key(&self, user: &str) -> String {
        format!("{}:presence:{user}", self.prefix)
    }

    fn index_key(&self) -> String {
        format!("{}:presence", self.prefix)
    }

    fn last_seen_key(&self, user: &str) -> String {
        format!("{}:lastseen:{user}", self.prefix)
    }

    /// Three presence lifetimes: long enough for any refresh, short enough to clean up.
    fn key_lifetime_ms(&self) -> i64 {
        3 * i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX / 4)
    }

    fn expiry(&self, now: Millis) -> i64 {
        now.0 + i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX / 2)
    }
}

#[async_trait]
impl Presence for RedisPresence {
    async fn connected(&self, user: &str, socket: &str, now: Millis) -> PresenceResult<bool> {
        let first: i64 = self
            .connect
            .key(self.sockets_key(user))
            .key(self.index_key())
            .arg(socket)
            .arg(self.expiry(now))
            .arg(now.0)
            .arg(user)
            .arg(self.key_lifetime_ms())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(first == 1)
    }

    async fn disconnected(&self, user: &str, socket: &str, now: Millis) -> PresenceResult<bool> {
        let last: i64 = self
            .disconnect
            .key(self.sockets_key(user))
            .key(self.index_key())
            .key(self.last_seen_key(user))
            .arg(socket)
            .arg(now.0)
            .arg(user)
            .arg(LAST_SEEN_TTL_SECS)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(last == 1)
    }

    async fn refresh(&self, sockets: &[(String, String)], now: Millis) -> Refreshed {
        let mut conn = self.conn.clone();
        let mut outcome = Refreshed::default();
        for chunk in sockets.chunks(REFRESH_BATCH) {
            let mut pipe = redis::pipe();
            for (user, socket) in chunk {
                pipe.cmd("EVAL")
                    .arg(REFRESH)
                    .arg(2)
                    .arg(self.sockets_key(user))
                    .arg(self.index_key())
                    .arg(socket)
                    .arg(self.expiry(now))
                    .arg(user)
                    .arg(self.key_lifetime_ms());
            }
            match pipe.query_async::<Vec<i64>>(&mut conn).await {
                Ok(found) => outcome.missing.extend(
                    chunk
                        .iter()
                        .zip(found)
                        .filter(|(_, f)| *f == 0)
                        .map(|(pair, _)| pair.clone()),
                ),
                Err(e) => {
                    tracing::warn!(error = %e, sockets = chunk.len(), "presence refresh failed");
                    outcome.errors += 1;
                }
            }
        }
        outcome
    }

    async fn sweep(&self, now: Millis) -> PresenceResult<Vec<String>> {
        let mut conn = self.conn.clone();
        let mut gone = Vec::new();
        for _ in 0..SWEEP_ROUNDS {
            let due: Vec<String> = redis::cmd("ZRANGE")
                .arg(self.index_key())
                .arg("-inf")
                .arg(now.0)
                .arg("BYSCORE")
                .arg("LIMIT")
                .arg(0)
                .arg(SWEEP_BATCH)
                .query_async(&mut conn)
                .await?;
            let full = due.len() == usize::try_from(SWEEP_BATCH).unwrap_or(usize::MAX);
            for user in due {
                let offline: i64 = self
                    .expire
                    .key(self.sockets_key(&user))
                    .key(self.index_key())
                    .key(self.last_seen_key(&user))
                    .arg(now.0)
                    .arg(&user)
                    .arg(LAST_SEEN_TTL_SECS)
                    .invoke_async(&mut conn)
                    .await?;
                if offline == 1 {
                    gone.push(user);
                }
            }
            if !full {
                break;
            }
        }
        Ok(gone)
    }

    async fn last_seen(&self, user: &str) -> PresenceResult<Option<Millis>> {
        let at: Option<i64> = redis::cmd("GET")
            .arg(self.last_seen_key(user))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(at.map(Millis))
    }

    async fn online(&self, users: &[String]) -> PresenceResult<Vec<String>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        // The index holds exactly the users announced online.
        let scores: Vec<Option<f64>> = redis::cmd("ZMSCORE")
            .arg(self.index_key())
            .arg(users)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(users
            .iter()
            .zip(scores)
            .filter(|(_, score)| score.is_some())
            .map(|(user, _)| user.clone())
            .collect())
    }
}
