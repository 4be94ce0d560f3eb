//! JWT authentication and scopes, black-box: every route × every kind of bad, weak and good
//! token; public keys (PEM and JWKS) generated with the `openssl` CLI; scope patterns and
//! filtered listings; `?access_token=` kept out of the logs; the first-run secret, the
//! `tidegate token` command and `--auth none` with the real binary.
//!
//! Tokens are minted here with `jsonwebtoken` (or by hand for `alg: none`), never through
//! the server's own minting code, so a bug there cannot hide a bug in verification.

pub(crate) mod support;

mod binary;
mod claims;
mod grammar;
mod keys;
mod matrix;
mod scopes;
