//! The one publish path, for HTTP and WebSocket alike: the request's limits, its
//! idempotency key, the partition of every record, the append, and the metrics.

use super::Gateway;
use super::caller::Publisher;
use super::error::{ErrorCode, GatewayError, publish_error_code};
use crate::log::{AppendOutcome, AppendRequest, IdempotencyKey};
use crate::records::{self, NewRecord};

impl Gateway {
    /// An `Idempotency-Key` as sent, checked (transports check it before reading a body).
    pub fn idempotency_key(&self, raw: &[u8]) -> Result<String, GatewayError> {
        records::idempotency_key(raw, &self.limits)
            .map_err(|err| GatewayError::new(ErrorCode::InvalidIdempotencyKey, err.to_string()))
    }
}

impl Publisher<'_> {
    /// Publishes one request's records, all or none; answers after the commit. `label`
    /// names a record in errors the way the transport numbers them (`records[3]`,
    /// `line 4`).
    pub async fn publish(
        &self,
        records: Vec<NewRecord>,
        idempotency_key: Option<String>,
        label: impl Fn(usize) -> String,
    ) -> Result<AppendOutcome, GatewayError> {
        records::validate(&records, &self.gateway.limits).map_err(|err| {
            let message = match err.record_index() {
                Some(index) => format!("{}: {err}", label(index)),
                None => err.to_string(),
            };
            GatewayError::new(publish_error_code(&err), message)
        })?;
        let log = &self.gateway.log;
        let meta = log.topic_meta(self.topic).await?;
        let idempotency = idempotency_key.map(|key| IdempotencyKey {
            digest: records::request_digest(&records),
            key,
        });
        let count = records.len();
        let bytes = records.iter().map(NewRecord::payload_len).sum();
        self.gateway.quotas.charge_publish(self.principal, bytes)?;
        let records = self.gateway.partitioner.place(self.topic, &meta, records)?;
        let outcome = log
            .append(
                self.topic,
                AppendRequest {
                    records,
                    idempotency,
                },
            )
            .await?;
        if !outcome.replayed {
            self.gateway
                .metrics
                .traffic
                .published(self.topic.as_str(), count, bytes);
        }
        Ok(outcome)
    }
}
