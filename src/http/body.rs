//! Request bodies, for every handler alike: the size limit (413), the content type (415)
//! and JSON errors that name the field at fault (400).

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::guard::AppState;

/// How a body is encoded, from its `Content-Type` (parameters such as charset ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    /// One JSON document per line (`application/x-ndjson`, also `ndjson` and `jsonl`).
    NdJson,
}

impl BodyFormat {
    /// The format of `request`, if it is one of `accepted`.
    pub fn of(request: &HttpRequest, accepted: &[BodyFormat]) -> Result<BodyFormat, ApiError> {
        let essence = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        let format = match essence.as_deref() {
            Some("application/json") => Some(BodyFormat::Json),
            Some("application/x-ndjson" | "application/ndjson" | "application/jsonl") => {
                Some(BodyFormat::NdJson)
            }
            _ => None,
        };
        format.filter(|f| accepted.contains(f)).ok_or_else(|| {
            let names: Vec<&str> = accepted
                .iter()
                .map(|f| match f {
                    BodyFormat::Json => "application/json",
                    BodyFormat::NdJson => "application/x-ndjson",
                })
                .collect();
            ApiError::UnsupportedMediaType(format!("Content-Type must be {}", names.join(" or ")))
        })
    }
}

/// Reads the body, refusing with 413 as soon as it passes `limit`.
pub async fn read(mut payload: Payload, limit: usize) -> Result<web::BytesMut, ApiError> {
    let too_large = || {
        ApiError::too_large(
            "body_too_large",
            format!("request body exceeds the limit of {limit} bytes"),
        )
    };
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|err| match err {
            actix_web::error::PayloadError::Overflow => too_large(),
            err => ApiError::bad_request("invalid_body", format!("reading body: {err}")),
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Parses JSON, naming the path of the offending field (`records[2].partition: …`).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    // Tracking the path costs on every field, so only a failed parse is parsed again
    // to say where it failed.
    serde_json::from_slice(bytes).map_err(|plain| {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
            Err(err) if err.path().to_string() != "." => {
                let path = err.path().to_string();
                format!("{path}: {}", err.into_inner())
            }
            _ => plain.to_string(),
        }
    })
}

/// A JSON request body, limited to `--max-body-bytes`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<JsonBody<T>, ApiError>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let format = BodyFormat::of(request, &[BodyFormat::Json]);
        let limit = request
            .app_data::<web::Data<AppState>>()
            .map(|state| state.limits.max_body_bytes);
        let payload = payload.take();
        Box::pin(async move {
            format?;
            let limit =
                limit.ok_or_else(|| ApiError::Internal("application state missing".into()))?;
            let bytes = read(payload, limit).await?;
            parse_json(&bytes).map(JsonBody).map_err(|err| {
                ApiError::bad_request("invalid_body", format!("invalid JSON body: {err}"))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Outer {
        items: Vec<Inner>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Inner {
        n: u32,
    }

    #[test]
    fn errors_name_the_field() {
        let err = parse_json::<Outer>(br#"{"items": [{"n": 1}, {"n": -1}]}"#).unwrap_err();
        assert!(err.starts_with("items[1].n: invalid value"), "{err}");
        let err = parse_json::<Outer>(b"{").unwrap_err();
        assert!(err.contains("EOF"), "{err}");
        let err = parse_json::<Outer>(br#"{"items": []} x"#).unwrap_err();
        assert!(err.contains("trailing"), "{err}");
    }
}
