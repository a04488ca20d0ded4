//! The handshake: a socket is admitted only with a valid token, verified exactly like REST's
//! (`chat_shared::auth`). The token comes from the client's `auth: { token }`, an
//! `Authorization: Bearer` header, or a `token` query parameter, in that order. A rejection
//! reaches the client as `connect_error` with message `unauthorized`, and no handler runs.

use crate::Gateway;
use chat_shared::domain::Caller;
use socketioxide::extract::{SocketRef, State, TryData};
use std::fmt;
use std::sync::Arc;

/// How long a handshake waits for presence before going on without it.
const PRESENCE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The client address a socket was counted under (`MAX_SOCKETS_PER_IP`), in its extensions.
#[derive(Debug, Clone, Copy)]
pub struct SocketIp(pub std::net::IpAddr);

/// The authenticated user of a socket, in its extensions.
#[derive(Debug, Clone)]
pub struct SocketUser(pub Arc<Caller>);

/// Why a handshake was refused, as the client's `connect_error` message: `unauthorized`
/// (why a token was refused is logged, not sent), or `rate_limited` when the user holds
/// `MAX_SOCKETS_PER_USER` sockets on this replica already (or its address
/// `MAX_SOCKETS_PER_IP`).
#[derive(Debug)]
pub enum Refused {
    Unauthorized,
    TooManySockets,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unauthorized => "unauthorized",
            Self::TooManySockets => "rate_limited",
        })
    }
}

/// Connect middleware.
pub async fn authenticate(
    socket: SocketRef,
    TryData(auth): TryData<serde_json::Value>,
    State(gateway): State<Arc<Gateway>>,
) -> Result<(), Refused> {
    let token = auth
        .ok()
        .as_ref()
        .and_then(|a| a.get("token")?.as_str().map(str::to_owned))
        .or_else(|| bearer(socket.req_parts()))
        .or_else(|| query_token(socket.req_parts()))
        .ok_or_else(|| {
            tracing::debug!(sid = %socket.id, "handshake without a token");
            Refused::Unauthorized
        })?;
    let caller = gateway.core.verifier.verify(token.trim()).map_err(|e| {
        tracing::debug!(sid = %socket.id, error = %e, "handshake token refused");
        Refused::Unauthorized
    })?;
    // Counted now, before the client learns it is connected, so that its next handshake
    // sees it; the disconnect handler (or, for a handshake that never completes, the presence
    // loop) counts it out.
    let ip = if gateway.max_sockets_per_ip > 0 {
        gateway.client_ip(socket.req_parts())
    } else {
        None
    };
    if !gateway.admit_socket(caller.id.as_str(), ip) {
        tracing::debug!(
            user = caller.id.as_str(),
            ?ip,
            "handshake refused: too many sockets for this user or address"
        );
        return Err(Refused::TooManySockets);
    }
    if let Some(ip) = ip {
        socket.extensions.insert(SocketIp(ip));
    }
    crate::handlers::register(&socket, &gateway, &caller).await;
    let user = caller.id.as_str().to_owned();
    if let Ok(mut pending) = gateway.handshakes.lock() {
        pending.insert(socket.id, (user.clone(), ip, std::time::Instant::now()));
    }
    // Presence is recorded, and announced, before the client learns it is connected: its
    // disconnect handler can only run after this, so "offline" always follows "online".
    // Bounded: without Redis the socket works, and the presence loop records it later.
    let recorded = tokio::time::timeout(PRESENCE_WAIT, async {
        match gateway
            .presence
            .connected(&user, &socket.id.to_string(), gateway.now())
            .await
        {
            Ok(true) => gateway.came_online(&user).await,
            Ok(false) => {}
            Err(e) => tracing::warn!(user, error = %e, "presence not recorded"),
        }
    })
    .await;
    if recorded.is_err() {
        tracing::warn!(user, "presence not recorded in time");
    }
    socket.extensions.insert(SocketUser(Arc::new(caller)));
    Ok(())
}

fn bearer(parts: &axum::http::request::Parts) -> Option<String> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::to_owned)
}

fn query_token(parts: &axum::http::request::Parts) -> Option<String> {
    form_urlencoded::parse(parts.uri.query()?.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}
