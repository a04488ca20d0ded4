//! JWT verification, the same for REST and Socket.IO.
//!
//! Accepted: HS256 with the shared secret, and RS256/ES256 with a configured public key. The
//! algorithm is chosen by the key, never by the token: a token whose header names any other
//! algorithm (`none` included) is rejected before its signature is looked at.

use crate::config::{ConfigError, Settings};
use crate::domain::{Caller, Role, UserId};
use crate::error::ChatError;
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

struct KeyFor {
    algorithm: Algorithm,
    key: DecodingKey,
}

pub struct JwtVerifier {
    keys: Vec<KeyFor>,
    validation: Validation,
    /// Kept to mint tokens for the `token` subcommand and tests.
    secret: Option<Vec<u8>>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Builds the verifier from the settings. Fails when no key is configured or a key is bad.
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        let mut keys = Vec::new();
        if let Some(secret) = &settings.jwt_secret {
            keys.push(KeyFor {
                algorithm: Algorithm::HS256,
                key: DecodingKey::from_secret(secret.as_bytes()),
            });
        }
        if let Some(configured) = &settings.jwt_public_key {
            let pem = if configured.trim_start().starts_with("-----BEGIN") {
                configured.clone()
            } else {
                std::fs::read_to_string(configured).map_err(|e| {
                    ConfigError(format!("JWT_PUBLIC_KEY: cannot read {configured}: {e}"))
                })?
            };
            keys.push(public_key(pem.as_bytes())?);
        }
        if keys.is_empty() {
            return Err(ConfigError(
                "JWT_SECRET or JWT_PUBLIC_KEY is required".to_owned(),
            ));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = keys.iter().map(|k| k.algorithm).collect();
        validation.leeway = settings.jwt_leeway_secs;
        // `nbf`, when a token has one, is checked like `exp` (jsonwebtoken does not by default).
        validation.validate_nbf = true;
        // A configured issuer or audience is required, not only checked when present: a
        // token that names no issuer is not from the configured one.
        let mut required = vec!["exp", "sub"];
        required.extend(settings.jwt_issuer.as_ref().map(|_| "iss"));
        required.extend(settings.jwt_audience.as_ref().map(|_| "aud"));
        validation.set_required_spec_claims(&required);
        match &settings.jwt_issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &settings.jwt_audience {
            Some(aud) => validation.set_audience(&[aud]),
            // Tokens of the platform may carry an `aud` meant for someone else; without a
            // configured audience we neither require nor check it.
            None => validation.validate_aud = false,
        }
        Ok(Self {
            keys,
            validation,
            secret: settings.jwt_secret.as_ref().map(|s| s.as_bytes().to_vec()),
        })
    }

    /// Verifies a bearer token and returns who it names.
    pub fn verify(&self, token: &str) -> Result<Caller, ChatError> {
        let header =
            decode_header(token).map_err(|_| ChatError::unauthorized("malformed token"))?;
        let key = self
            .keys
            .iter()
            .find(|k| k.algorithm == header.alg)
            .ok_or_else(|| ChatError::unauthorized("token algorithm not accepted"))?;
        let data = decode::<Claims>(token, &key.key, &self.validation).map_err(|e| {
            tracing::debug!(error = %e, "token rejected");
            ChatError::unauthorized(format!("invalid token: {}", describe(&e)))
        })?;
        let claims = data.claims;
        let id = UserId::parse(&claims.sub, "sub")
            .map_err(|_| ChatError::unauthorized("invalid token: sub is not a valid user id"))?;
        let role = match claims.role.as_deref() {
            None | Some("user") => Role::User,
            Some("support") => Role::Support,
            Some("admin") => Role::Admin,
            Some(_) => return Err(ChatError::unauthorized("invalid token: unknown role")),
        };
        Ok(Caller {
            id,
            name: claims.name,
            role,
        })
    }

    /// Signs an HS256 token with the configured secret (for the `token` subcommand and tests).
    pub fn mint(&self, claims: &Claims) -> Result<String, ConfigError> {
        let secret = self
            .secret
            .as_ref()
            .ok_or_else(|| ConfigError("minting tokens needs JWT_SECRET".to_owned()))?;
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret),
        )
        .map_err(|e| ConfigError(format!("cannot sign token: {e}")))
    }
}

fn public_key(pem: &[u8]) -> Result<KeyFor, ConfigError> {
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Ok(KeyFor {
            algorithm: Algorithm::RS256,
            key,
        });
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        return Ok(KeyFor {
            algorithm: Algorithm::ES256,
            key,
        });
    }
    Err(ConfigError(
        "JWT_PUBLIC_KEY is neither an RSA nor an EC (P-256) public key in PEM".to_owned(),
    ))
}

/// A short reason that helps a client author without helping an attacker.
fn describe(err: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match err.kind() {
        ErrorKind::ExpiredSignature => "expired",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::MissingRequiredClaim(_) => "missing claim",
        ErrorKind::ImmatureSignature => "not yet valid",
        _ => "signature or format",
    }
}

/// Seconds since the epoch, for `exp` claims.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A random secret for a run of the embedded server started without `JWT_SECRET`.
pub fn generate_secret() -> String {
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
