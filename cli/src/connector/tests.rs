//! The connect.yml conversion, and the subcommands against a mock API server (kube's
//! `Client::new` over a tower-test service: each scenario asserts the requests the command
//! sends, in order, and answers them).

#![allow(clippy::unwrap_used)]

use std::{io::Write as _, path::Path, time::Duration};

use http::{Request, Response};
use kube::{Client, client::Body};
use serde_json::{Value, json};

use super::{
    Kube, OutputFormat,
    convert::{Converted, convert},
    ops,
};

// --- conversion ---

fn ok(yaml: &str) -> Converted {
    convert(yaml, "demo").unwrap_or_else(|e| panic!("{e}"))
}

fn err(yaml: &str) -> String {
    match convert(yaml, "demo") {
        Ok(c) => panic!("converted: {:?}", c.connector),
        Err(e) => e.to_string(),
    }
}

fn spec_json(c: &Converted) -> Value {
    serde_json::to_value(&c.connector).unwrap()["spec"].clone()
}

fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

#[test]
fn versioned_format_maps_every_field() {
    let c = ok(r#"
apiVersion: 0.1.0
meta:
  version: 0.3.0
  name: cat-facts
  type: http
  topic: cat-facts
  create_topic: true
  secrets:
    - name: TOKEN
  producer: {linger: 1ms, batch-size: 1MB}
http:
  endpoint: https://example.invalid/fact?key=${{ secrets.TOKEN }}
  headers:
    - "X-Token: ${{secrets.TOKEN}}"
transforms:
  - uses: infinyon/jolt@0.4.1
    with:
      spec:
        - operation: shift
          spec: {fact: animal.fact}
  - uses: ./filter.wasm
    with: {field: fact}
"#);
    assert_eq!(c.connector.metadata.name.as_deref(), Some("cat-facts"));
    assert_eq!(c.connector.metadata.namespace.as_deref(), Some("demo"));
    assert_eq!(
        spec_json(&c),
        json!({
            "type": "http-source",
            "version": "0.3.0",
            "topic": "cat-facts",
            "createTopic": true,
            "config": {
                "endpoint": "https://example.invalid/fact?key=${{ secrets.TOKEN }}",
                "headers": ["X-Token: ${{secrets.TOKEN}}"],
            },
            "transforms": [
                {"uses": "infinyon/jolt@0.4.1",
                 "with": {"spec": r#"[{"operation":"shift","spec":{"fact":"animal.fact"}}]"#}},
                {"uses": "./filter.wasm", "with": {"field": "fact"}},
            ],
            "producer": {"linger": "1ms", "batch-size": "1MB"},
            "secrets": [
                {"name": "TOKEN", "secretKeyRef": {"name": "cat-facts-secrets", "key": "TOKEN"}}
            ],
            "state": "running",
        })
    );
    assert_eq!(
        c.secrets,
        [("TOKEN".to_string(), "meta.secrets[0].name".to_string())]
    );
    assert!(c.inline_values.is_empty());
    assert!(c.warnings.is_empty());
}

#[test]
fn topic_config_of_0_2_0_gives_its_name_and_a_warning() {
    let c = ok(r#"
apiVersion: 0.2.0
meta:
  version: 0.1.0
  name: sink-020
  type: http-sink
  topic:
    meta: {name: orders}
    partition: {count: 1}
  create-topic: true
  consumer:
    id: orders-webhook
    offset: {start: {from-end: 5}, strategy: auto}
http:
  endpoint: http://127.0.0.1:9/orders
"#);
    let spec = spec_json(&c);
    assert_eq!(spec["topic"], "orders");
    assert_eq!(spec["type"], "http-sink");
    assert_eq!(
        spec["consumer"],
        json!({"id": "orders-webhook", "offset": {"start": {"from-end": 5}, "strategy": "auto"}})
    );
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].contains("partition"), "{:?}", c.warnings);
}

#[test]
fn flat_format_with_inline_secrets_and_direction() {
    let c = ok(r#"
version: 0.2.0
name: old-sink
type: http
topic: events
direction: sink
create-topic: true
parameters:
  endpoint: http://127.0.0.1:9/hook
  headers:
    - "Authorization: ${{ secrets.INLINE_TOKEN }}"
    - "X-Other: ${{ secrets.FROM_FILE }}"
secrets:
  INLINE_TOKEN: abc123secret
producer: {linger: 10ms}
"#);
    let spec = spec_json(&c);
    assert_eq!(spec["type"], "http-sink");
    assert_eq!(spec["version"], "0.2.0");
    assert_eq!(spec["createTopic"], true);
    assert_eq!(spec["config"]["endpoint"], "http://127.0.0.1:9/hook");
    assert_eq!(spec["producer"], json!({"linger": "10ms"}));
    // Inline secrets and the ones templates use are both declared; no value is in the spec.
    let names: Vec<&str> = c.secrets.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["INLINE_TOKEN", "FROM_FILE"]);
    assert_eq!(c.inline_values["INLINE_TOKEN"], "abc123secret");
    assert!(
        !serde_json::to_string(&c.connector)
            .unwrap()
            .contains("abc123secret")
    );
}

#[test]
fn fluvio_type_names_map_to_runnel_types() {
    let http = "parameters: {endpoint: 'http://127.0.0.1:9/'}\n";
    let mqtt = "parameters: {mqtt-url: 'mqtt://127.0.0.1', mqtt-topic: a}\n";
    for (t, dir, want, params) in [
        ("test-connector", None, "test-source", ""),
        ("http", None, "http-source", http),
        ("http", Some("source"), "http-source", http),
        ("http", Some("sink"), "http-sink", http),
        ("mqtt", None, "mqtt-source", mqtt),
        ("mqtt-sink", Some("sink"), "mqtt-sink", mqtt),
    ] {
        let dir = dir.map(|d| format!("direction: {d}\n")).unwrap_or_default();
        let c = ok(&format!("name: x\ntype: {t}\ntopic: t\n{dir}{params}"));
        assert_eq!(c.connector.spec.kind, want, "{t} {dir}");
    }
}

#[test]
fn every_example_converts() {
    let mut n = 0;
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let c = convert(&text, "demo").unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!c.connector.spec.topic.is_empty(), "{}", path.display());
        n += 1;
    }
    assert!(n >= 6, "only {n} examples");
}

