//! The reconciler against a mocked API server (kube's tower-test pattern): every request it
//! makes is checked in order, and answered as the API server would.

#![allow(clippy::unwrap_used)]

use std::{sync::Arc, time::Duration};

use http::{Method, Request, Response};
use kube::{Client, client::Body};
use runnel_operator::{
    Connector,
    controller::{self, Context},
    metrics::Metrics,
    render::Settings,
};
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

fn settings() -> Settings {
    Settings {
        registry: "registry.example/runnel".into(),
        hub: Some("nats://nats:4222".into()),
        default_version: "0.1.0".into(),
    }
}

fn connector(spec: Value, generation: i64, status: Option<Value>) -> Connector {
    let mut v = json!({
        "apiVersion": "runnel.dev/v1alpha1",
        "kind": "Connector",
        "metadata": {
            "name": "cats",
            "namespace": "apps",
            "uid": "8d6ad2f6-0c1a-4b8e-9a65-1e3c9d2b7f10",
            "generation": generation,
            "resourceVersion": "7"
        },
        "spec": spec
    });
    if let Some(s) = status {
        v["status"] = s;
    }
    serde_json::from_value(v).unwrap()
}

fn http_source(interval: &str) -> Value {
    json!({
        "type": "http-source",
        "topic": "cat-facts",
        "config": {"endpoint": "https://catfact.ninja/fact", "interval": interval}
    })
}

/// One expected request: its method, path and the body it sent.
struct Seen {
    query: String,
    body: Value,
}

async fn expect(
    handle: &mut ApiHandle,
    method: Method,
    path: &str,
    reply: impl FnOnce(&Value) -> Value,
) -> Seen {
    let (request, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .unwrap_or_else(|_| panic!("no request came; expected {method} {path}"))
        .expect("the client went away");
    assert_eq!(request.method(), method, "{}", request.uri());
    assert_eq!(request.uri().path(), path);
    let query = request.uri().query().unwrap_or_default().to_string();
    let bytes = request.into_body().collect_bytes().await.unwrap();
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    let answer = reply(&body);
    send.send_response(
        Response::builder()
            .body(Body::from(serde_json::to_vec(&answer).unwrap()))
            .unwrap(),
    );
    Seen { query, body }
}

/// The API server's answer to an apply: the object as applied, with a status.
fn applied(status: Value) -> impl FnOnce(&Value) -> Value {
    move |body| {
        let mut o = body.clone();
        o["status"] = status;
        o
    }
}

fn echo(body: &Value) -> Value {
    body.clone()
}

/// The API server's answer to a status merge patch: the whole Connector with that status
/// (the reconciler ignores all but its shape, which must still decode).
fn status_patched(body: &Value) -> Value {
    let mut conn = serde_json::to_value(connector(http_source("10s"), 1, None)).unwrap();
    conn["status"] = body["status"].clone();
    conn
}

/// Runs one reconcile of `conn` while `scenario` plays the API server; returns what the
/// scenario returned and checks that no request was left unanswered.
async fn reconcile<T: Send + 'static>(
    conn: Connector,
    scenario: impl FnOnce(
        ApiHandle,
    )
        -> std::pin::Pin<Box<dyn std::future::Future<Output = (ApiHandle, T)> + Send>>,
) -> (kube::runtime::controller::Action, T) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let ctx = Arc::new(Context::new(
        client,
        settings(),
        Arc::new(Metrics::default()),
    ));
    let server = tokio::spawn(scenario(handle));
    let action = tokio::time::timeout(
        Duration::from_secs(10),
        controller::reconcile(Arc::new(conn), ctx),
    )
    .await
    .expect("reconcile hung: it made a request the scenario did not expect")
    .unwrap();
    let (mut handle, out) = server.await.unwrap();
    // Nothing more was asked.
    let more = tokio::time::timeout(Duration::from_millis(100), handle.next_request()).await;
    assert!(!matches!(more, Ok(Some(_))), "an unexpected extra request");
    (action, out)
}

const CM: &str = "/api/v1/namespaces/apps/configmaps/runnel-cats";
const DEPLOY: &str = "/apis/apps/v1/namespaces/apps/deployments/runnel-cats";
const STATUS: &str = "/apis/runnel.dev/v1alpha1/namespaces/apps/connectors/cats/status";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/apps/events";

fn container(deploy: &Value) -> &Value {
    &deploy["spec"]["template"]["spec"]["containers"][0]
}

