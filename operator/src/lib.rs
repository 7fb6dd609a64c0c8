//! The `Connector` custom resource (group `runnel.dev`, version `v1alpha1`) and the operator
//! that reconciles each Connector into a ConfigMap holding its connect.yml and a Deployment
//! running its image.
//!
//! The CRD YAML in `crds/connector.yaml` is generated from these types by the `crdgen`
//! binary; a test fails when the file and the types drift apart.

pub mod controller;
pub mod crd;
pub mod metrics;
pub mod render;

pub use crd::{Connector, ConnectorSpec, ConnectorStatus};
