//! The reconciler: each Connector becomes a ConfigMap and a Deployment, applied server-side
//! under the field manager `runnel-operator` and owned by the Connector (deleting it
//! deletes them); its status follows the Deployment, and phase changes become Events.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use k8s_openapi::{
    api::{apps::v1::Deployment, core::v1::ConfigMap},
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        Controller,
        controller::Action,
        events::{Event, EventType, Recorder, Reporter},
        watcher,
    },
};
use serde_json::json;

use crate::{
    crd::{Connector, ConnectorStatus, Phase, State},
    metrics::Metrics,
    render::{self, Invalid, Settings},
};

/// The field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "runnel-operator";

/// How often a healthy connector is looked at again without a change.
const RESYNC: Duration = Duration::from_secs(300);

/// What the reconciler needs.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
}

impl Context {
    pub fn new(client: Client, settings: Settings, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            metrics,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the Connector has no namespace")]
    NoNamespace,
}

/// Applies what `conn` should own and records what came of it.
pub async fn reconcile(conn: Arc<Connector>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.metrics.reconciles.inc();
    let ns = conn.namespace().ok_or(Error::NoNamespace)?;
    let name = conn.name_any();
    let owner = conn.controller_owner_ref(&());
    let (status, action) = match render::render(&name, &ns, &conn.spec, owner, &ctx.settings) {
        Err(invalid) => {
            tracing::warn!(connector = %name, namespace = %ns, reason = %invalid, "The Connector's spec cannot run.");
            (failed_status(&conn, &invalid), Action::await_change())
        }
        Ok(r) => {
            let apply = PatchParams::apply(FIELD_MANAGER).force();
            let object = render::object_name(&name);
            Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns)
                .patch(&object, &apply, &Patch::Apply(&r.config_map))
                .await?;
            let deployment = Api::<Deployment>::namespaced(ctx.client.clone(), &ns)
                .patch(&object, &apply, &Patch::Apply(&r.deployment))
                .await?;
            (running_status(&conn, &deployment), Action::requeue(RESYNC))
        }
    };
    let before = conn.status.clone().unwrap_or_default();
    if before != status {
        let api = Api::<Connector>::namespaced(ctx.client.clone(), &ns);
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await?;
        if before.phase != status.phase
            && let Some(phase) = status.phase
        {
            publish(&ctx, &conn, phase, status.message.clone()).await;
        }
    }
    Ok(action)
}

/// Events are a courtesy: failing to write one is logged, never a failed reconcile.
async fn publish(ctx: &Context, conn: &Connector, phase: Phase, note: Option<String>) {
    let (type_, reason) = match phase {
        Phase::Failed => (EventType::Warning, "InvalidSpec"),
        Phase::Pending => (EventType::Normal, "Pending"),
        Phase::Running => (EventType::Normal, "Running"),
        Phase::Stopped => (EventType::Normal, "Stopped"),
    };
    let event = Event {
        type_,
        reason: reason.into(),
        note,
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &conn.object_ref(&())).await {
        tracing::warn!(connector = %conn.name_any(), error = %e, "Could not publish an Event.");
    }
}

/// Requeues a failed reconcile; the controller backs off per object on repeated failures.
pub fn error_policy(conn: Arc<Connector>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failures.inc();
    tracing::warn!(connector = %conn.name_any(), error = %error, "Reconcile failed; retrying.");
    Action::requeue(Duration::from_secs(15))
}

fn condition(
    before: &ConnectorStatus,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    // The transition time only moves when the condition's status does.
    let last = before
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(Timestamp::now()));
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: last,
        observed_generation: generation,
    }
}

/// The status of a Connector whose spec cannot run.
pub fn failed_status(conn: &Connector, invalid: &Invalid) -> ConnectorStatus {
    let before = conn.status.clone().unwrap_or_default();
    let generation = conn.meta().generation;
    let message = format!("invalid spec: {invalid}");
    ConnectorStatus {
        phase: Some(Phase::Failed),
        conditions: vec![
            condition(
                &before,
                "Reconciled",
                false,
                "InvalidSpec",
                &message,
                generation,
            ),
            condition(&before, "Ready", false, "InvalidSpec", &message, generation),
        ],
        observed_generation: generation,
        ready_replicas: 0,
        message: Some(message),
    }
}

/// The status of a Connector whose objects were applied, from its Deployment's state.
pub fn running_status(conn: &Connector, deployment: &Deployment) -> ConnectorStatus {
    let before = conn.status.clone().unwrap_or_default();
    let generation = conn.meta().generation;
    let ready = deployment
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    let (phase, ok, reason, message) = match (conn.spec.state, ready) {
        (State::Stopped, 0) => (
            Phase::Stopped,
            false,
            "Stopped",
            "stopped: scaled to zero replicas".to_string(),
        ),
        (State::Stopped, n) => (
            Phase::Stopped,
            false,
            "Stopping",
            format!("stopping: {n} replica(s) still ready"),
        ),
        (State::Running, 0) => (
            Phase::Pending,
            false,
            "NotReady",
            "waiting for the connector's pod to be ready".to_string(),
        ),
        (State::Running, _) => (
            Phase::Running,
            true,
            "Ready",
            "the connector is running".to_string(),
        ),
    };
    ConnectorStatus {
        phase: Some(phase),
        conditions: vec![
            condition(
                &before,
                "Reconciled",
                true,
                "Applied",
                "ConfigMap and Deployment applied",
                generation,
            ),
            condition(&before, "Ready", ok, reason, &message, generation),
        ],
        observed_generation: generation,
        ready_replicas: ready,
        message: Some(message),
    }
}

/// Runs the controller over `namespaces` (all when empty) until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    namespaces: Vec<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = futures_util::future::FutureExt::shared(Box::pin(shutdown));
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    };
    let controllers = scopes.into_iter().map(|ns| {
        let client = ctx.client.clone();
        let (conns, deployments, maps) = match &ns {
            None => (
                Api::<Connector>::all(client.clone()),
                Api::<Deployment>::all(client.clone()),
                Api::<ConfigMap>::all(client),
            ),
            Some(ns) => (
                Api::<Connector>::namespaced(client.clone(), ns),
                Api::<Deployment>::namespaced(client.clone(), ns),
                Api::<ConfigMap>::namespaced(client, ns),
            ),
        };
        let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=runnel-operator");
        Controller::new(conns, watcher::Config::default())
            .owns(deployments, owned.clone())
            .owns(maps, owned)
            .graceful_shutdown_on(shutdown.clone())
            .run(reconcile, error_policy, ctx.clone())
            .for_each(|r| async move {
                match r {
                    Ok((o, _)) => tracing::debug!(connector = %o.name, namespace = ?o.namespace, "Reconciled."),
                    Err(e) => tracing::debug!(error = %e, "Controller event."),
                }
            })
    });
    futures_util::future::join_all(controllers).await;
}