#[tokio::test]
async fn create_applies_configmap_and_deployment_then_reports_pending() {
    let conn = connector(http_source("10s"), 1, None);
    let (action, (cm, deploy, status, event)) = reconcile(conn, |mut h| {
        Box::pin(async move {
            let cm = expect(&mut h, Method::PATCH, CM, echo).await;
            let deploy = expect(
                &mut h,
                Method::PATCH,
                DEPLOY,
                applied(json!({"replicas": 1})),
            )
            .await;
            let status = expect(&mut h, Method::PATCH, STATUS, status_patched).await;
            let event = expect(&mut h, Method::POST, EVENTS, echo).await;
            (h, (cm, deploy, status, event))
        })
    })
    .await;
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(Duration::from_secs(300))
    );
    // Server-side apply under the operator's field manager, forced.
    for q in [&cm.query, &deploy.query] {
        assert!(q.contains("fieldManager=runnel-operator"), "{q}");
        assert!(q.contains("force=true"), "{q}");
    }
    let yml = cm.body["data"]["connect.yml"].as_str().unwrap();
    let parsed: serde_yaml::Value = serde_yaml::from_str(yml).unwrap();
    assert_eq!(parsed["meta"]["type"], "http-source");
    assert_eq!(parsed["http"]["interval"], "10s");
    // Owned by the Connector, so deleting it deletes them.
    for body in [&cm.body, &deploy.body] {
        let owner = &body["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "Connector");
        assert_eq!(owner["name"], "cats");
        assert_eq!(owner["uid"], "8d6ad2f6-0c1a-4b8e-9a65-1e3c9d2b7f10");
        assert_eq!(owner["controller"], true);
    }
    assert_eq!(deploy.body["spec"]["replicas"], 1);
    let c = container(&deploy.body);
    assert_eq!(
        c["image"],
        "registry.example/runnel/runnel-http-source:0.1.0"
    );
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(status.body["status"]["phase"], "Pending");
    assert_eq!(status.body["status"]["observedGeneration"], 1);
    assert_eq!(event.body["reason"], "Pending");
    assert_eq!(event.body["type"], "Normal");
    assert_eq!(event.body["regarding"]["name"], "cats");
}

#[tokio::test]
async fn a_ready_deployment_makes_the_connector_running() {
    let pending = json!({"phase": "Pending", "observedGeneration": 1, "readyReplicas": 0});
    let conn = connector(http_source("10s"), 1, Some(pending));
    let (_, (status, event)) = reconcile(conn, |mut h| {
        Box::pin(async move {
            expect(&mut h, Method::PATCH, CM, echo).await;
            expect(
                &mut h,
                Method::PATCH,
                DEPLOY,
                applied(json!({"replicas": 1, "readyReplicas": 1, "availableReplicas": 1})),
            )
            .await;
            let status = expect(&mut h, Method::PATCH, STATUS, status_patched).await;
            let event = expect(&mut h, Method::POST, EVENTS, echo).await;
            (h, (status, event))
        })
    })
    .await;
    let s = &status.body["status"];
    assert_eq!(s["phase"], "Running");
    assert_eq!(s["readyReplicas"], 1);
    let ready = s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "True");
    assert_eq!(event.body["reason"], "Running");
}

#[tokio::test]
async fn nothing_changed_means_no_status_write_and_no_event() {
    // First pass: learn the status the reconciler writes for a running connector.
    let conn = connector(http_source("10s"), 1, None);
    let ready = json!({"replicas": 1, "readyReplicas": 1});
    let (_, status) = reconcile(conn, move |mut h| {
        let ready = ready.clone();
        Box::pin(async move {
            expect(&mut h, Method::PATCH, CM, echo).await;
            expect(&mut h, Method::PATCH, DEPLOY, applied(ready)).await;
            let status = expect(&mut h, Method::PATCH, STATUS, status_patched).await;
            expect(&mut h, Method::POST, EVENTS, echo).await;
            (h, status)
        })
    })
    .await;
    // Second pass with that status: only the two applies.
    let conn = connector(http_source("10s"), 1, Some(status.body["status"].clone()));
    reconcile(conn, |mut h| {
        Box::pin(async move {
            expect(&mut h, Method::PATCH, CM, echo).await;
            expect(
                &mut h,
                Method::PATCH,
                DEPLOY,
                applied(json!({"replicas": 1, "readyReplicas": 1})),
            )
            .await;
            (h, ())
        })
    })
    .await;
}

