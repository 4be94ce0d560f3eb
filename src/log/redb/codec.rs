//! The on-disk encoding of a record batch (one redb value per batch).
//!
//! ```text
//! header (21 bytes, fixed so retention can read it without decoding records):
//!   u8      format version (2)
//!   u32 LE  record count
//!   i64 LE  base timestamp (ms since the epoch)
//!   i64 LE  newest timestamp of the batch (what time-based retention compares)
//! each record:
//!   varint  timestamp delta from the base (zigzag i64)
//!   varint  key length + 1, 0 for a null key; then the key's UTF-8 bytes
//!   varint  value length; then the value's JSON text exactly as received
//!   varint  header count; then per header: varint len, name, varint len, value
//! ```
//!
//! Values are kept as the producer's JSON text so a read never parses JSON.
//!
//! Version 1 batches (written before retention existed) have a 13-byte header without the
//! newest timestamp; they decode as before, and [`summary`] finds their newest timestamp
//! by decoding the records.

use integer_encoding::VarInt;

use crate::log::LogError;

const FORMAT_VERSION: u8 = 2;
const HEADER_LEN: usize = 21;
const V1_HEADER_LEN: usize = 13;

/// What retention needs to know about a stored batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSummary {
    pub record_count: u32,
    pub newest_timestamp: i64,
}

/// A record borrowed out of an encoded batch.
#[derive(Debug, PartialEq, Eq)]
pub struct DecodedRecord<'a> {
    pub timestamp: i64,
    pub key: Option<&'a str>,
    pub value: &'a str,
    pub headers: Vec<(&'a str, &'a str)>,
}

/// Appends records to one batch buffer.
pub struct BatchBuilder {
    buf: Vec<u8>,
    count: u32,
    base_timestamp: i64,
    newest_timestamp: i64,
}

impl BatchBuilder {
    pub fn new(base_timestamp: i64) -> BatchBuilder {
        let mut buf = Vec::with_capacity(256);
        buf.push(FORMAT_VERSION);
        buf.extend_from_slice(&0u32.to_le_bytes());
        buf.extend_from_slice(&base_timestamp.to_le_bytes());
        buf.extend_from_slice(&base_timestamp.to_le_bytes());
        BatchBuilder {
            buf,
            count: 0,
            base_timestamp,
            newest_timestamp: base_timestamp,
        }
    }

    pub fn push(
        &mut self,
        timestamp: i64,
        key: Option<&str>,
        value: &str,
        headers: &[(String, String)],
    ) {
        put_varint(&mut self.buf, timestamp.wrapping_sub(self.base_timestamp));
        self.newest_timestamp = self.newest_timestamp.max(timestamp);
        match key {
            None => put_varint(&mut self.buf, 0u64),
            Some(key) => {
                put_varint(&mut self.buf, key.len() as u64 + 1);
                self.buf.extend_from_slice(key.as_bytes());
            }
        }
        put_bytes(&mut self.buf, value.as_bytes());
        put_varint(&mut self.buf, headers.len() as u64);
        for (name, value) in headers {
            put_bytes(&mut self.buf, name.as_bytes());
            put_bytes(&mut self.buf, value.as_bytes());
        }
        self.count += 1;
    }

    /// The newest timestamp pushed so far (the base timestamp before any).
    pub fn newest_timestamp(&self) -> i64 {
        self.newest_timestamp
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.buf[1..5].copy_from_slice(&self.count.to_le_bytes());
        self.buf[13..21].copy_from_slice(&self.newest_timestamp.to_le_bytes());
        self.buf
    }
}

fn put_varint<V: VarInt>(buf: &mut Vec<u8>, value: V) {
    let mut scratch = [0u8; 10];
    let n = value.encode_var(&mut scratch);
    buf.extend_from_slice(&scratch[..n]);
}

fn put_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

/// The fixed header: record count, base timestamp, and the newest timestamp when the
/// format stores it; the rest of the batch.
struct Header<'a> {
    count: u32,
    base_timestamp: i64,
    newest_timestamp: Option<i64>,
    records: &'a [u8],
}

fn header(batch: &[u8]) -> Result<Header<'_>, LogError> {
    let header_len = match batch.first() {
        Some(&FORMAT_VERSION) => HEADER_LEN,
        Some(1) => V1_HEADER_LEN,
        _ => return Err(corrupt()),
    };
    let (header, records) = batch.split_at_checked(header_len).ok_or_else(corrupt)?;
    let le_i64 = |range: std::ops::Range<usize>| {
        header[range]
            .try_into()
            .map(i64::from_le_bytes)
            .map_err(|_| corrupt())
    };
    Ok(Header {
        count: u32::from_le_bytes(header[1..5].try_into().map_err(|_| corrupt())?),
        base_timestamp: le_i64(5..13)?,
        newest_timestamp: (header_len == HEADER_LEN)
            .then(|| le_i64(13..21))
            .transpose()?,
        records,
    })
}

