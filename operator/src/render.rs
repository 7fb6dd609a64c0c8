//! What a Connector becomes: its connect.yml (in a ConfigMap) and the Deployment that runs
//! it. Pure functions of the spec and the operator's settings, so they are tested without
//! an API server; a spec that cannot run is an [`Invalid`] with the reason.

use std::collections::BTreeMap;

use k8s_openapi::api::{
    apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy},
    core::v1::{
        Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort,
        EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction, PodSecurityContext, PodSpec,
        PodTemplateSpec, Probe, SeccompProfile, SecurityContext, Volume, VolumeMount,
    },
};
use k8s_openapi::apimachinery::pkg::{
    apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference},
    util::intstr::IntOrString,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use runnel_catalog::Entry;
use runnel_config::SecretStore;

use crate::crd::{ConnectorSpec, State};

/// Where the connect.yml is mounted in the connector's container.
pub const CONFIG_DIR: &str = "/etc/runnel";
/// A writable directory for the embedded hub when the connector has no remote hub.
pub const DATA_DIR: &str = "/var/lib/runnel";
/// The port of the connector's /healthz, /readyz and /metrics server.
pub const HEALTH_PORT: i32 = 9100;
/// The label that ties a Deployment and its pods to their Connector.
pub const CONNECTOR_LABEL: &str = "runnel.dev/connector";
/// The pod annotation that changes with the connect.yml, so a new config rolls the pod.
pub const CONFIG_HASH: &str = "runnel.dev/config-hash";
/// The user the connector images run as.
pub const RUN_AS_USER: i64 = 65532;

/// The operator's settings that shape every connector.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Images are `<registry>/runnel-<type>:<version>`.
    pub registry: String,
    /// The hub connectors use unless their spec names one; `None` is the embedded hub.
    pub hub: Option<String>,
    /// The connector version when the spec has none.
    pub default_version: String,
}

/// A spec that cannot run, and why (for status and events).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

fn invalid(field: &str, message: impl Into<String>) -> Invalid {
    Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

/// The objects one Connector owns.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub config_map: ConfigMap,
    pub deployment: Deployment,
    /// The connect.yml the ConfigMap holds.
    pub connect_yml: String,
}

/// The name of the ConfigMap and the Deployment of connector `name`.
pub fn object_name(name: &str) -> String {
    format!("runnel-{name}")
}

/// The catalogue entry of a type name or Fluvio alias (an alias shared by a source and a
/// sink means the source, as in Fluvio).
pub fn connector_type(kind: &str) -> Option<&'static Entry> {
    runnel_catalog::resolve(kind, None).ok()
}

/// Where a connect.yml path is written in a Connector's spec: the section is `spec.config`,
/// meta's fields are the spec's own.
fn spec_path(path: &str, section: &str) -> String {
    let rest = |p: &str| -> Option<String> {
        path.strip_prefix(p)
            .map(|r| r.trim_start_matches('.').to_string())
    };
    let (base, rest) = if let Some(r) = rest(section) {
        ("spec.config", r)
    } else if let Some(r) = rest("meta.topic") {
        ("spec.topic", r)
    } else if let Some(r) = rest("meta") {
        ("spec", r)
    } else if let Some(r) = rest("transforms") {
        ("spec.transforms", r)
    } else {
        ("spec", path.to_string())
    };
    runnel_config::join_path(base, &rest)
}

/// Every `${{ secrets.NAME }}` in the string values of `v`.
fn secrets_used(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(i) = rest.find("${{") {
                rest = &rest[i + 3..];
                let Some(end) = rest.find("}}") else { break };
                let inner = rest[..end].trim();
                if let Some(name) = inner.strip_prefix("secrets.") {
                    out.push(name.trim().to_string());
                }
                rest = &rest[end + 2..];
            }
        }
        Value::Array(a) => a.iter().for_each(|x| secrets_used(x, out)),
        Value::Object(m) => m.values().for_each(|x| secrets_used(x, out)),
        _ => {}
    }
}

