//! The REST calls the scenarios make, and the tokens they carry.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The REST base path of the contract.
const BASE_PATH: &str = "/api/v1/chat";

/// A REST client for one API origin (a connection pool shared by every user).
#[derive(Clone)]
pub struct Rest {
    client: reqwest::Client,
    base: String,
}

/// A failed call, as a short report key: `http:<status>:<code>` or `transport:<what>`.
#[derive(Debug)]
pub struct RestError(pub String);

#[derive(Deserialize)]
struct Problem {
    #[serde(default)]
    code: Option<String>,
}

#[derive(Deserialize)]
pub struct Created {
    pub id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody<'a> {
    participant_ids: &'a [String],
    #[serde(rename = "type")]
    kind: &'static str,
    property_id: &'a str,
    metadata: serde_json::Value,
}

impl Rest {
    pub fn new(origin: &reqwest::Url) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            // Loopback only: an HTTP(S)_PROXY in the environment must not reroute requests.
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .pool_max_idle_per_host(256)
            .build()
            .context("building the HTTP client")?;
        let origin = origin.as_str().trim_end_matches('/');
        Ok(Self {
            client,
            base: format!("{origin}{BASE_PATH}"),
        })
    }

    /// Creates a `property_inquiry` about `property` (unique per conversation, so create-or-get
    /// never merges two of them) between the token's user and `others`. `Ok((status, id))`.
    pub async fn create_conversation(
        &self,
        token: &str,
        others: &[String],
        property: &str,
    ) -> Result<(u16, Created), RestError> {
        let body = CreateBody {
            participant_ids: others,
            kind: "property_inquiry",
            property_id: property,
            metadata: serde_json::json!({ "propertyTitle": format!("bench {property}") }),
        };
        let resp = self
            .client
            .post(format!("{}/conversations", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status().as_u16();
        if !resp.status().is_success() {
            return Err(problem(status, resp).await);
        }
        let created = resp
            .json::<Created>()
            .await
            .map_err(|_| RestError(format!("http:{status}:unreadable")))?;
        Ok((status, created))
    }

    /// Sends a message; `Ok(status)` for 200/201.
    pub async fn send_message(
        &self,
        token: &str,
        conversation: &str,
        body: String,
    ) -> Result<u16, RestError> {
        let resp = self
            .client
            .post(format!(
                "{}/conversations/{conversation}/messages",
                self.base
            ))
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status().as_u16();
        if !resp.status().is_success() {
            return Err(problem(status, resp).await);
        }
        // Read the body so that the connection goes back to the pool.
        let _ = resp.bytes().await;
        Ok(status)
    }
}

async fn problem(status: u16, resp: reqwest::Response) -> RestError {
    let code = resp
        .json::<Problem>()
        .await
        .ok()
        .and_then(|p| p.code)
        .unwrap_or_else(|| "-".into());
    RestError(format!("http:{status}:{code}"))
}

fn transport(e: reqwest::Error) -> RestError {
    let what = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "other"
    };
    RestError(format!("transport:{what}"))
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
    name: &'a str,
}

/// An HS256 token for `user`, valid for `ttl`.
pub fn token(secret: &[u8], user: &str, ttl: Duration) -> anyhow::Result<String> {
    let exp = crate::now_micros() / 1_000_000 + ttl.as_secs();
    let claims = Claims {
        sub: user,
        exp,
        name: user,
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .context("signing a token")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_three_parts() {
        let t = token(b"0123456789abcdef", "u1", Duration::from_secs(60));
        assert!(t.is_ok_and(|t| t.split('.').count() == 3));
    }
}
