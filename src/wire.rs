//! JSON encoding of stored records, shared by every transport (HTTP fetch and group polls,
//! and the push cache for WebSocket and SSE). Values are spliced in as the producer's JSON
//! text: a read never parses or re-encodes them, which `serde_json` cannot do for text it
//! did not validate itself.

use std::collections::BTreeMap;
use std::io::Write;

use crate::groups::Polled;
use crate::log::{FetchResult, StoredRecord, TopicName};

/// Appends `{"partition","offset","timestamp","key","value","headers"}`, with `"topic"`
/// first when given (group polls read several topics).
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
    out.extend_from_slice(br#","value":"#);
    out.extend_from_slice(record.value.as_bytes());
    out.extend_from_slice(br#","headers":"#);
    let headers: BTreeMap<&str, &str> = record
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let _ = serde_json::to_writer(&mut *out, &headers);
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
        result.next_offset, result.high_watermark, result.log_start_offset
    );
    out
}

/// The body of a group poll: the member, its generation and assignment, and the records
/// of every assigned partition.
pub fn group_poll_response(polled: &Polled) -> Vec<u8> {
    let payload: usize = polled
        .records
        .iter()
        .map(|(_, r)| r.value.len() + 128)
        .sum();
    let mut out = Vec::with_capacity(payload + 256);
    out.extend_from_slice(br#"{"member_id":"#);
    let _ = serde_json::to_writer(&mut out, polled.member.as_str());
    let _ = write!(out, r#","generation":{},"assignment":["#, polled.generation);
    for (i, (topic, partition)) in polled.assignment.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"topic":"#);
        let _ = serde_json::to_writer(&mut out, topic.as_str());
        let _ = write!(out, r#","partition":{partition}}}"#);
    }
    out.extend_from_slice(br#"],"records":["#);
    for (i, (topic, record)) in polled.records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_record(&mut out, Some(topic), record);
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{Offset, PartitionId};

    #[test]
    fn records_are_valid_json_with_values_verbatim() {
        let record = StoredRecord {
            partition: PartitionId::new(2),
            offset: Offset::new(7),
            timestamp: 1_700_000_000_000,
            key: Some("k\"ey\u{e9}".into()),
            value: r#"{"a": [1, 2.50, "x\u00e9"], "b": null}"#.into(),
            headers: vec![("h".into(), "v\n".into())],
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
            high_watermark: Offset::new(9),
            log_start_offset: Offset::ZERO,
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
}
