//! Request bodies, for every handler alike: the content type (415), the encoding (gzip or
//! none, 415 otherwise), the size limit (413, from `Content-Length` before reading a byte,
//! and while reading), the read deadline (408) and JSON errors that name the field (400).
//!
//! Handlers check the caller's scope first and read the body after, so a refused caller
//! never makes us read, decompress or parse anything (and a body left unread closes the
//! connection: see `connection.rs`).

use std::io::Write;
use std::time::Duration;

use actix_web::HttpRequest;
use actix_web::dev::Payload;
use actix_web::http::header;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::config::Limits;
use crate::gateway::{ErrorCode, GatewayError};

/// How a body is encoded, from its `Content-Type` (parameters such as charset ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    /// One JSON document per line (`application/x-ndjson`, also `ndjson` and `jsonl`).
    NdJson,
}

impl BodyFormat {
    /// The format of `request`, if it is one of `accepted`.
    pub fn of(request: &HttpRequest, accepted: &[BodyFormat]) -> Result<BodyFormat, GatewayError> {
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
            GatewayError::new(
                ErrorCode::UnsupportedMediaType,
                format!("Content-Type must be {}", names.join(" or ")),
            )
        })
    }
}

/// Whether the body arrives compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
}

impl Encoding {
    fn of(request: &HttpRequest) -> Result<Encoding, GatewayError> {
        let mut encoding = Encoding::Identity;
        for value in request.headers().get_all(header::CONTENT_ENCODING) {
            let value = value.to_str().unwrap_or("?");
            for coding in value.split(',').map(str::trim) {
                match coding.to_ascii_lowercase().as_str() {
                    "" | "identity" => {}
                    "gzip" | "x-gzip" if encoding == Encoding::Identity => {
                        encoding = Encoding::Gzip
                    }
                    _ => {
                        return Err(GatewayError::new(
                            ErrorCode::UnsupportedMediaType,
                            format!(
                                "Content-Encoding {} is not supported: send the body as is, or gzip it once",
                                crate::echo::quoted(value)
                            ),
                        ));
                    }
                }
            }
        }
        Ok(encoding)
    }
}

/// Reads the whole body: refuses with 413 from `Content-Length` before reading, and as
/// soon as the (decompressed) body passes `max_body_bytes`; with 408 when it has not
/// arrived within the body timeout.
pub async fn read(
    request: &HttpRequest,
    payload: Payload,
    limits: &Limits,
) -> Result<Vec<u8>, GatewayError> {
    let limit = limits.max_body_bytes;
    let encoding = Encoding::of(request)?;
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|length| length > limit as u64) {
        return Err(too_large(limit));
    }
    let timeout = Duration::from_millis(limits.body_timeout_ms);
    tokio::time::timeout(timeout, collect(payload, encoding, limit))
        .await
        .unwrap_or_else(|_| {
            Err(GatewayError::new(
                ErrorCode::RequestTimeout,
                format!(
                    "the request body did not arrive within {} ms",
                    limits.body_timeout_ms
                ),
            ))
        })
}

async fn collect(
    mut payload: Payload,
    encoding: Encoding,
    limit: usize,
) -> Result<Vec<u8>, GatewayError> {
    let mut body = BodyDecoder::new(encoding == Encoding::Gzip, limit);
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|err| match err {
            actix_web::error::PayloadError::Overflow => too_large(limit),
            err => GatewayError::new(ErrorCode::InvalidBody, format!("reading body: {err}")),
        })?;
        body.feed(&chunk)?;
    }
    body.finish()
}

/// A body as it arrives, decompressed when it is gzip, never past its limit (fuzzed by
/// `crate::fuzz`).
pub struct BodyDecoder {
    gzip: Option<flate2::write::GzDecoder<Bounded>>,
    body: Vec<u8>,
    limit: usize,
}