#[test]
fn errors_name_the_field() {
    let cases = [
        ("", "the file is empty"),
        ("- a\n- b\n", "expected a mapping of fields"),
        (
            "apiVersion: 0.3.0\nmeta: {}\n",
            "apiVersion: unsupported version \"0.3.0\"",
        ),
        ("apiVersion: 0.1.0\n", "meta: missing field"),
        (
            "meta: {type: http-source, topic: t}\n",
            "meta.name: missing field",
        ),
        (
            "meta: {name: x, type: http-source, topic: t, colour: red}\n",
            "meta.colour: unknown field",
        ),
        (
            "meta: {name: x, type: ftp-source, topic: t}\n",
            "meta.type: unknown connector type \"ftp-source\": expected test-source, http-source,",
        ),
        (
            "meta: {name: My_Conn, type: http-source, topic: t}\n",
            "meta.name: \"My_Conn\" is not a valid Kubernetes name",
        ),
        (
            "meta: {name: x, type: http-source, topic: 'a b'}\n",
            "meta.topic: ",
        ),
        (
            "apiVersion: 0.1.0\nmeta: {name: x, type: http-source, topic: {meta: {name: t}}}\n",
            "meta.topic: a topic config (a mapping) needs apiVersion: 0.2.0",
        ),
        (
            "meta: {name: x, type: http-source, topic: t, producer: {batch-size: lots}}\n",
            "meta.producer.batch-size: ",
        ),
        (
            "meta: {name: x, type: http-source, topic: t, consumer: {offset: {start: middle}}}\n",
            "meta.consumer.offset.start: unknown value \"middle\"",
        ),
        (
            "meta: {name: x, type: http-source, topic: t}\nmqtt: {url: x}\n",
            "mqtt: unknown field, expected apiVersion, meta, transforms or http",
        ),
        (
            "meta: {name: x, type: http-source, topic: t}\nhttp: [1]\n",
            "http: expected a mapping of the connector's options",
        ),
        (
            "meta: {name: x, type: http-source, topic: t}\nhttp:\n  headers: [\"A: ${{ secrets.NOPE }}\"]\n",
            "http.headers[0]: secret \"NOPE\" is used but not declared: add it to meta.secrets",
        ),
        (
            "meta: {name: x, type: http-source, topic: t}\nhttp: {endpoint: \"${{ env.X }}\"}\n",
            "http.endpoint: unknown template",
        ),
        (
            "meta: {name: x, type: http-source, topic: t, secrets: [{name: 'bad-name'}]}\n",
            "meta.secrets[0].name: invalid secret name \"bad-name\"",
        ),
        (
            "meta: {name: x, type: http-source, topic: t}\ntransforms: {uses: a}\n",
            "transforms: expected a list of steps",
        ),
        (
            "meta: {name: x, type: http-source, topic: t}\ntransforms: [{with: {a: b}}]\n",
            "transforms[0].uses: missing field",
        ),
        (
            "meta: {name: x, type: http-source, topic: t}\ntransforms: [{uses: a.wasm, lookback: {last: 1}}]\n",
            "transforms[0].lookback: not supported",
        ),
        (
            "name: x\ntype: http-sink\ntopic: t\ndirection: source\n",
            "direction: http-sink is a sink connector, this file says source",
        ),
        ("name: x\ntype: http-source\n", "topic: missing field"),
    ];
    let mut wrong = Vec::new();
    for (yaml, want) in cases {
        let got = err(yaml);
        if !got.starts_with(want) {
            wrong.push(format!("{yaml:?}\n  want: {want}\n  got:  {got}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn secret_values_come_from_the_secrets_file_only() {
    let dir = tempfile::tempdir().unwrap();
    let yml = dir.path().join("connect.yml");
    std::fs::write(
        &yml,
        "meta: {name: x, type: http-source, topic: t, secrets: [{name: A}, {name: B}]}\nhttp: {endpoint: 'http://h/${{ secrets.A }}'}\n",
    )
    .unwrap();
    let secrets = dir.path().join("secrets.env");
    let mut f = std::fs::File::create(&secrets).unwrap();
    writeln!(f, "# comment\nA=alpha\nUNUSED=zzz").unwrap();

    let e = ops::read_create_input(&yml, Some(&secrets)).unwrap_err();
    let msg = format!("{e:#}");
    assert!(ops::is_input_error(&e));
    assert_eq!(
        msg,
        format!(
            "{}: meta.secrets[1].name: secret \"B\" has no value in {}: add a line B=VALUE",
            yml.display(),
            secrets.display()
        )
    );
    assert!(!msg.contains("alpha"));

    writeln!(f, "B=beta").unwrap();
    let input = ops::read_create_input(&yml, Some(&secrets)).unwrap();
    assert_eq!(
        input.secret_values.into_iter().collect::<Vec<_>>(),
        [("A".into(), "alpha".into()), ("B".into(), "beta".into())]
    );

    let e = ops::read_create_input(&yml, None).unwrap_err();
    assert!(format!("{e:#}").contains("pass --secrets FILE"), "{e:#}");

    std::fs::write(&secrets, "not a pair\n").unwrap();
    let e = ops::read_create_input(&yml, Some(&secrets)).unwrap_err();
    assert!(ops::is_input_error(&e));
    assert!(
        format!("{e:#}").ends_with("line 1: expected KEY=VALUE"),
        "{e:#}"
    );
}

// --- the subcommands against a mock API server ---

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn mock() -> (Kube, Handle) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let kube = Kube {
        client: Client::new(svc, "default"),
        namespace: "demo".into(),
    };
    (kube, handle)
}

/// Expects the next request to be `method path` (path with its query string, when `path`
/// has one); answers `status` with `reply`; returns the request's JSON body (null if none).
async fn expect(handle: &mut Handle, method: &str, path: &str, status: u16, reply: Value) -> Value {
    let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .unwrap_or_else(|_| panic!("no request; expected {method} {path}"))
        .unwrap_or_else(|| panic!("client gone; expected {method} {path}"));
    let uri = req.uri();
    let got = if path.contains('?') {
        uri.path_and_query().unwrap().as_str().to_string()
    } else {
        uri.path().to_string()
    };
    assert_eq!(
        format!("{} {got}", req.method()),
        format!("{method} {path}")
    );
    let body = req.into_body().collect_bytes().await.unwrap();
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(&reply).unwrap()))
            .unwrap(),
    );
    if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

const CONNECTORS: &str = "/apis/runnel.dev/v1alpha1/namespaces/demo/connectors";
const SECRETS: &str = "/api/v1/namespaces/demo/secrets";

fn input_with_secret() -> ops::CreateInput {
    let converted = ok(r#"
meta: {name: cat-facts, type: http-source, topic: facts, secrets: [{name: TOKEN}]}
http: {endpoint: "https://h/?k=${{ secrets.TOKEN }}"}
"#);
    ops::CreateInput {
        converted,
        secret_values: [("TOKEN".to_string(), "s3cr3t-value".to_string())].into(),
    }
}

/// The created object as the server returns it.
fn stored(mut obj: Value, uid: &str, rv: &str) -> Value {
    obj["metadata"]["uid"] = uid.into();
    obj["metadata"]["resourceVersion"] = rv.into();
    obj["metadata"]["creationTimestamp"] = "2024-01-01T00:00:00Z".into();
    obj
}

async fn finish(scenario: tokio::task::JoinHandle<()>) {
    tokio::time::timeout(Duration::from_secs(5), scenario)
        .await
        .expect("scenario timed out")
        .expect("scenario failed");
}

#[tokio::test]
async fn create_writes_the_connector_then_its_owned_secret() {
    let (kube, mut handle) = mock();
    let scenario = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(req.method(), "POST");
        assert_eq!(req.uri().path(), CONNECTORS);
        let body: Value =
            serde_json::from_slice(&req.into_body().collect_bytes().await.unwrap()).unwrap();
        assert_eq!(body["kind"], "Connector");
        assert_eq!(body["metadata"]["namespace"], "demo");
        assert_eq!(
            body["spec"]["secrets"],
            json!([{"name": "TOKEN", "secretKeyRef": {"name": "cat-facts-secrets", "key": "TOKEN"}}])
        );
        // The value goes to the Secret only.
        assert!(!body.to_string().contains("s3cr3t"), "{body}");
        send.send_response(
            Response::builder()
                .status(201)
                .body(Body::from(
                    serde_json::to_vec(&stored(body, "uid-1", "7")).unwrap(),
                ))
                .unwrap(),
        );
        let secret = expect(&mut handle, "POST", SECRETS, 201, json!({})).await;
        assert_eq!(secret["metadata"]["name"], "cat-facts-secrets");
        assert_eq!(
            secret["metadata"]["labels"]["runnel.dev/connector"],
            "cat-facts"
        );
        assert_eq!(
            secret["metadata"]["ownerReferences"],
            json!([{"apiVersion": "runnel.dev/v1alpha1", "kind": "Connector",
                    "name": "cat-facts", "uid": "uid-1"}])
        );
        // base64 of s3cr3t-value
        assert_eq!(secret["data"], json!({"TOKEN": "czNjcjN0LXZhbHVl"}));
        assert_eq!(secret["type"], "Opaque");
    });
    let mut out = Vec::new();
    ops::create(&kube, input_with_secret(), false, &mut out)
        .await
        .unwrap();
    finish(scenario).await;
    let out = String::from_utf8(out).unwrap();
    assert_eq!(
        out,
        "connector \"cat-facts\" created in namespace \"demo\"\nsecret \"cat-facts-secrets\" created with the keys TOKEN\n"
    );
    assert!(!out.contains("s3cr3t"));
}

