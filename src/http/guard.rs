//! The one authentication and authorization guard.
//!
//! Handlers cannot reach the log except through a [`Caller`]: `AppState` keeps the log in
//! a field private to this module, and a `Caller` exists only after its token verified
//! (401 otherwise). Each access then names the action and resource it needs ([`Caller::may`],
//! 403 otherwise), so a new endpoint gets authentication by construction and cannot touch
//! a topic without naming the scope it requires.

use std::future::{Ready, ready};
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};

use super::error::{ApiError, ErrorCode};
use crate::auth::{Action, AuthError, Claims, Verifier};
use crate::config::Limits;
use crate::echo::quoted;
use crate::log::{EventLog, LogError, Readiness, TopicDescription};

/// What every handler shares.
pub struct AppState {
    log: Arc<dyn EventLog>,
    /// `None` when authentication is off (`--auth none`).
    verifier: Option<Arc<Verifier>>,
    pub limits: Limits,
}

impl AppState {
    pub fn new(log: Arc<dyn EventLog>, verifier: Option<Arc<Verifier>>, limits: Limits) -> Self {
        AppState {
            log,
            verifier,
            limits,
        }
    }

    /// For the unauthenticated readiness probe.
    pub fn readiness(&self) -> Readiness {
        self.log.readiness()
    }
}

/// An authenticated request: verified claims, or anyone when auth is off.
pub struct Caller {
    state: web::Data<AppState>,
    /// `None` only when authentication is off.
    claims: Option<Claims>,
}

impl Caller {
    /// The log, if the caller's scopes allow `action` on `resource` (a topic or group name).
    pub fn may(&self, action: Action, resource: &str) -> Result<&dyn EventLog, ApiError> {
        match &self.claims {
            Some(claims) if !claims.scopes.allows(action, resource) => Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "the token has no scope allowing {} on {}",
                    action.as_str(),
                    quoted(resource)
                ),
            )),
            _ => Ok(&*self.state.log),
        }
    }

    /// The log, for callers with the `admin` scope.
    pub fn admin(&self) -> Result<&dyn EventLog, ApiError> {
        match &self.claims {
            Some(claims) if !claims.scopes.is_admin() => Err(ApiError::new(
                ErrorCode::Forbidden,
                "this needs the admin scope",
            )),
            _ => Ok(&*self.state.log),
        }
    }

    /// The log, for reading a topic's description: any scope on the topic will do.
    pub fn topic_viewer(&self, topic: &str) -> Result<&dyn EventLog, ApiError> {
        if self.sees_topic(topic) {
            Ok(&*self.state.log)
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("the token has no scope on topic {}", quoted(topic)),
            ))
        }
    }

    /// Topics the caller may see: those any of its scopes match.
    pub async fn visible_topics(&self) -> Result<Vec<TopicDescription>, LogError> {
        let mut topics = self.state.log.list_topics().await?;
        topics.retain(|topic| self.sees_topic(topic.name.as_str()));
        Ok(topics)
    }

    fn sees_topic(&self, topic: &str) -> bool {
        self.claims
            .as_ref()
            .is_none_or(|claims| claims.scopes.can_see_topic(topic))
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Caller, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(request))
    }
}

fn authenticate(request: &HttpRequest) -> Result<Caller, ApiError> {
    let state = request
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal("application state missing".into()))?;
    let claims = match &state.verifier {
        None => None,
        Some(verifier) => {
            let token = bearer_token(request)?;
            Some(verifier.verify(&token).map_err(ApiError::Unauthorized)?)
        }
    };
    Ok(Caller { state, claims })
}

/// The token from `Authorization: Bearer`, else from `?access_token=` (for browsers'
/// WebSocket and EventSource, which cannot set headers).
fn bearer_token(request: &HttpRequest) -> Result<String, ApiError> {
    if let Some(value) = request.headers().get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| {
            ApiError::Unauthorized(AuthError::invalid("Authorization header is not ASCII"))
        })?;
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(ApiError::Unauthorized(AuthError::invalid(
                "Authorization must be `Bearer <jwt>`",
            )));
        }
        return Ok(token.trim().to_owned());
    }
    // Parsed as pairs, not into a struct: a repeated `access_token` must be refused, not
    // resolved by whichever copy a parser happens to keep.
    let pairs = web::Query::<Vec<(String, String)>>::from_query(request.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default();
    let mut tokens = pairs
        .into_iter()
        .filter(|(name, _)| name == "access_token")
        .map(|(_, token)| token);
    match (tokens.next(), tokens.next()) {
        (Some(_), Some(_)) => Err(ApiError::Unauthorized(AuthError::invalid(
            "`access_token` appears more than once in the query string; send one token",
        ))),
        (Some(token), None) if !token.is_empty() => Ok(token),
        (Some(_), None) => Err(ApiError::Unauthorized(AuthError::invalid(
            "`access_token` is empty",
        ))),
        (None, _) => Err(ApiError::Unauthorized(AuthError::Missing)),
    }
}