#[tokio::test]
async fn a_spec_change_reaches_the_configmap_and_rolls_the_pod() {
    let running = json!({"phase": "Running", "observedGeneration": 1, "readyReplicas": 1});
    let conn = connector(http_source("10s"), 1, Some(running.clone()));
    let (_, first) = reconcile(conn, |mut h| {
        Box::pin(async move {
            expect(&mut h, Method::PATCH, CM, echo).await;
            let d = expect(
                &mut h,
                Method::PATCH,
                DEPLOY,
                applied(json!({"readyReplicas": 1})),
            )
            .await;
            expect(&mut h, Method::PATCH, STATUS, status_patched).await;
            (h, d)
        })
    })
    .await;
    let conn = connector(http_source("30s"), 2, Some(running));
    let (_, (cm, second, status)) = reconcile(conn, |mut h| {
        Box::pin(async move {
            let cm = expect(&mut h, Method::PATCH, CM, echo).await;
            let d = expect(
                &mut h,
                Method::PATCH,
                DEPLOY,
                applied(json!({"readyReplicas": 1})),
            )
            .await;
            let s = expect(&mut h, Method::PATCH, STATUS, status_patched).await;
            (h, (cm, d, s))
        })
    })
    .await;
    let yml = cm.body["data"]["connect.yml"].as_str().unwrap();
    assert!(yml.contains("interval: 30s"), "{yml}");
    let hash = |d: &Seen| {
        d.body["spec"]["template"]["metadata"]["annotations"]["runnel.dev/config-hash"].clone()
    };
    assert_ne!(hash(&first), hash(&second));
    assert_eq!(status.body["status"]["observedGeneration"], 2);
    assert_eq!(status.body["status"]["phase"], "Running");
}

#[tokio::test]
async fn stopped_scales_to_zero() {
    let mut spec = http_source("10s");
    spec["state"] = json!("stopped");
    let running = json!({"phase": "Running", "observedGeneration": 1, "readyReplicas": 1});
    let conn = connector(spec, 2, Some(running));
    let (_, (deploy, status, event)) = reconcile(conn, |mut h| {
        Box::pin(async move {
            expect(&mut h, Method::PATCH, CM, echo).await;
            let d = expect(
                &mut h,
                Method::PATCH,
                DEPLOY,
                applied(json!({"replicas": 0})),
            )
            .await;
            let s = expect(&mut h, Method::PATCH, STATUS, status_patched).await;
            let e = expect(&mut h, Method::POST, EVENTS, echo).await;
            (h, (d, s, e))
        })
    })
    .await;
    assert_eq!(deploy.body["spec"]["replicas"], 0);
    assert_eq!(status.body["status"]["phase"], "Stopped");
    assert_eq!(status.body["status"]["readyReplicas"], 0);
    assert_eq!(event.body["reason"], "Stopped");
}

#[tokio::test]
async fn an_invalid_spec_fails_with_the_reason_and_creates_nothing() {
    let mut spec = http_source("10s");
    spec["type"] = json!("ftp-source");
    let conn = connector(spec, 1, None);
    let (action, (status, event)) = reconcile(conn, |mut h| {
        Box::pin(async move {
            let s = expect(&mut h, Method::PATCH, STATUS, status_patched).await;
            let e = expect(&mut h, Method::POST, EVENTS, echo).await;
            (h, (s, e))
        })
    })
    .await;
    // No requeue: only a new spec can fix it.
    assert_eq!(action, kube::runtime::controller::Action::await_change());
    let s = &status.body["status"];
    assert_eq!(s["phase"], "Failed");
    let message = s["message"].as_str().unwrap();
    assert!(message.contains("spec.type"), "{message}");
    assert!(message.contains("ftp-source"), "{message}");
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["reason"], "InvalidSpec");
}

#[tokio::test]
async fn a_secret_is_passed_by_reference_never_by_value() {
    let mut spec = http_source("10s");
    spec["config"]["headers"] = json!(["Authorization: Bearer ${{ secrets.TOKEN }}"]);
    spec["secrets"] =
        json!([{"name": "TOKEN", "secretKeyRef": {"name": "cat-secrets", "key": "TOKEN"}}]);
    let conn = connector(spec, 1, None);
    let (_, (cm, deploy)) = reconcile(conn, |mut h| {
        Box::pin(async move {
            let cm = expect(&mut h, Method::PATCH, CM, echo).await;
            let d = expect(&mut h, Method::PATCH, DEPLOY, applied(json!({}))).await;
            expect(&mut h, Method::PATCH, STATUS, status_patched).await;
            expect(&mut h, Method::POST, EVENTS, echo).await;
            (h, (cm, d))
        })
    })
    .await;
    let yml = cm.body["data"]["connect.yml"].as_str().unwrap();
    assert!(yml.contains("${{ secrets.TOKEN }}"), "{yml}");
    let env = container(&deploy.body)["env"].as_array().unwrap();
    let token = env.iter().find(|e| e["name"] == "TOKEN").unwrap();
    assert_eq!(token["valueFrom"]["secretKeyRef"]["name"], "cat-secrets");
    assert!(token.get("value").is_none());
}
