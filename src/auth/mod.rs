//! JWT verification, scopes and token minting. Pure domain code: no HTTP types here.
//!
//! # Flow
//! At startup a [`Verifier`] is built once from a [`VerifierConfig`]; a bad PEM or JWKS fails
//! then, with one line of [`AuthError::Config`]. Per request, the HTTP layer takes the token
//! (header or `access_token` query) and calls [`Verifier::verify`], which returns [`Claims`];
//! handlers then ask [`Scopes::allows`], and listings filter with [`Scopes::can_see_topic`] /
//! [`Scopes::can_see_group`]. No token: [`AuthError::Missing`]. Any failed check:
//! [`AuthError::Invalid`]. Both mean 401; a valid token lacking a scope is the caller's 403.
//!
//! # Algorithms come from the key, never from the token
//! Each key is paired with the algorithms it may verify, fixed at startup:
//! - [`KeySource::Secret`] accepts HS256/384/512;
//! - [`KeySource::PublicKeyPem`]: RS256 for RSA, ES256 for EC P-256 (ES384 for P-384),
//!   EdDSA for Ed25519; the type is read from the PEM itself;
//! - [`KeySource::Jwks`]: per key, its `alg` when present (which must fit the key type; RSA
//!   keys may name any RS/PS variant), else the same defaults as a PEM. Encryption keys,
//!   symmetric `oct` keys and unsupported types are skipped with a warning; a JWKS left with
//!   no usable key is a startup error.
//!
//! A token whose `alg` is not in its key's list is refused before any signature check. This
//! is what defeats `alg: none` and the HS256-signed-with-the-RSA-public-key confusion.
//!
//! Within a JWKS the token's `kid` picks the key and an unknown `kid` is refused. A token
//! without `kid` is accepted only when the JWKS holds exactly one usable key: with several,
//! picking one would be a guess, and trying each in turn would multiply the signature work
//! every forged token costs us. With a secret or a PEM there is one key, and `kid` is
//! ignored.
//!
//! # Claims
//! `exp` is required; `nbf` is checked when present; both with
//! [`VerifierConfig::leeway_secs`] of tolerance. A configured issuer or audience makes
//! `iss` / `aud` required and checked; with no audience configured, `aud` is ignored.
//! Scopes come from `scope` and/or `scp`, each a string split on ASCII spaces only (RFC 6749
//! §3.3; a tab or a no-break space stays inside its item) or an array whose elements are
//! taken whole, never split.
//!
//! # Scopes
//! `publish:P`, `subscribe:P`, `group:P` and `admin` (also `admin:*`), where `P` is a name of
//! `[A-Za-z0-9._-]`, such a prefix followed by `*`, or `*`. In tokens, entries that are not
//! tidegate scopes (`openid`, `read:users`, `publish:a*b`, `admin:`, `publish:x\u{a0}admin`,
//! …) are ignored, never an error, so tokens from a shared identity provider work; ignoring
//! can only narrow access. Scopes we grant
//! ourselves ([`mint_hs256`]) are parsed strictly so typos fail.
//!
//! # First run
//! [`load_or_create_secret`] keeps a random HS256 secret in `<data dir>/jwt-secret`
//! ([`SECRET_FILE_NAME`], hex text, mode 0600), and [`mint_hs256`] signs tokens with it.
//!
//! # Crypto
//! `jsonwebtoken` with its pure-Rust `rust_crypto` backend (RustCrypto `rsa`, `p256`,
//! `ed25519-dalek`, `hmac`). It is the only enabled backend, so `jsonwebtoken` selects it
//! by itself; no provider has to be installed at startup.

mod error;
mod mint;
mod scope;
mod secret;
mod verifier;

pub use error::AuthError;
pub use mint::mint_hs256;
pub use scope::{Action, Scope, Scopes};
pub use secret::{SECRET_FILE_NAME, load_or_create_secret};
pub use verifier::{Claims, DEFAULT_LEEWAY_SECS, KeySource, Verifier, VerifierConfig};
