//! The [`Caller`] of a request: its token from `Authorization: Bearer`, else from
//! `?access_token=` (for browsers' WebSocket and EventSource, which cannot set headers),
//! verified by the gateway.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};

use crate::auth::AuthError;
use crate::gateway::{Caller, Gateway, GatewayError};

impl FromRequest for Caller {
    type Error = GatewayError;
    type Future = Ready<Result<Caller, GatewayError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(request))
    }
}

/// The caller of a request that may carry no token yet (a WebSocket that will send `auth`
/// first): `Ok(None)` then, an error for a token that does not verify.
pub fn caller_if_any(request: &HttpRequest) -> Result<Option<Caller>, GatewayError> {
    match authenticate(request) {
        Ok(caller) => Ok(Some(caller)),
        Err(GatewayError::Unauthorized(AuthError::Missing)) => Ok(None),
        Err(err) => Err(err),
    }
}

pub fn gateway(request: &HttpRequest) -> Result<std::sync::Arc<Gateway>, GatewayError> {
    request
        .app_data::<web::Data<Gateway>>()
        .map(|data| data.clone().into_inner())
        .ok_or_else(|| GatewayError::Internal("application state missing".into()))
}

fn authenticate(request: &HttpRequest) -> Result<Caller, GatewayError> {
    let gateway = gateway(request)?;
    // With authentication off, whatever the request carries is not even read.
    let token = match gateway.auth_required() {
        true => bearer_token(request)?,
        false => None,
    };
    let peer = request.peer_addr().map(|addr| addr.ip());
    let caller = Caller::authenticate(gateway, token.as_deref(), peer)?;
    caller.charge_request()?;
    Ok(caller)
}

/// The token of `Authorization: Bearer`; `None` when the request has no such header.
pub fn header_token(request: &HttpRequest) -> Result<Option<&str>, GatewayError> {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| {
        GatewayError::Unauthorized(AuthError::invalid("Authorization header is not ASCII"))
    })?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(GatewayError::Unauthorized(AuthError::invalid(
            "Authorization must be `Bearer <jwt>`",
        )));
    }
    Ok(Some(token.trim()))
}

/// The token from `Authorization: Bearer`, else from `?access_token=`; `None` when the
/// request carries neither.
fn bearer_token(request: &HttpRequest) -> Result<Option<String>, GatewayError> {
    if let Some(token) = header_token(request)? {
        return Ok(Some(token.to_owned()));
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
        (Some(_), Some(_)) => Err(GatewayError::Unauthorized(AuthError::invalid(
            "`access_token` appears more than once in the query string; send one token",
        ))),
        (Some(token), None) if !token.is_empty() => Ok(Some(token)),
        (Some(_), None) => Err(GatewayError::Unauthorized(AuthError::invalid(
            "`access_token` is empty",
        ))),
        (None, _) => Ok(None),
    }
}