impl BodyDecoder {
    pub fn new(gzip: bool, limit: usize) -> BodyDecoder {
        BodyDecoder {
            gzip: gzip.then(|| flate2::write::GzDecoder::new(Bounded(Vec::new(), limit))),
            body: Vec::new(),
            limit,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), GatewayError> {
        match &mut self.gzip {
            Some(decoder) => decoder
                .write_all(chunk)
                .map_err(|err| gzip_error(err, self.limit)),
            None if self.body.len() + chunk.len() > self.limit => Err(too_large(self.limit)),
            None => {
                self.body.extend_from_slice(chunk);
                Ok(())
            }
        }
    }

    pub fn finish(self) -> Result<Vec<u8>, GatewayError> {
        match self.gzip {
            Some(decoder) => decoder
                .finish()
                .map(|bounded| bounded.0)
                .map_err(|err| gzip_error(err, self.limit)),
            None => Ok(self.body),
        }
    }
}

/// A writer that refuses to hold more than its limit, so a small compressed body cannot
/// expand into unbounded memory.
pub struct Bounded(Vec<u8>, usize);

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > self.1 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                "decompressed body over the limit",
            ));
        }
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn gzip_error(err: std::io::Error, limit: usize) -> GatewayError {
    if err.kind() == std::io::ErrorKind::FileTooLarge {
        too_large(limit)
    } else {
        GatewayError::new(
            ErrorCode::InvalidBody,
            format!("the body is not valid gzip: {err}"),
        )
    }
}

fn too_large(limit: usize) -> GatewayError {
    GatewayError::new(
        ErrorCode::BodyTooLarge,
        format!("request body exceeds the limit of {limit} bytes"),
    )
}

/// Parses a JSON object, naming the path of the offending field (`records[2].partition: …`).
///
/// Every body of this API is an object. serde would also build a struct from an array of
/// its fields in order (`["orders", 3]`), which no client means; that is refused here.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err("expected a JSON object".into());
    }
    // Tracking the path costs on every field, so only a failed parse is parsed again
    // to say where it failed.
    serde_json::from_slice(bytes).map_err(|plain| {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
            Err(err) => {
                let path = err.path().to_string();
                match known_path(&path) {
                    Some(path) => format!("{path}: {}", err.into_inner()),
                    None => err.into_inner().to_string(),
                }
            }
            Ok(_) => plain.to_string(),
        }
    })
}

/// The path up to its last named segment: a key that failed to parse shows as `?`, and
/// the error is then about the object holding it.
fn known_path(path: &str) -> Option<&str> {
    let known = match path.find('?') {
        Some(unknown) => path[..unknown].trim_end_matches('.'),
        None => path,
    };
    (!known.is_empty() && known != ".").then_some(known)
}

/// A JSON body, read after the caller's scope has been checked.
pub async fn json<T: DeserializeOwned>(
    request: &HttpRequest,
    payload: Payload,
    limits: &Limits,
) -> Result<T, GatewayError> {
    BodyFormat::of(request, &[BodyFormat::Json])?;
    let bytes = read(request, payload, limits).await?;
    parse_json(&bytes).map_err(|err| {
        GatewayError::new(ErrorCode::InvalidBody, format!("invalid JSON body: {err}"))
    })
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
        #[serde(default)]
        tags: std::collections::BTreeMap<String, String>,
    }

    #[test]
    fn errors_name_the_field() {
        let err = parse_json::<Outer>(br#"{"items": [{"n": 1}, {"n": -1}]}"#).unwrap_err();
        assert!(err.starts_with("items[1].n: invalid value"), "{err}");
        let err = parse_json::<Outer>(b"{").unwrap_err();
        assert!(err.contains("EOF"), "{err}");
        for not_an_object in [&b""[..], b"null", b"[[]]", b" 1"] {
            let err = parse_json::<Outer>(not_an_object).unwrap_err();
            assert_eq!(err, "expected a JSON object");
        }
        let err = parse_json::<Outer>(br#"{"items": []} x"#).unwrap_err();
        assert!(err.contains("trailing"), "{err}");
    }

    #[test]
    fn unknown_segments_name_the_enclosing_field() {
        let err =
            parse_json::<Outer>(br#"{"items": [{"n": 1, "tags": {"\ud800": "x"}}]}"#).unwrap_err();
        assert!(err.starts_with("items[0].tags: "), "{err}");
        let err = parse_json::<Outer>(br#"{"\ud800": 1}"#).unwrap_err();
        assert!(!err.contains('?'), "{err}");
        assert_eq!(known_path("?"), None);
        assert_eq!(known_path("a[0].?"), Some("a[0]"));
    }
}