#[tokio::test]
async fn create_of_an_existing_connector_fails_with_a_hint() {
    let (kube, mut handle) = mock();
    let scenario = tokio::spawn(async move {
        expect(
            &mut handle,
            "POST",
            CONNECTORS,
            409,
            status(
                409,
                "AlreadyExists",
                "connectors.runnel.dev \"cat-facts\" already exists",
            ),
        )
        .await;
        // Nothing else: no Secret is written for a connector that was not created.
        assert!(
            tokio::time::timeout(Duration::from_millis(200), handle.next_request())
                .await
                .map(|r| r.is_none())
                .unwrap_or(true)
        );
    });
    let e = ops::create(&kube, input_with_secret(), false, &mut Vec::new())
        .await
        .unwrap_err();
    drop(kube);
    finish(scenario).await;
    assert_eq!(
        e.to_string(),
        "connector \"cat-facts\" already exists in namespace \"demo\": pass --replace to replace it, or delete it first (runnel connector delete cat-facts -n demo)"
    );
    assert!(!ops::is_input_error(&e));
}

#[tokio::test]
async fn create_with_replace_replaces_connector_and_secret() {
    let (kube, mut handle) = mock();
    let scenario = tokio::spawn(async move {
        let exists = status(409, "AlreadyExists", "exists");
        let body = expect(&mut handle, "POST", CONNECTORS, 409, exists.clone()).await;
        let old = stored(body, "uid-1", "41");
        expect(
            &mut handle,
            "GET",
            &format!("{CONNECTORS}/cat-facts"),
            200,
            old,
        )
        .await;
        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(req.method(), "PUT");
        assert_eq!(req.uri().path(), format!("{CONNECTORS}/cat-facts"));
        let body: Value =
            serde_json::from_slice(&req.into_body().collect_bytes().await.unwrap()).unwrap();
        assert_eq!(body["metadata"]["resourceVersion"], "41");
        send.send_response(
            Response::builder()
                .body(Body::from(
                    serde_json::to_vec(&stored(body, "uid-1", "42")).unwrap(),
                ))
                .unwrap(),
        );
        expect(&mut handle, "POST", SECRETS, 409, exists).await;
        let old_secret = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "cat-facts-secrets", "namespace": "demo", "resourceVersion": "9"}});
        expect(
            &mut handle,
            "GET",
            &format!("{SECRETS}/cat-facts-secrets"),
            200,
            old_secret.clone(),
        )
        .await;
        let put = expect(
            &mut handle,
            "PUT",
            &format!("{SECRETS}/cat-facts-secrets"),
            200,
            old_secret,
        )
        .await;
        assert_eq!(put["metadata"]["resourceVersion"], "9");
        assert_eq!(put["data"]["TOKEN"], "czNjcjN0LXZhbHVl");
    });
    let mut out = Vec::new();
    ops::create(&kube, input_with_secret(), true, &mut out)
        .await
        .unwrap();
    finish(scenario).await;
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "connector \"cat-facts\" replaced in namespace \"demo\"\nsecret \"cat-facts-secrets\" replaced with the keys TOKEN\n"
    );
}

