//! The one error type of the auth module.

use std::path::PathBuf;

/// Why a token was refused, or why auth could not be set up.
///
/// Messages are single lines meant for people (a 401 body, a startup error). None of them
/// ever contains the token: a token is a bearer credential, and error text ends up in logs.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The request carried no token at all.
    #[error("missing token: send `Authorization: Bearer <jwt>` or `?access_token=<jwt>`")]
    Missing,
    /// The token was present but cannot be trusted: malformed, bad signature, expired,
    /// not yet valid, wrong issuer or audience, algorithm not allowed, unknown `kid`, …
    #[error("invalid token: {0}")]
    Invalid(String),
    /// A scope string given to [`Scopes::parse`](super::Scopes::parse) (for example on
    /// `tidegate token --scope`) is not a tidegate scope.
    #[error("invalid scope: {0}")]
    InvalidScope(String),
    /// The configured keys or settings are unusable; reported once, at startup.
    #[error("auth configuration: {0}")]
    Config(String),
    /// Reading or writing the secret file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory being accessed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl AuthError {
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Self::Invalid(reason.into())
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

/// Translates a verification failure from `jsonwebtoken` into a short reason.
///
/// Deliberately not a `From` impl: the same library error type also reports key problems,
/// which are [`AuthError::Config`] when they happen at startup.
pub(crate) fn rejection(err: &jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind as K;
    let reason = match err.kind() {
        K::InvalidSignature => "bad signature".to_owned(),
        K::ExpiredSignature => "token expired".to_owned(),
        K::ImmatureSignature => "token not valid yet (nbf)".to_owned(),
        K::InvalidIssuer => "wrong issuer".to_owned(),
        K::InvalidAudience => "wrong audience".to_owned(),
        K::MissingRequiredClaim(claim) => format!("missing required claim `{claim}`"),
        K::InvalidClaimFormat(claim) => format!("malformed claim `{claim}`"),
        K::InvalidAlgorithm
        | K::MissingAlgorithm
        | K::UnsupportedAlgorithm
        | K::InvalidAlgorithmName => "algorithm not allowed".to_owned(),
        K::InvalidToken | K::Base64(_) | K::Json(_) | K::Utf8(_) => "malformed token".to_owned(),
        _ => "signature could not be checked".to_owned(),
    };
    AuthError::Invalid(reason)
}