/// The record count and newest timestamp of an encoded batch, from its header alone
/// (version 1 batches are decoded to find the timestamp).
pub fn summary(batch: &[u8]) -> Result<BatchSummary, LogError> {
    let header = header(batch)?;
    let newest_timestamp = match header.newest_timestamp {
        Some(newest) => newest,
        None => decode(batch)?
            .iter()
            .map(|record| record.timestamp)
            .fold(header.base_timestamp, i64::max),
    };
    Ok(BatchSummary {
        record_count: header.count,
        newest_timestamp,
    })
}

/// Decodes every record of a batch, in offset order.
pub fn decode(batch: &[u8]) -> Result<Vec<DecodedRecord<'_>>, LogError> {
    let Header {
        count,
        base_timestamp,
        records: rest,
        ..
    } = header(batch)?;
    let mut cursor = Cursor { rest };
    // The count comes from disk, so cap the preallocation by what the bytes could hold.
    let mut records = Vec::with_capacity((count as usize).min(cursor.rest.len() / 3 + 1));
    for _ in 0..count {
        let timestamp = base_timestamp.wrapping_add(cursor.varint::<i64>()?);
        let key = match cursor.varint::<u64>()? {
            0 => None,
            len_plus_one => Some(cursor.str(len_plus_one - 1)?),
        };
        let value_len = cursor.varint::<u64>()?;
        let value = cursor.str(value_len)?;
        let header_count = cursor.varint::<u64>()?;
        let mut headers = Vec::with_capacity((header_count as usize).min(cursor.rest.len() / 2));
        for _ in 0..header_count {
            let name_len = cursor.varint::<u64>()?;
            let name = cursor.str(name_len)?;
            let value_len = cursor.varint::<u64>()?;
            headers.push((name, cursor.str(value_len)?));
        }
        records.push(DecodedRecord {
            timestamp,
            key,
            value,
            headers,
        });
    }
    if !cursor.rest.is_empty() {
        return Err(corrupt());
    }
    Ok(records)
}

struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn varint<V: VarInt>(&mut self) -> Result<V, LogError> {
        let (value, used) = V::decode_var(self.rest).ok_or_else(corrupt)?;
        self.rest = &self.rest[used..];
        Ok(value)
    }

    fn str(&mut self, len: u64) -> Result<&'a str, LogError> {
        let len = usize::try_from(len).map_err(|_| corrupt())?;
        if len > self.rest.len() {
            return Err(corrupt());
        }
        let (bytes, rest) = self.rest.split_at(len);
        self.rest = rest;
        std::str::from_utf8(bytes).map_err(|_| corrupt())
    }
}

fn corrupt() -> LogError {
    LogError::corrupt("record batch does not decode")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    struct Input {
        timestamp: i64,
        key: Option<String>,
        value: String,
        headers: Vec<(String, String)>,
    }

    fn input() -> impl Strategy<Value = Input> {
        (
            any::<i64>(),
            proptest::option::of(".{0,40}"),
            ".{0,200}",
            proptest::collection::vec((".{0,10}", ".{0,20}"), 0..4),
        )
            .prop_map(|(timestamp, key, value, headers)| Input {
                timestamp,
                key,
                value,
                headers,
            })
    }

    proptest! {
        #[test]
        fn batches_round_trip(base in any::<i64>(), inputs in proptest::collection::vec(input(), 0..20)) {
            let mut builder = BatchBuilder::new(base);
            for r in &inputs {
                builder.push(r.timestamp, r.key.as_deref(), &r.value, &r.headers);
            }
            let bytes = builder.finish();
            let summary = summary(&bytes)?;
            prop_assert_eq!(summary.record_count as usize, inputs.len());
            let newest = inputs.iter().map(|r| r.timestamp).fold(base, i64::max);
            prop_assert_eq!(summary.newest_timestamp, newest);
            let decoded = decode(&bytes)?;
            prop_assert_eq!(decoded.len(), inputs.len());
            for (d, r) in decoded.iter().zip(&inputs) {
                prop_assert_eq!(d.timestamp, r.timestamp);
                prop_assert_eq!(d.key, r.key.as_deref());
                prop_assert_eq!(d.value, r.value.as_str());
                let headers: Vec<(&str, &str)> =
                    r.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                prop_assert_eq!(&d.headers, &headers);
            }
        }

        #[test]
        fn version_1_batches_still_decode(base in any::<i64>(), inputs in proptest::collection::vec(input(), 1..8)) {
            let mut builder = BatchBuilder::new(base);
            for r in &inputs {
                builder.push(r.timestamp, r.key.as_deref(), &r.value, &r.headers);
            }
            let current = builder.finish();
            // The version 1 layout: the same bytes without the newest timestamp.
            let mut old = vec![1];
            old.extend_from_slice(&current[1..13]);
            old.extend_from_slice(&current[21..]);
            prop_assert_eq!(decode(&old)?, decode(&current)?);
            prop_assert_eq!(summary(&old)?, summary(&current)?);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn truncated_batches_are_rejected(inputs in proptest::collection::vec(input(), 1..5), cut in 1usize..50) {
            let mut builder = BatchBuilder::new(0);
            for r in &inputs {
                builder.push(r.timestamp, r.key.as_deref(), &r.value, &r.headers);
            }
            let bytes = builder.finish();
            let keep = bytes.len().saturating_sub(cut);
            prop_assert!(decode(&bytes[..keep]).is_err());
        }
    }
}