#[tokio::test]
async fn a_failed_secret_takes_the_new_connector_back() {
    let (kube, mut handle) = mock();
    let scenario = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.unwrap();
        let body: Value =
            serde_json::from_slice(&req.into_body().collect_bytes().await.unwrap()).unwrap();
        send.send_response(
            Response::builder()
                .status(201)
                .body(Body::from(
                    serde_json::to_vec(&stored(body, "uid-1", "7")).unwrap(),
                ))
                .unwrap(),
        );
        expect(
            &mut handle,
            "POST",
            SECRETS,
            403,
            status(
                403,
                "Forbidden",
                "secrets is forbidden: User \"me\" cannot create",
            ),
        )
        .await;
        expect(
            &mut handle,
            "DELETE",
            &format!("{CONNECTORS}/cat-facts"),
            200,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}),
        )
        .await;
    });
    let e = ops::create(&kube, input_with_secret(), false, &mut Vec::new())
        .await
        .unwrap_err();
    finish(scenario).await;
    let msg = format!("{e:#}");
    assert!(msg.starts_with("the connector was deleted again: cannot create secret \"cat-facts-secrets\": secrets is forbidden"), "{msg}");
}

fn connector_json(ns: &str, name: &str, phase: Option<&str>) -> Value {
    let mut c = json!({
        "apiVersion": "runnel.dev/v1alpha1", "kind": "Connector",
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"),
                     "resourceVersion": "1",
                     "creationTimestamp": "2020-01-01T00:00:00Z"},
        "spec": {"type": "http-source", "topic": format!("{name}-t"), "version": "0.1.0"},
    });
    if let Some(p) = phase {
        c["status"] = json!({"phase": p, "readyReplicas": 1});
    }
    c
}

