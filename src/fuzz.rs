//! What the fuzz targets of `fuzz/` run (`cargo +nightly fuzz run <target>`), one function
//! per target over arbitrary bytes: everything that reads what a client or the disk sent.
//! Each must return (never panic, hang or grow without bound) whatever the bytes, and
//! checks what must hold of what it accepts. The corpora are replayed by a unit test
//! below on every `cargo test`, without libFuzzer.

use std::sync::LazyLock;

use crate::auth::{Action, KeySource, Scopes, Verifier, VerifierConfig};
use crate::config::{Config, Limits};
use crate::http::{BodyDecoder, BodyFormat, parse_records};
use crate::push::Positions;
use crate::ws::frames::{FrameDecoder, Incoming};
use crate::ws::protocol::ClientMessage;

/// The server's default limits, as `tidegate serve` starts with.
static LIMITS: LazyLock<Limits> = LazyLock::new(|| {
    Config::from_args(Vec::<String>::new())
        .expect("the defaults parse")
        .limits
});

/// The largest message the fuzzed WebSocket reader takes (small, so that limits are hit).
const MAX_MESSAGE_BYTES: usize = 4096;

/// Bytes a client sends on a WebSocket, fed in two pieces (the first byte says where they
/// are cut): frames, fragments, masks, limits, then each text message as a protocol op.
pub fn websocket_frames(data: &[u8]) {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let (first, second) = rest.split_at((cut as usize).min(rest.len()));
    let mut frames = FrameDecoder::new(MAX_MESSAGE_BYTES);
    for piece in [first, second] {
        frames.feed(piece);
        while let Some(message) = frames.next_message() {
            match message {
                Ok(Incoming::Text(text)) => {
                    assert!(text.len() <= MAX_MESSAGE_BYTES);
                    let _ = ClientMessage::parse(&text);
                }
                Ok(_) => {}
                // The session closes the connection at the first error.
                Err(_) => return,
            }
        }
    }
}

/// A WebSocket text message as a protocol op; an op that parses echoes at most a bounded
/// `req`.
pub fn websocket_message(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ClientMessage::parse(text);
    }
}

/// A publish body, JSON or NDJSON (the first byte chooses), parsed and validated as the
/// publish route does.
pub fn publish_body(data: &[u8]) {
    let Some((&choice, body)) = data.split_first() else {
        return;
    };
    let format = match choice % 2 {
        0 => BodyFormat::Json,
        _ => BodyFormat::NdJson,
    };
    if let Ok((records, _)) = parse_records(format, body) {
        let _ = crate::records::validate(&records, &LIMITS);
    }
}

/// A gzip body, in two pieces, never decompressed past its limit.
pub fn gzip_body(data: &[u8]) {
    const LIMIT: usize = 64 << 10;
    let (first, second) = data.split_at(data.len() / 2);
    let mut body = BodyDecoder::new(true, LIMIT);
    if body.feed(first).is_ok()
        && body.feed(second).is_ok()
        && let Ok(decoded) = body.finish()
    {
        assert!(decoded.len() <= LIMIT);
    }
}

/// A token's scope claim; what parses answers questions about itself.
pub fn scope(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(scopes) = Scopes::parse(text) {
        for resource in ["", "orders", "orders.eu", "a-b_c.d"] {
            for action in [
                Action::Publish,
                Action::Subscribe,
                Action::Group,
                Action::Admin,
            ] {
                let _ = scopes.allows(action, resource);
            }
            let _ = scopes.can_see_topic(resource);
        }
    }
}

/// A resume cursor (SSE `Last-Event-ID`, WebSocket `from.cursor`): what parses prints
/// back to a cursor that parses to the same positions.
pub fn cursor(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(positions) = Positions::parse_cursor(text) {
        let again = Positions::parse_cursor(&positions.cursor()).expect("a printed cursor parses");
        assert_eq!(again, positions);
    }
}

/// A stored batch as read back from disk: damaged bytes are an error, never a panic.
pub fn batch(data: &[u8]) {
    let _ = crate::log::redb::codec::summary(data);
    let _ = crate::log::redb::codec::decode(data);
}

/// The HS256 secret the fuzzed verifier checks with.
const SECRET: &[u8] = b"tidegate-fuzz-secret-0123456789abcdef";

static VERIFIER: LazyLock<Verifier> = LazyLock::new(|| {
    Verifier::new(VerifierConfig::new(KeySource::Secret(SECRET.to_vec()))).expect("a verifier")
});

/// A bearer token: as sent (header parsing, base64, algorithms), and with the input's
/// header and claims JSON correctly signed (claims parsing, scopes, expiry), split at the
/// first 0xFF byte.
pub fn jwt(data: &[u8]) {
    if let Ok(token) = std::str::from_utf8(data) {
        let _ = VERIFIER.verify(token);
    }
    let Some(split) = data.iter().position(|&b| b == 0xFF) else {
        return;
    };
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let message = format!(
        "{}.{}",
        b64.encode(&data[..split]),
        b64.encode(&data[split + 1..])
    );
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET);
    if let Ok(signature) =
        jsonwebtoken::crypto::sign(message.as_bytes(), &key, jsonwebtoken::Algorithm::HS256)
    {
        let _ = VERIFIER.verify(&format!("{message}.{signature}"));
    }
}

/// One fuzz target: it may reject its input, never panic or hang on it.
pub type Target = fn(&[u8]);

/// Every target by name, as the corpora's directories are named.
pub const TARGETS: &[(&str, Target)] = &[
    ("websocket_frames", websocket_frames),
    ("websocket_message", websocket_message),
    ("publish_body", publish_body),
    ("gzip_body", gzip_body),
    ("scope", scope),
    ("cursor", cursor),
    ("batch", batch),
    ("jwt", jwt),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs every target over its corpus and its recorded crashes (`fuzz/corpus/<target>`,
    /// `fuzz/artifacts/<target>`): what libFuzzer found stays fixed.
    #[test]
    fn the_fuzz_corpora_replay_cleanly() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut replayed = 0;
        for (name, target) in TARGETS {
            let mut inputs = 0;
            for kind in ["corpus", "artifacts"] {
                let Ok(entries) = std::fs::read_dir(root.join(kind).join(name)) else {
                    continue;
                };
                for entry in entries {
                    let path = entry.expect("a corpus entry").path();
                    let data = std::fs::read(&path).expect("a corpus file");
                    target(&data);
                    inputs += 1;
                }
            }
            assert!(inputs > 0, "no corpus for {name}");
            replayed += inputs;
        }
        eprintln!("replayed {replayed} fuzz inputs");
    }
}
