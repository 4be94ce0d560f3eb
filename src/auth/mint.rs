//! Minting tokens with the server's own HMAC secret.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use super::{AuthError, Scopes};

#[derive(Serialize)]
struct MintedClaims<'a> {
    sub: &'a str,
    scope: String,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

/// Mints an HS256 token for `sub` with `scopes`, valid for `ttl` from now.
///
/// Used for the first-run admin token and `tidegate token`. `scopes` is parsed strictly
/// ([`Scopes::parse`]) and written back in canonical form, so a typo fails here instead of
/// producing a token that silently grants nothing. Pass the verifier's configured issuer and
/// audience, or it will reject the token.
///
/// # Errors
/// [`AuthError::InvalidScope`] for bad or no scopes, [`AuthError::Config`] for an empty
/// secret or a `ttl` under one second.
pub fn mint_hs256(
    secret: &[u8],
    sub: &str,
    scopes: &str,
    ttl: Duration,
    issuer: Option<&str>,
    audience: Option<&str>,
) -> Result<String, AuthError> {
    if secret.is_empty() {
        return Err(AuthError::Config("the HMAC secret is empty".into()));
    }
    if ttl.as_secs() == 0 {
        return Err(AuthError::Config(
            "token lifetime must be at least one second".into(),
        ));
    }
    let scopes = Scopes::parse(scopes)?;
    if scopes.iter().next().is_none() {
        return Err(AuthError::InvalidScope("no scopes given".into()));
    }
    // Same clock as the verifier's `exp`/`nbf` checks.
    let iat = jsonwebtoken::get_current_timestamp();
    let claims = MintedClaims {
        sub,
        scope: scopes.to_string(),
        iat,
        exp: iat.saturating_add(ttl.as_secs()),
        iss: issuer,
        aud: audience,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|err| AuthError::Config(format!("cannot sign the token: {err}")))
}