fn list_of(items: Vec<Value>) -> Value {
    json!({"apiVersion": "runnel.dev/v1alpha1", "kind": "ConnectorList",
           "metadata": {"resourceVersion": "5"}, "items": items})
}

#[tokio::test]
async fn list_prints_a_table_json_and_yaml() {
    for (output, all) in [
        (OutputFormat::Table, false),
        (OutputFormat::Table, true),
        (OutputFormat::Json, false),
        (OutputFormat::Yaml, false),
    ] {
        let (kube, mut handle) = mock();
        let scenario = tokio::spawn(async move {
            let path = if all {
                "/apis/runnel.dev/v1alpha1/connectors"
            } else {
                CONNECTORS
            };
            let items = vec![
                connector_json("demo", "zeta", None),
                connector_json("demo", "alpha", Some("Running")),
            ];
            expect(&mut handle, "GET", path, 200, list_of(items)).await;
        });
        let (mut out, mut err) = (Vec::new(), Vec::new());
        ops::list(&kube, all, output, &mut out, &mut err)
            .await
            .unwrap();
        finish(scenario).await;
        let out = String::from_utf8(out).unwrap();
        match output {
            OutputFormat::Table => {
                let lines: Vec<&str> = out.lines().collect();
                let ns = if all { "NAMESPACE   " } else { "" };
                assert_eq!(
                    lines[0],
                    format!("{ns}NAME    TYPE          VERSION   TOPIC     STATUS    AGE")
                );
                assert!(
                    lines[1].starts_with(&format!(
                        "{}alpha   http-source   0.1.0     alpha-t   Running   ",
                        if all { "demo        " } else { "" }
                    )),
                    "{out}"
                );
                assert!(
                    lines[2].contains("zeta    http-source   0.1.0     zeta-t    Pending   "),
                    "{out}"
                );
                // Created in 2020: years old, in kubectl's words.
                assert!(lines[1].ends_with('y') || lines[1].contains('y'), "{out}");
            }
            OutputFormat::Json => {
                let v: Value = serde_json::from_str(&out).unwrap();
                assert_eq!(v["kind"], "List");
                assert_eq!(v["items"][0]["metadata"]["name"], "alpha");
                assert_eq!(v["items"][0]["kind"], "Connector");
                assert_eq!(v["items"][1]["spec"]["topic"], "zeta-t");
            }
            OutputFormat::Yaml => {
                let v: Value = serde_yaml::from_str(&out).unwrap();
                assert_eq!(v["items"][1]["metadata"]["name"], "zeta");
                assert_eq!(v["items"][0]["status"]["phase"], "Running");
            }
        }
    }
}