/// Checks what the operator can check without running the connector: the type, the topic,
/// the hub URL, the shape of the settings and that every secret used is referenced.
pub fn validate(spec: &ConnectorSpec) -> Result<&'static Entry, Invalid> {
    let entry = runnel_catalog::resolve(&spec.kind, None).map_err(|m| invalid("spec.type", m))?;
    runnel_config::validate_topic(&spec.topic).map_err(|e| invalid("spec.topic", e.to_string()))?;
    for (field, v) in [
        ("spec.config", &spec.config),
        ("spec.producer", &spec.producer),
        ("spec.consumer", &spec.consumer),
    ] {
        if let Some(v) = v
            && !v.is_object()
        {
            return Err(invalid(field, "must be a mapping of settings"));
        }
    }
    if let Some(v) = &spec.version
        && (v.is_empty()
            || v.len() > 128
            || !v
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(invalid(
            "spec.version",
            format!("{v:?} is not a valid image tag"),
        ));
    }
    if let Some(image) = &spec.image
        && image.trim().is_empty()
    {
        return Err(invalid("spec.image", "must not be empty"));
    }
    if let Some(hub) = &spec.hub
        && !["local:", "kafka://", "nats://"]
            .iter()
            .any(|p| hub.starts_with(p))
    {
        return Err(invalid(
            "spec.hub",
            format!("{hub:?} is not a hub URL (local:PATH, kafka://HOST:PORT or nats://HOST:PORT)"),
        ));
    }
    let mut declared = Vec::new();
    for (i, s) in spec.secrets.iter().enumerate() {
        if !runnel_config::secrets::valid_name(&s.name) {
            return Err(invalid(
                &format!("spec.secrets[{i}].name"),
                format!(
                    "{:?} is not a valid secret name (letters, digits and _, not starting with a digit)",
                    s.name
                ),
            ));
        }
        if s.secret_key_ref.name.is_empty() || s.secret_key_ref.key.is_empty() {
            return Err(invalid(
                &format!("spec.secrets[{i}].secretKeyRef"),
                "needs the Secret's name and key",
            ));
        }
        if declared.contains(&s.name) {
            return Err(invalid(
                &format!("spec.secrets[{i}].name"),
                format!("secret {:?} is listed twice", s.name),
            ));
        }
        declared.push(s.name.clone());
    }
    let mut used = Vec::new();
    for v in [&spec.config, &spec.producer, &spec.consumer]
        .into_iter()
        .flatten()
    {
        secrets_used(v, &mut used);
    }
    for t in &spec.transforms {
        t.with
            .values()
            .for_each(|w| secrets_used(&Value::String(w.clone()), &mut used));
    }
    if let Some(missing) = used.iter().find(|u| !declared.contains(u)) {
        return Err(invalid(
            "spec.secrets",
            format!(
                "secret {missing:?} is used in the settings but not listed here with a secretKeyRef"
            ),
        ));
    }
    Ok(entry)
}

/// The connect.yml (versioned format, `apiVersion: 0.1.0`) of connector `name`.
pub fn connect_yml(
    name: &str,
    spec: &ConnectorSpec,
    settings: &Settings,
) -> Result<String, Invalid> {
    let entry = validate(spec)?;
    let (kind, section) = (entry.kind, entry.section);
    let mut meta = json!({
        "version": spec.version.as_deref().unwrap_or(&settings.default_version),
        "name": name,
        "type": kind,
        "topic": spec.topic,
        "create-topic": spec.create_topic,
    });
    if !spec.secrets.is_empty() {
        meta["secrets"] = spec
            .secrets
            .iter()
            .map(|s| json!({ "name": s.name }))
            .collect();
    }
    if let Some(p) = &spec.producer {
        meta["producer"] = p.clone();
    }
    if let Some(c) = &spec.consumer {
        meta["consumer"] = c.clone();
    }
    let mut doc = json!({ "apiVersion": "0.1.0", "meta": meta });
    doc[section] = spec.config.clone().unwrap_or_else(|| json!({}));
    if !spec.transforms.is_empty() {
        doc["transforms"] = serde_json::to_value(&spec.transforms)
            .map_err(|e| invalid("spec.transforms", e.to_string()))?;
    }
    let doc = serde_yaml::to_value(&doc).map_err(|e| invalid("spec", e.to_string()))?;
    let body = serde_yaml::to_string(&doc).map_err(|e| invalid("spec", e.to_string()))?;
    // The connector's own checks, as its --check runs them, on the document itself (not
    // parsed back from the text); secret values live in Kubernetes Secrets, so stand-ins
    // take their place here.
    entry
        .check(doc, &SecretStore::stand_ins("secret"))
        .map_err(|e| invalid(&spec_path(&e.path, section), e.message))?;
    Ok(format!(
        "# Written by runnel-operator from Connector {name}; edit the Connector, not this.\n{body}"
    ))
}

