//! The `Connector` resource. Its spec holds what a connect.yml holds, plus how to run it on
//! Kubernetes; field docs are what `kubectl explain connector.spec` prints.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, SecretKeySelector};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A connector that moves records between an outside system and a hub topic: an
/// http-source, mqtt-sink and so on, run by the operator as a Deployment.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "runnel.dev",
    version = "v1alpha1",
    kind = "Connector",
    namespaced,
    status = "ConnectorStatus",
    shortname = "conn",
    category = "runnel",
    doc = "A Runnel connector: a source or sink between an outside system and a hub topic, run by the runnel operator as a Deployment.",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"Topic","type":"string","jsonPath":".spec.topic"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorSpec {
    #[serde(rename = "type")]
    #[schemars(schema_with = "connector_type")]
    pub kind: String,
    /// The connector's version, which picks its image tag. Default: the operator's own
    /// version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The hub topic the connector writes (a source) or reads (a sink).
    pub topic: String,
    /// Create the topic when it does not exist. Default false: a missing topic is an error.
    #[serde(default)]
    pub create_topic: bool,
    /// The connector's own settings: what the connector's section of a connect.yml holds
    /// (for an http-source, endpoint, interval and so on). Values may use
    /// `${{ secrets.NAME }}` for a secret listed in `secrets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub config: Option<serde_json::Value>,
    /// SmartModules applied to every record, in order (the connect.yml `transforms`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transforms: Vec<Transform>,
    /// Producer settings of a source: linger, batch-size, compression (the connect.yml
    /// `meta.producer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub producer: Option<serde_json::Value>,
    /// Consumer settings of a sink: id, partition, offset (the connect.yml
    /// `meta.consumer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub consumer: Option<serde_json::Value>,
    /// Secrets the connector uses, each read from a Kubernetes Secret. Never plain values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretRef>,
    /// The container image to run instead of `<registry>/runnel-<type>:<version>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// CPU and memory requests and limits of the connector's container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The hub URL for this connector (local:, kafka://HOST:PORT, nats://HOST:PORT),
    /// instead of the operator's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub: Option<String>,
    /// running (the default) or stopped. A stopped connector keeps its Deployment, scaled
    /// to zero.
    #[serde(default)]
    pub state: State,
}

/// Whether the connector should run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum State {
    #[default]
    Running,
    Stopped,
}

/// One SmartModule of the transforms chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Transform {
    /// The module: NAME@VERSION, looked up in the connector's module directory.
    pub uses: String,
    /// Parameters passed to the module's init.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub with: BTreeMap<String, String>,
}

/// A secret the connector reads, taken from a key of a Kubernetes Secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// The name the connector's settings use, as in `${{ secrets.NAME }}`.
    pub name: String,
    /// The Secret and key holding the value.
    pub secret_key_ref: SecretKeySelector,
}

/// What the operator last saw of the connector.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorStatus {
    /// Pending, Running, Stopped or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Ready and Reconciled conditions, with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Replicas of the connector that are ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// What is going on, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Where a connector is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// Created, not ready yet.
    Pending,
    /// Its Deployment has a ready replica.
    Running,
    /// Scaled to zero because `state` is stopped.
    Stopped,
    /// The spec cannot run; the message says why.
    Failed,
}

/// `spec.type`, described with the catalogue's types (the operator checks it, so a type
/// it does not know is a Failed Connector with the list, not a refused request).
fn connector_type(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let kinds: Vec<&str> = runnel_catalog::CATALOG.iter().map(|e| e.kind).collect();
    schemars::json_schema!({
        "type": "string",
        "description": format!(
            "The connector type, one of those `runnel connector types` lists: {}.",
            kinds.join(", ")
        )
    })
}

/// Any JSON object, kept as given (`x-kubernetes-preserve-unknown-fields`).
fn free_form(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}