#[tokio::test]
async fn list_of_nothing_says_so_on_stderr() {
    let (kube, mut handle) = mock();
    let scenario = tokio::spawn(async move {
        expect(&mut handle, "GET", CONNECTORS, 200, list_of(vec![])).await;
    });
    let (mut out, mut err) = (Vec::new(), Vec::new());
    ops::list(&kube, false, OutputFormat::Table, &mut out, &mut err)
        .await
        .unwrap();
    finish(scenario).await;
    assert!(out.is_empty());
    assert_eq!(
        String::from_utf8(err).unwrap(),
        "No connectors found in namespace \"demo\".\n"
    );
}

fn deleted(name: &str) -> Value {
    connector_json("demo", name, None)
}

fn not_found(name: &str) -> Value {
    status(
        404,
        "NotFound",
        &format!("connectors.runnel.dev \"{name}\" not found"),
    )
}

#[tokio::test]
async fn delete_stops_at_the_first_failure() {
    let (kube, mut handle) = mock();
    let scenario = tokio::spawn(async move {
        expect(
            &mut handle,
            "DELETE",
            &format!("{CONNECTORS}/a"),
            200,
            deleted("a"),
        )
        .await;
        expect(
            &mut handle,
            "DELETE",
            &format!("{CONNECTORS}/missing"),
            404,
            not_found("missing"),
        )
        .await;
        // c is never asked for.
    });
    let names = ["a", "missing", "c"].map(String::from);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let e = ops::delete(&kube, &names, false, &mut out, &mut err)
        .await
        .unwrap_err();
    finish(scenario).await;
    assert_eq!(
        e.to_string(),
        "connector \"missing\" not found in namespace \"demo\""
    );
    assert_eq!(String::from_utf8(out).unwrap(), "connector \"a\" deleted\n");
    assert!(err.is_empty());
}