fn labels(name: &str, kind: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), format!("runnel-{kind}")),
        ("app.kubernetes.io/instance".into(), name.to_string()),
        (
            "app.kubernetes.io/managed-by".into(),
            "runnel-operator".into(),
        ),
        (CONNECTOR_LABEL.into(), name.to_string()),
    ])
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("health".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// The ConfigMap and Deployment of connector `name` in `namespace`, owned by `owner`.
pub fn render(
    name: &str,
    namespace: &str,
    spec: &ConnectorSpec,
    owner: Option<OwnerReference>,
    settings: &Settings,
) -> Result<Rendered, Invalid> {
    let kind = validate(spec)?.kind;
    let yml = connect_yml(name, spec, settings)?;
    let version = spec.version.as_deref().unwrap_or(&settings.default_version);
    let image = spec.image.clone().unwrap_or_else(|| {
        format!(
            "{}/runnel-{kind}:{version}",
            settings.registry.trim_end_matches('/')
        )
    });
    let object = object_name(name);
    let labels = labels(name, kind);
    let meta = ObjectMeta {
        name: Some(object.clone()),
        namespace: Some(namespace.to_string()),
        labels: Some(labels.clone()),
        owner_references: owner.map(|o| vec![o]),
        ..ObjectMeta::default()
    };

    let mut hasher = Sha256::new();
    hasher.update(yml.as_bytes());
    for s in &spec.secrets {
        hasher.update(format!(
            "\n{}={}/{}",
            s.name, s.secret_key_ref.name, s.secret_key_ref.key
        ));
    }
    let hash: String = hasher.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();

    let hub = spec
        .hub
        .clone()
        .or_else(|| settings.hub.clone())
        .unwrap_or_else(|| format!("local:{DATA_DIR}/hub.db"));
    let mut envs = vec![
        env("RUNNEL_HUB", hub),
        env("RUNNEL_HEALTH_ADDR", format!("0.0.0.0:{HEALTH_PORT}")),
        env("RUNNEL_LOG_FORMAT", "json"),
    ];
    for s in &spec.secrets {
        envs.push(EnvVar {
            name: s.name.clone(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(s.secret_key_ref.clone()),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        });
    }

    let container = Container {
        name: "connector".into(),
        image: Some(image),
        args: Some(vec!["--config".into(), format!("{CONFIG_DIR}/connect.yml")]),
        env: Some(envs),
        ports: Some(vec![ContainerPort {
            name: Some("health".into()),
            container_port: HEALTH_PORT,
            ..ContainerPort::default()
        }]),
        liveness_probe: Some(probe("/healthz", 10, 3)),
        readiness_probe: Some(probe("/readyz", 5, 2)),
        resources: spec.resources.clone(),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS_USER),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "config".into(),
                mount_path: CONFIG_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "data".into(),
                mount_path: DATA_DIR.into(),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    };

    let deployment = Deployment {
        metadata: meta.clone(),
        spec: Some(DeploymentSpec {
            replicas: Some(match spec.state {
                State::Running => 1,
                State::Stopped => 0,
            }),
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([(CONNECTOR_LABEL.into(), name.to_string())])),
                ..LabelSelector::default()
            },
            // Never two copies at once: they would share a consumer id or an MQTT client id.
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                ..DeploymentStrategy::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(BTreeMap::from([(CONFIG_HASH.into(), hash)])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUN_AS_USER),
                        run_as_group: Some(RUN_AS_USER),
                        fs_group: Some(RUN_AS_USER),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    volumes: Some(vec![
                        Volume {
                            name: "config".into(),
                            config_map: Some(ConfigMapVolumeSource {
                                name: object.clone(),
                                ..ConfigMapVolumeSource::default()
                            }),
                            ..Volume::default()
                        },
                        Volume {
                            name: "data".into(),
                            empty_dir: Some(EmptyDirVolumeSource::default()),
                            ..Volume::default()
                        },
                    ]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    };
    let config_map = ConfigMap {
        metadata: meta,
        data: Some(BTreeMap::from([("connect.yml".into(), yml.clone())])),
        ..ConfigMap::default()
    };
    Ok(Rendered {
        config_map,
        deployment,
        connect_yml: yml,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::crd::{SecretRef, Transform};
    use k8s_openapi::api::core::v1::SecretKeySelector;

    pub(crate) fn settings() -> Settings {
        Settings {
            registry: "registry.example/runnel".into(),
            hub: Some("nats://nats.runnel:4222".into()),
            default_version: "0.1.0".into(),
        }
    }

    pub(crate) fn spec() -> ConnectorSpec {
        serde_json::from_value(json!({
            "type": "http-source",
            "topic": "cat-facts",
            "createTopic": true,
            "config": {
                "endpoint": "https://catfact.ninja/fact",
                "interval": "10s",
                "headers": ["Authorization: Bearer ${{ secrets.CAT_TOKEN }}"]
            },
            "secrets": [{"name": "CAT_TOKEN", "secretKeyRef": {"name": "cat", "key": "token"}}]
        }))
        .unwrap()
    }

    #[test]
    fn connect_yml_is_the_versioned_format_the_connector_reads() {
        let yml = connect_yml("cat-facts", &spec(), &settings()).unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&yml).unwrap();
        assert_eq!(v["apiVersion"], "0.1.0");
        assert_eq!(v["meta"]["name"], "cat-facts");
        assert_eq!(v["meta"]["type"], "http-source");
        assert_eq!(v["meta"]["version"], "0.1.0");
        assert_eq!(v["meta"]["create-topic"], true);
        assert_eq!(v["meta"]["secrets"][0]["name"], "CAT_TOKEN");
        assert_eq!(v["http"]["endpoint"], "https://catfact.ninja/fact");
        // The secret stays a reference; its value is never in the ConfigMap.
        assert_eq!(
            v["http"]["headers"][0],
            "Authorization: Bearer ${{ secrets.CAT_TOKEN }}"
        );
    }

    #[test]
    fn deployment_runs_the_image_hardened_with_probes_and_secret_env() {
        let r = render("cat-facts", "apps", &spec(), None, &settings()).unwrap();
        let d = r.deployment.spec.unwrap();
        assert_eq!(d.replicas, Some(1));
        let pod = d.template.spec.unwrap();
        let c = &pod.containers[0];
        assert_eq!(
            c.image.as_deref(),
            Some("registry.example/runnel/runnel-http-source:0.1.0")
        );
        assert_eq!(
            c.args.as_ref().unwrap(),
            &vec!["--config".to_string(), "/etc/runnel/connect.yml".into()]
        );
        let envs = c.env.as_ref().unwrap();
        let hub = envs.iter().find(|e| e.name == "RUNNEL_HUB").unwrap();
        assert_eq!(hub.value.as_deref(), Some("nats://nats.runnel:4222"));
        let token = envs.iter().find(|e| e.name == "CAT_TOKEN").unwrap();
        assert!(token.value.is_none());
        let r#ref = token
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!((r#ref.name.as_str(), r#ref.key.as_str()), ("cat", "token"));
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop,
            Some(vec!["ALL".to_string()])
        );
        let live = c
            .liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(live.path.as_deref(), Some("/healthz"));
        let ready = c
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(ready.path.as_deref(), Some("/readyz"));
        assert_eq!(c.ports.as_ref().unwrap()[0].container_port, HEALTH_PORT);
    }

    #[test]
    fn spec_hub_image_and_stopped_state_win() {
        let mut s = spec();
        s.hub = Some("kafka://kafka:9092".into());
        s.image = Some("mine/http:dev".into());
        s.state = State::Stopped;
        let r = render("x", "ns", &s, None, &settings()).unwrap();
        let d = r.deployment.spec.unwrap();
        assert_eq!(d.replicas, Some(0));
        let c = &d.template.spec.unwrap().containers[0];
        assert_eq!(c.image.as_deref(), Some("mine/http:dev"));
        let hub = c
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.name == "RUNNEL_HUB")
            .unwrap();
        assert_eq!(hub.value.as_deref(), Some("kafka://kafka:9092"));
    }

    #[test]
    fn no_hub_anywhere_means_the_embedded_hub_on_a_writable_volume() {
        let mut st = settings();
        st.hub = None;
        let r = render("x", "ns", &spec(), None, &st).unwrap();
        let c = &r.deployment.spec.unwrap().template.spec.unwrap().containers[0];
        let hub = c
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.name == "RUNNEL_HUB")
            .unwrap();
        assert_eq!(hub.value.as_deref(), Some("local:/var/lib/runnel/hub.db"));
    }

    #[test]
    fn a_config_change_changes_the_pod_annotation() {
        let a = render("x", "ns", &spec(), None, &settings()).unwrap();
        let mut s = spec();
        s.config.as_mut().unwrap()["interval"] = json!("20s");
        let b = render("x", "ns", &s, None, &settings()).unwrap();
        let hash = |r: &Rendered| {
            r.deployment
                .spec
                .as_ref()
                .unwrap()
                .template
                .metadata
                .as_ref()
                .unwrap()
                .annotations
                .as_ref()
                .unwrap()[CONFIG_HASH]
                .clone()
        };
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(
            hash(&a),
            hash(&render("x", "ns", &spec(), None, &settings()).unwrap())
        );
    }

    /// A change to a valid spec, the field the error must name and a phrase of its message.
    type Case = (Box<dyn Fn(&mut ConnectorSpec)>, &'static str, &'static str);

    #[test]
    fn invalid_specs_name_the_field() {
        let cases: Vec<Case> = vec![
            (
                Box::new(|s| s.kind = "ftp-source".into()),
                "spec.type",
                "unknown connector type",
            ),
            (
                Box::new(|s| s.topic = "no spaces".into()),
                "spec.topic",
                "invalid topic name",
            ),
            (
                Box::new(|s| s.config = Some(json!("x"))),
                "spec.config",
                "mapping",
            ),
            (
                Box::new(|s| s.hub = Some("redis://x".into())),
                "spec.hub",
                "not a hub URL",
            ),
            (Box::new(|s| s.secrets.clear()), "spec.secrets", "CAT_TOKEN"),
            (
                Box::new(|s| s.version = Some("a b".into())),
                "spec.version",
                "image tag",
            ),
            (
                Box::new(|s| {
                    s.secrets.push(SecretRef {
                        name: "1BAD".into(),
                        secret_key_ref: SecretKeySelector {
                            name: "n".into(),
                            key: "k".into(),
                            optional: None,
                        },
                    })
                }),
                "spec.secrets[1].name",
                "not a valid secret name",
            ),
            // The connector's own rules, from the catalogue.
            (
                Box::new(|s| s.config.as_mut().unwrap()["endpiont"] = json!("x")),
                "spec.config.endpiont",
                "unknown field, expected one of endpoint",
            ),
            (
                Box::new(|s| s.config.as_mut().unwrap()["endpoint"] = json!("ftp://x")),
                "spec.config.endpoint",
                "unsupported scheme \"ftp\"",
            ),
            (
                Box::new(|s| s.config.as_mut().unwrap()["interval"] = json!("10 parsecs")),
                "spec.config.interval",
                "invalid duration",
            ),
            (
                Box::new(|s| s.producer = Some(json!({"batch-size": 0}))),
                "spec.producer.batch-size",
                "must be more than 0",
            ),
        ];
        for (change, field, text) in cases {
            let mut s = spec();
            change(&mut s);
            let e = render("x", "ns", &s, None, &settings()).unwrap_err();
            assert_eq!(e.field, field, "{e}");
            assert!(e.message.contains(text), "{e}");
        }
    }

    #[test]
    fn aliases_and_transforms() {
        let mut s = spec();
        s.kind = "http".into();
        s.transforms.push(Transform {
            uses: "runnel/jolt@0.1.0".into(),
            with: BTreeMap::from([("spec".into(), "[]".into())]),
        });
        let yml = connect_yml("x", &s, &settings()).unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&yml).unwrap();
        assert_eq!(v["meta"]["type"], "http-source");
        assert_eq!(v["transforms"][0]["uses"], "runnel/jolt@0.1.0");
        assert_eq!(v["transforms"][0]["with"]["spec"], "[]");
    }
}
