//! From configuration to a token verifier: which keys, and the first-run secret.

use std::path::Path;
use std::sync::Arc;

use crate::auth::{self, AuthError, KeySource, Verifier, VerifierConfig};
use crate::config::{AuthArgs, AuthMode, TokenArgs};

/// What `serve` needs to check tokens.
pub struct AuthSetup {
    /// `None` when `--auth none`.
    pub verifier: Option<Arc<Verifier>>,
    /// An admin token to print, minted only when the secret was generated on this start.
    pub first_run_token: Option<String>,
}

/// Builds the verifier from flags; without key flags, uses (or generates) the data
/// directory's HS256 secret.
pub fn setup(args: &AuthArgs, data_dir: &Path) -> Result<AuthSetup, AuthError> {
    if args.auth == AuthMode::None {
        return Ok(AuthSetup {
            verifier: None,
            first_run_token: None,
        });
    }
    let (keys, generated_secret) = match (&args.jwt_public_key, &args.jwks_file) {
        (Some(pem), _) => (KeySource::PublicKeyPem(read(pem)?), None),
        (_, Some(jwks)) => {
            let json = String::from_utf8(read(jwks)?)
                .map_err(|_| AuthError::Config(format!("{} is not UTF-8 JSON", jwks.display())))?;
            (KeySource::Jwks(json), None)
        }
        (None, None) => {
            let (secret, created) = hs_secret(args, data_dir)?;
            (KeySource::Secret(secret.clone()), created.then_some(secret))
        }
    };
    let verifier = Verifier::new(VerifierConfig {
        keys,
        issuer: args.jwt_issuer.clone(),
        audience: args.jwt_audience.clone(),
        leeway_secs: args.jwt_leeway_secs,
    })?;
    let first_run_token = generated_secret
        .map(|secret| mint(args, &secret, "admin", "admin", args.admin_token_ttl))
        .transpose()?;
    Ok(AuthSetup {
        verifier: Some(Arc::new(verifier)),
        first_run_token,
    })
}

/// `tidegate token`: signs with the same secret `serve` would verify with.
pub fn mint_token(args: &TokenArgs) -> Result<String, AuthError> {
    if args.auth.jwt_public_key.is_some() || args.auth.jwks_file.is_some() {
        return Err(AuthError::Config(
            "tokens for public-key verification are minted by their issuer; \
             `tidegate token` signs only with an HS secret"
                .into(),
        ));
    }
    let (secret, _) = hs_secret(&args.auth, &args.data_dir)?;
    mint(&args.auth, &secret, &args.sub, &args.scope, args.ttl)
}

/// The configured `--jwt-secret`, else the data directory's generated one.
fn hs_secret(args: &AuthArgs, data_dir: &Path) -> Result<(Vec<u8>, bool), AuthError> {
    match &args.jwt_secret {
        Some(secret) => Ok((secret.as_bytes().to_vec(), false)),
        None => auth::load_or_create_secret(data_dir),
    }
}

fn mint(
    args: &AuthArgs,
    secret: &[u8],
    sub: &str,
    scopes: &str,
    ttl: std::time::Duration,
) -> Result<String, AuthError> {
    auth::mint_hs256(
        secret,
        sub,
        scopes,
        ttl,
        args.jwt_issuer.as_deref(),
        args.jwt_audience.as_deref(),
    )
}

fn read(path: &Path) -> Result<Vec<u8>, AuthError> {
    std::fs::read(path).map_err(AuthError::io(path))
}