#[tokio::test]
async fn delete_with_continue_on_error_goes_on_and_fails_at_the_end() {
    let (kube, mut handle) = mock();
    let scenario = tokio::spawn(async move {
        expect(
            &mut handle,
            "DELETE",
            &format!("{CONNECTORS}/missing"),
            404,
            not_found("missing"),
        )
        .await;
        expect(
            &mut handle,
            "DELETE",
            &format!("{CONNECTORS}/b"),
            200,
            deleted("b"),
        )
        .await;
    });
    let names = ["missing", "b"].map(String::from);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let e = ops::delete(&kube, &names, true, &mut out, &mut err)
        .await
        .unwrap_err();
    finish(scenario).await;
    assert_eq!(e.to_string(), "1 of 2 connector(s) could not be deleted");
    assert_eq!(String::from_utf8(out).unwrap(), "connector \"b\" deleted\n");
    assert_eq!(
        String::from_utf8(err).unwrap(),
        "error: connector \"missing\" not found in namespace \"demo\"\n"
    );

    // All found: success.
    let (kube, mut handle) = mock();
    let scenario = tokio::spawn(async move {
        expect(
            &mut handle,
            "DELETE",
            &format!("{CONNECTORS}/b"),
            200,
            deleted("b"),
        )
        .await;
    });
    ops::delete(
        &kube,
        &["b".to_string()],
        true,
        &mut Vec::new(),
        &mut Vec::new(),
    )
    .await
    .unwrap();
    finish(scenario).await;
}

#[tokio::test]
async fn logs_stream_from_the_connectors_pods() {
    let (kube, mut handle) = mock();
    let scenario = tokio::spawn(async move {
        expect(
            &mut handle,
            "GET",
            &format!("{CONNECTORS}/cat-facts"),
            200,
            connector_json("demo", "cat-facts", Some("Running")),
        )
        .await;
        let pods = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "cat-facts-abc", "namespace": "demo"}}
        ]});
        expect(
            &mut handle,
            "GET",
            "/api/v1/namespaces/demo/pods?&labelSelector=runnel.dev%2Fconnector%3Dcat-facts",
            200,
            pods,
        )
        .await;
        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(
            req.uri().path_and_query().unwrap().as_str(),
            "/api/v1/namespaces/demo/pods/cat-facts-abc/log?&follow=true"
        );
        send.send_response(
            Response::builder()
                .body(Body::from(b"line one\nline two\n".to_vec()))
                .unwrap(),
        );
    });
    let mut out = Vec::new();
    ops::logs(&kube, "cat-facts", true, &mut out).await.unwrap();
    finish(scenario).await;
    assert_eq!(String::from_utf8(out).unwrap(), "line one\nline two\n");
}
