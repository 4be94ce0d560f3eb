//! Kafka records as the API shows them. Records tidegate wrote hold the producer's JSON
//! text and UTF-8 keys and headers; other Kafka clients write any bytes, and every one of
//! their records is delivered, never dropped and never a 500: a value that is JSON (as
//! publish would accept it) is spliced verbatim, other UTF-8 text becomes a JSON string
//! with `value_encoding: "text"`, other bytes base64 with `value_encoding: "base64"`; a key
//! that is not UTF-8 is base64 with `key_encoding`, and a header value that is not UTF-8
//! is base64 and named in `headers_base64`. A null value is JSON `null`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rdkafka::Message;
use rdkafka::message::{Headers, Timestamp};
use serde_json::value::RawValue;

use crate::log::{Encoding, Offset, PartitionId, StoredRecord};

/// The record a consumed message stands for.
pub(super) fn record(message: &impl Message, max_value_depth: usize) -> StoredRecord {
    let (key, key_encoding) = match message.key() {
        None => (None, None),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => (Some(text.to_owned()), None),
            Err(_) => (Some(STANDARD.encode(bytes)), Some(Encoding::Base64)),
        },
    };
    let (value, value_encoding) = value(message.payload(), max_value_depth);
    let mut headers = Vec::new();
    let mut headers_base64 = Vec::new();
    if let Some(all) = message.headers() {
        for header in all.iter() {
            let value = match header.value {
                None => String::new(),
                Some(bytes) => match std::str::from_utf8(bytes) {
                    Ok(text) => text.to_owned(),
                    Err(_) => {
                        headers_base64.push(header.key.to_owned());
                        STANDARD.encode(bytes)
                    }
                },
            };
            headers.push((header.key.to_owned(), value));
        }
    }
    StoredRecord {
        partition: PartitionId::new(u32::try_from(message.partition()).unwrap_or_default()),
        offset: Offset::new(u64::try_from(message.offset()).unwrap_or_default()),
        timestamp: match message.timestamp() {
            Timestamp::CreateTime(ms) | Timestamp::LogAppendTime(ms) => ms,
            Timestamp::NotAvailable => 0,
        },
        key,
        key_encoding,
        value,
        value_encoding,
        headers,
        headers_base64,
    }
}

/// A value's JSON text to splice in, and how it encodes what was stored.
fn value(payload: Option<&[u8]>, max_depth: usize) -> (Box<str>, Option<Encoding>) {
    let Some(bytes) = payload else {
        return ("null".into(), None);
    };
    match std::str::from_utf8(bytes) {
        Ok(text) => match serde_json::from_str::<&RawValue>(text) {
            // The same test publish applies: consumers' parsers read whatever passes.
            Ok(raw) if crate::json::value::scan(raw.get(), max_depth).is_ok() => {
                (raw.get().into(), None)
            }
            _ => (json_string(text), Some(Encoding::Text)),
        },
        Err(_) => (json_string(&STANDARD.encode(bytes)), Some(Encoding::Base64)),
    }
}

fn json_string(text: &str) -> Box<str> {
    serde_json::to_string(text).unwrap_or_default().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};

    fn message(key: Option<&[u8]>, payload: Option<&[u8]>, headers: OwnedHeaders) -> OwnedMessage {
        OwnedMessage::new(
            payload.map(<[u8]>::to_vec),
            key.map(<[u8]>::to_vec),
            "t".into(),
            Timestamp::LogAppendTime(1_700_000_000_000),
            2,
            41,
            Some(headers),
        )
    }

    #[test]
    fn json_is_spliced_and_other_bytes_are_encoded() {
        type Case<'a> = (Option<&'a [u8]>, &'a str, Option<Encoding>);
        let cases: [Case<'_>; 7] = [
            (Some(br#" {"a": [1, 2.50]} "#), r#"{"a": [1, 2.50]}"#, None),
            (Some(b"1e400"), "1e400", None),
            (Some(b"plain text"), r#""plain text""#, Some(Encoding::Text)),
            (Some(b""), r#""""#, Some(Encoding::Text)),
            (Some(b"[[[1]]]"), r#""[[[1]]]""#, Some(Encoding::Text)),
            (
                Some(&[0xff, 0x00, 0x01]),
                r#""/wAB""#,
                Some(Encoding::Base64),
            ),
            (None, "null", None),
        ];
        for (payload, spliced, encoding) in cases {
            let record = record(&message(None, payload, OwnedHeaders::new()), 2);
            assert_eq!(
                (&*record.value, record.value_encoding),
                (spliced, encoding),
                "{payload:?}"
            );
            serde_json::from_str::<&RawValue>(&record.value).expect("valid JSON either way");
        }
    }

    #[test]
    fn keys_and_headers_that_are_not_text_are_base64() {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "text",
                value: Some("v"),
            })
            .insert(Header {
                key: "bytes",
                value: Some(&[0xffu8, 0xfe][..]),
            })
            .insert(Header::<&[u8]> {
                key: "none",
                value: None,
            });
        let record = record(&message(Some(&[0xff]), Some(b"1"), headers), 64);
        assert_eq!(record.key.as_deref(), Some("/w=="));
        assert_eq!(record.key_encoding, Some(Encoding::Base64));
        assert_eq!(
            record.headers,
            [
                ("text".to_owned(), "v".to_owned()),
                ("bytes".to_owned(), "//4=".to_owned()),
                ("none".to_owned(), String::new())
            ]
        );
        assert_eq!(record.headers_base64, ["bytes"]);
        assert_eq!((record.partition.get(), record.offset.get()), (2, 41));
        assert_eq!(record.timestamp, 1_700_000_000_000);
        let text = super::record(
            &message(Some(b"user-1"), Some(b"1"), OwnedHeaders::new()),
            64,
        );
        assert_eq!(
            (text.key.as_deref(), text.key_encoding),
            (Some("user-1"), None)
        );
    }
}
