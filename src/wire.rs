//! JSON encoding of stored records, shared by every transport (HTTP fetch and group polls,
//! and the push cache for WebSocket and SSE). Values are spliced in as the producer's JSON
//! text: a read never parses or re-encodes them, which `serde_json` cannot do for text it
//! did not validate itself.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Deserialize;
use utoipa::ToSchema;

use crate::log::{FetchResult, StoredRecord, TopicName};

/// One record as every transport writes it (`wire::write_record`). This type only describes
/// it (for the API documents); a test reads what `write_record` writes into it, unknown
/// fields refused, so the two cannot drift.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Only the schemas and the agreement test look at the fields.
pub struct RecordJson {
    partition: u32,
    offset: u64,
    /// Milliseconds since the epoch, set by the server (or, on Kafka, the broker) at append.
    timestamp: i64,
    /// The key as sent; base64 when `key_encoding` says so.
    key: Option<String>,
    /// Present only for a key another Kafka client wrote that is not UTF-8: `key` is then
    /// its bytes in base64.
    #[schema(pattern = "^base64$", nullable = false)]
    key_encoding: Option<String>,
    /// The value as published, JSON. A value another Kafka client wrote that is not JSON
    /// is a string: its text (`value_encoding: "text"`) or its bytes in base64
    /// (`value_encoding: "base64"`).
    #[schema(value_type = Value)]
    value: serde_json::Value,
    /// Present only for a value that is not JSON (written by another Kafka client).
    #[schema(pattern = "^(text|base64)$", nullable = false)]
    value_encoding: Option<String>,
    headers: BTreeMap<String, String>,
    /// Present only when a header value another Kafka client wrote is not UTF-8: the names
    /// of the headers whose value is shown in base64.
    #[schema(nullable = false)]
    headers_base64: Option<Vec<String>>,
}

/// Appends `{"partition","offset","timestamp","key","value","headers"}`, with `"topic"`
/// first when given (group polls read several topics), and the encodings of what is not
/// text or JSON when a record holds such bytes.
pub fn write_record(out: &mut Vec<u8>, topic: Option<&TopicName>, record: &StoredRecord) {
    out.push(b'{');
    // Writing to a Vec cannot fail, and strings always serialize.
    if let Some(topic) = topic {
        out.extend_from_slice(br#""topic":"#);
        let _ = serde_json::to_writer(&mut *out, topic.as_str());
        out.push(b',');
    }
    let _ = write!(
        out,
        r#""partition":{},"offset":{},"timestamp":{},"key":"#,
        record.partition, record.offset, record.timestamp
    );
    let _ = serde_json::to_writer(&mut *out, &record.key);
    if let Some(encoding) = record.key_encoding {
        let _ = write!(out, r#","key_encoding":"{}""#, encoding.as_str());
    }
    out.extend_from_slice(br#","value":"#);
    out.extend_from_slice(record.value.as_bytes());
    if let Some(encoding) = record.value_encoding {
        let _ = write!(out, r#","value_encoding":"{}""#, encoding.as_str());
    }
    out.extend_from_slice(br#","headers":"#);
    let headers: BTreeMap<&str, &str> = record
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let _ = serde_json::to_writer(&mut *out, &headers);
    if !record.headers_base64.is_empty() {
        out.extend_from_slice(br#","headers_base64":"#);
        let _ = serde_json::to_writer(&mut *out, &record.headers_base64);
    }
    out.push(b'}');
}

/// Appends a JSON array of records.
pub fn write_records(out: &mut Vec<u8>, records: &[StoredRecord]) {
    out.push(b'[');
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_record(out, None, record);
    }
    out.push(b']');
}

/// The body of `GET …/records`: records plus the partition's bounds.
pub fn fetch_response(result: &FetchResult) -> Vec<u8> {
    let payload: usize = result.records.iter().map(|r| r.value.len() + 96).sum();
    let mut out = Vec::with_capacity(payload + 96);
    out.extend_from_slice(br#"{"records":"#);
    write_records(&mut out, &result.records);
    let _ = write!(
        out,
        r#","next_offset":{},"high_watermark":{},"log_start_offset":{}}}"#,
        result.next_offset, result.bounds.high_watermark, result.bounds.log_start_offset
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{Encoding, Offset, PartitionBounds, PartitionId};

    #[test]
    fn records_are_valid_json_with_values_verbatim() {
        let record = StoredRecord {
            partition: PartitionId::new(2),
            offset: Offset::new(7),
            timestamp: 1_700_000_000_000,
            key: Some("k\"ey\u{e9}".into()),
            key_encoding: None,
            value: r#"{"a": [1, 2.50, "x\u00e9"], "b": null}"#.into(),
            value_encoding: None,
            headers: vec![("h".into(), "v\n".into())],
            headers_base64: Vec::new(),
        };
        let body = fetch_response(&FetchResult {
            records: vec![
                record.clone(),
                StoredRecord {
                    key: None,
                    ..record
                },
            ],
            next_offset: Offset::new(8),
            bounds: PartitionBounds {
                log_start_offset: Offset::ZERO,
                high_watermark: Offset::new(9),
            },
        });
        let text = std::str::from_utf8(&body).unwrap();
        assert!(text.contains(r#""value":{"a": [1, 2.50, "x\u00e9"], "b": null}"#));
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed["records"][0]["key"], "k\"ey\u{e9}");
        assert_eq!(parsed["records"][1]["key"], serde_json::Value::Null);
        assert_eq!(parsed["records"][0]["headers"]["h"], "v\n");
        assert_eq!(parsed["records"][0]["value"]["a"][2], "x\u{e9}");
        assert_eq!(parsed["next_offset"], 8);
        assert_eq!(parsed["high_watermark"], 9);
    }

    /// The schema describes exactly what `write_record` writes: every field, nothing more,
    /// for records tidegate wrote and for the encodings of other clients' bytes.
    #[test]
    fn record_schema_matches_the_bytes_written() {
        let plain = StoredRecord {
            key: Some("k".into()),
            headers: vec![("h".into(), "v".into())],
            ..StoredRecord::sample(3, 41, r#"{"n": [1, 2.5]}"#)
        };
        let foreign = StoredRecord {
            key: Some("/w==".into()),
            key_encoding: Some(Encoding::Base64),
            value: r#""plain text""#.into(),
            value_encoding: Some(Encoding::Text),
            headers_base64: vec!["h".into()],
            ..plain.clone()
        };
        for record in [plain, foreign] {
            let mut out = Vec::new();
            write_record(&mut out, None, &record);
            let parsed: RecordJson = serde_json::from_slice(&out).expect("wire matches schema");
            assert_eq!((parsed.partition, parsed.offset), (3, 41));
            assert_eq!(parsed.timestamp, 1_700_000_000_123);
            assert_eq!(
                parsed.key_encoding.as_deref(),
                record.key_encoding.map(Encoding::as_str)
            );
            assert_eq!(
                parsed.value_encoding.as_deref(),
                record.value_encoding.map(Encoding::as_str)
            );
            assert_eq!(
                parsed.headers_base64.unwrap_or_default(),
                record.headers_base64
            );
        }
    }
}
