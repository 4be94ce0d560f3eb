//! `GET /v1/cluster`: the nodes holding the log, the controller, and the partitions
//! whose in-sync replicas are fewer than their replicas.

use actix_web::{HttpResponse, get};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::gateway::{Caller, GatewayError};
use crate::log::ClusterView;

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ClusterNode {
    id: i32,
    /// `host:port`: a Kafka broker's advertised listener; on the embedded log, this
    /// server's own listening address.
    address: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct UnderReplicatedPartition {
    topic: String,
    partition: u32,
    #[schema(required = true)]
    leader: Option<i32>,
    replicas: Vec<i32>,
    isr: Vec<i32>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ClusterDetails {
    /// Sorted by id. On the embedded log, one node with id 0.
    nodes: Vec<ClusterNode>,
    /// Node id of the active controller; null if the cluster names none.
    #[schema(required = true)]
    controller: Option<i32>,
    /// Partitions of the topics the token sees whose ISR is short of their replicas,
    /// by topic and partition.
    under_replicated: Vec<UnderReplicatedPartition>,
}

impl From<ClusterView> for ClusterDetails {
    fn from(view: ClusterView) -> Self {
        ClusterDetails {
            nodes: view
                .nodes
                .into_iter()
                .map(|node| ClusterNode {
                    id: node.id,
                    address: node.address.unwrap_or_default(),
                })
                .collect(),
            controller: view.controller,
            under_replicated: view
                .partitions
                .into_iter()
                .filter(|(_, _, replicas)| replicas.is_under_replicated())
                .map(|(topic, partition, replicas)| UnderReplicatedPartition {
                    topic: topic.to_string(),
                    partition: partition.get(),
                    leader: replicas.leader,
                    replicas: replicas.replicas,
                    isr: replicas.isr,
                })
                .collect(),
        }
    }
}

/// The cluster: its nodes, the controller, and under-replicated partitions (from the
/// backend's metadata, cached for a second). Any valid token; partitions of topics the
/// token has no scope on are left out.
#[utoipa::path(
    tag = "operations",
    responses((status = 200, description = "The cluster as its metadata shows it", body = ClusterDetails))
)]
#[get("/v1/cluster")]
pub async fn cluster(caller: Caller) -> Result<HttpResponse, GatewayError> {
    Ok(HttpResponse::Ok().json(ClusterDetails::from(caller.cluster().await?)))
}
