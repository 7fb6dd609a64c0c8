//! The `runnel connector` subcommands against the Kubernetes API. Each takes a [`Kube`] and
//! writers, so tests run them against a mock API server and read what they print.

use std::{collections::BTreeMap, fmt, io::Write, path::Path};

use anyhow::{Result, anyhow, bail};
use futures_util::{AsyncBufReadExt, StreamExt, TryStreamExt, stream};
use k8s_openapi::{
    ByteString,
    api::{
        apps::v1::Deployment,
        core::v1::{Pod, Secret},
        events::v1::Event,
    },
    apimachinery::pkg::apis::meta::v1::OwnerReference,
    jiff::Timestamp,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, ListParams, LogParams, ObjectMeta, PostParams},
};
use runnel_operator::Connector;
use runnel_runtime::config::{ConfigError, FieldError, SecretStore};

use super::{
    Kube, OutputFormat,
    convert::{CONNECTOR_LABEL, Converted, convert, secret_name},
    format::{age_of, connector_table, phase, table},
};

/// A broken input file (connect.yml or secrets file): exit code 2, as the connectors use.
#[derive(Debug)]
pub struct InputError(pub String);

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

/// Whether `e` is about a file the user gave (exit 2) rather than the cluster (exit 1).
pub fn is_input_error(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ConfigError>().is_some() || e.downcast_ref::<InputError>().is_some()
}

/// What `create` needs, read and checked before the cluster is contacted.
#[derive(Debug)]
pub struct CreateInput {
    pub converted: Converted,
    /// A value for every declared secret.
    pub secret_values: BTreeMap<String, String>,
}

/// Reads the connect.yml and the secrets file. Every secret the Connector refers to needs a
/// value, from the secrets file or written inline in a flat file; the environment is not
/// read (a secret meant for a cluster does not come from this shell).
pub fn read_create_input(config: &Path, secrets: Option<&Path>) -> Result<CreateInput> {
    let label = config.display().to_string();
    let text = std::fs::read_to_string(config).map_err(|e| ConfigError {
        file: label.clone(),
        error: FieldError::new("", format!("cannot read the file: {e}")),
    })?;
    // The namespace is set when the cluster is known.
    let converted = convert(&text, "").map_err(|error| ConfigError {
        file: label.clone(),
        error,
    })?;
    let store = secrets
        .map(|p| SecretStore::load_file(p).map(SecretStore::without_env))
        .transpose()
        .map_err(InputError)?;
    let mut secret_values = BTreeMap::new();
    for (name, path) in &converted.secrets {
        // A flat file's inline value wins, as in the runtime.
        let value = converted
            .inline_values
            .get(name)
            .cloned()
            .or_else(|| store.as_ref().and_then(|s| s.get(name)));
        let Some(value) = value else {
            let message = match secrets {
                Some(file) => format!(
                    "secret {name:?} has no value in {}: add a line {name}=VALUE",
                    file.display()
                ),
                None => format!(
                    "secret {name:?} needs a value: pass --secrets FILE with a line {name}=VALUE"
                ),
            };
            return Err(ConfigError {
                file: label,
                error: FieldError::new(path.clone(), message),
            }
            .into());
        };
        secret_values.insert(name.clone(), value);
    }
    Ok(CreateInput {
        converted,
        secret_values,
    })
}

fn with_namespace(mut c: Connector, ns: &str) -> Connector {
    c.metadata.namespace = Some(ns.to_string());
    c
}

/// `create --dry-run`: the Connector as YAML, and which Secret keys would be written.
pub fn print_dry_run(input: CreateInput, ns: &str, out: &mut impl Write) -> Result<()> {
    let c = with_namespace(input.converted.connector, ns);
    out.write_all(serde_yaml::to_string(&c)?.as_bytes())?;
    if !input.secret_values.is_empty() {
        let keys: Vec<&str> = input.secret_values.keys().map(String::as_str).collect();
        writeln!(
            out,
            "# and the Secret {:?} with the keys {}",
            secret_name(&c.name_any()),
            keys.join(", ")
        )?;
    }
    Ok(())
}

/// An API error in a sentence: the server's message, not kube's debug dump.
fn api_error(e: kube::Error, what: impl fmt::Display) -> anyhow::Error {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => {
            anyhow!("{what}: {} ({})", s.message, s.code)
        }
        other => anyhow::Error::new(other).context(what.to_string()),
    }
}

fn is_status(e: &kube::Error, f: impl Fn(&kube::core::Status) -> bool) -> bool {
    matches!(e, kube::Error::Api(s) if f(s))
}

pub async fn create(
    kube: &Kube,
    input: CreateInput,
    replace: bool,
    out: &mut impl Write,
) -> Result<()> {
    let ns = kube.namespace.as_str();
    let mut c = with_namespace(input.converted.connector, ns);
    let name = c.name_any();
    let api: Api<Connector> = Api::namespaced(kube.client.clone(), ns);
    let pp = PostParams::default();
    let (created, verb) = match api.create(&pp, &c).await {
        Ok(created) => (created, "created"),
        Err(e) if is_status(&e, |s| s.is_already_exists()) => {
            if !replace {
                bail!(
                    "connector {name:?} already exists in namespace {ns:?}: pass --replace to replace it, or delete it first (runnel connector delete {name} -n {ns})"
                );
            }
            let existing = api
                .get(&name)
                .await
                .map_err(|e| api_error(e, format!("cannot read connector {name:?}")))?;
            c.metadata.resource_version = existing.metadata.resource_version;
            let replaced = api
                .replace(&name, &pp, &c)
                .await
                .map_err(|e| api_error(e, format!("cannot replace connector {name:?}")))?;
            (replaced, "replaced")
        }
        Err(e) => {
            return Err(api_error(
                e,
                format!("cannot create connector {name:?} in namespace {ns:?}"),
            ));
        }
    };
    writeln!(out, "connector {name:?} {verb} in namespace {ns:?}")?;

    if input.secret_values.is_empty() {
        return Ok(());
    }
    let secret_name = secret_name(&name);
    match write_secret(kube, &created, &secret_name, input.secret_values.clone()).await {
        Ok(verb) => {
            let keys: Vec<&str> = input.secret_values.keys().map(String::as_str).collect();
            writeln!(
                out,
                "secret {secret_name:?} {verb} with the keys {}",
                keys.join(", ")
            )?;
            Ok(())
        }
        Err(e) if verb == "created" => {
            // Without its secrets the connector cannot start: take it back.
            let undo = api.delete(&name, &DeleteParams::default()).await;
            let note = match undo {
                Ok(_) => "the connector was deleted again".to_string(),
                Err(u) => format!(
                    "deleting the connector again failed too ({}): delete it with runnel connector delete {name}",
                    api_error(u, "delete")
                ),
            };
            Err(e.context(note))
        }
        Err(e) => Err(e),
    }
}

/// Creates or replaces the Secret holding the connector's secret values, owned by the
/// Connector so that it goes when the Connector goes.
async fn write_secret(
    kube: &Kube,
    owner: &Connector,
    name: &str,
    values: BTreeMap<String, String>,
) -> Result<&'static str> {
    let api: Api<Secret> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let owner_ref = OwnerReference {
        api_version: Connector::api_version(&()).into_owned(),
        kind: Connector::kind(&()).into_owned(),
        name: owner.name_any(),
        uid: owner.metadata.uid.clone().unwrap_or_default(),
        ..OwnerReference::default()
    };
    let mut secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(kube.namespace.clone()),
            labels: Some([(CONNECTOR_LABEL.to_string(), owner.name_any())].into()),
            owner_references: owner.metadata.uid.is_some().then(|| vec![owner_ref]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(
            values
                .into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Secret::default()
    };
    let pp = PostParams::default();
    match api.create(&pp, &secret).await {
        Ok(_) => Ok("created"),
        Err(e) if is_status(&e, |s| s.is_already_exists()) => {
            let existing = api
                .get(name)
                .await
                .map_err(|e| api_error(e, format!("cannot read secret {name:?}")))?;
            secret.metadata.resource_version = existing.metadata.resource_version;
            api.replace(name, &pp, &secret)
                .await
                .map_err(|e| api_error(e, format!("cannot replace secret {name:?}")))?;
            Ok("replaced")
        }
        Err(e) => Err(api_error(e, format!("cannot create secret {name:?}"))),
    }
}

pub async fn list(
    kube: &Kube,
    all_namespaces: bool,
    output: OutputFormat,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<()> {
    let api: Api<Connector> = if all_namespaces {
        Api::all(kube.client.clone())
    } else {
        Api::namespaced(kube.client.clone(), &kube.namespace)
    };
    let mut items = api
        .list(&ListParams::default())
        .await
        .map_err(|e| api_error(e, "cannot list connectors"))?
        .items;
    items.sort_by(|a, b| {
        (a.metadata.namespace.as_deref(), a.metadata.name.as_deref())
            .cmp(&(b.metadata.namespace.as_deref(), b.metadata.name.as_deref()))
    });
    match output {
        OutputFormat::Table => {
            if items.is_empty() {
                if all_namespaces {
                    writeln!(err, "No connectors found.")?;
                } else {
                    writeln!(
                        err,
                        "No connectors found in namespace {:?}.",
                        kube.namespace
                    )?;
                }
            } else {
                out.write_all(
                    connector_table(&items, all_namespaces, Timestamp::now()).as_bytes(),
                )?;
            }
        }
        // The List kubectl prints, so the output feeds `kubectl apply -f -` and jq alike.
        OutputFormat::Json | OutputFormat::Yaml => {
            let doc = serde_json::json!({
                "apiVersion": "v1",
                "kind": "List",
                "items": items,
                "metadata": {"resourceVersion": ""},
            });
            if output == OutputFormat::Json {
                serde_json::to_writer_pretty(&mut *out, &doc)?;
                writeln!(out)?;
            } else {
                out.write_all(serde_yaml::to_string(&doc)?.as_bytes())?;
            }
        }
    }
    Ok(())
}

pub async fn delete(
    kube: &Kube,
    names: &[String],
    continue_on_error: bool,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<()> {
    let ns = kube.namespace.as_str();
    let api: Api<Connector> = Api::namespaced(kube.client.clone(), ns);
    let mut failed = 0usize;
    for name in names {
        let result = match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, |s| s.is_not_found()) => {
                Err(anyhow!("connector {name:?} not found in namespace {ns:?}"))
            }
            Err(e) => Err(api_error(e, format!("cannot delete connector {name:?}"))),
        };
        match result {
            Ok(()) => writeln!(out, "connector {name:?} deleted")?,
            Err(e) if continue_on_error => {
                writeln!(err, "error: {e:#}")?;
                failed += 1;
            }
            Err(e) => return Err(e),
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} connector(s) could not be deleted",
            names.len()
        );
    }
    Ok(())
}

async fn get_connector(kube: &Kube, name: &str) -> Result<Connector> {
    let api: Api<Connector> = Api::namespaced(kube.client.clone(), &kube.namespace);
    api.get(name).await.map_err(|e| {
        if is_status(&e, |s| s.is_not_found()) {
            anyhow!(
                "connector {name:?} not found in namespace {:?}",
                kube.namespace
            )
        } else {
            api_error(e, format!("cannot read connector {name:?}"))
        }
    })
}

fn selector(name: &str) -> ListParams {
    ListParams::default().labels(&format!("{CONNECTOR_LABEL}={name}"))
}

pub async fn describe(kube: &Kube, name: &str, out: &mut impl Write) -> Result<()> {
    let c = get_connector(kube, name).await?;
    let now = Timestamp::now();
    let deployments: Api<Deployment> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let uid = c.metadata.uid.clone().unwrap_or_default();
    // The operator's Deployment: labelled with the connector, else owned by it.
    let mut deployment = deployments
        .list(&selector(name))
        .await
        .map_err(|e| api_error(e, "cannot list deployments"))?
        .items
        .into_iter()
        .next();
    if deployment.is_none() {
        deployment = deployments
            .get_opt(name)
            .await
            .map_err(|e| api_error(e, "cannot read the deployment"))?
            .filter(|d| d.owner_references().iter().any(|o| o.uid == uid));
    }
    let events: Api<Event> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let dep_name = deployment.as_ref().map(|d| d.name_any());
    let mut events: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .map_err(|e| api_error(e, "cannot list events"))?
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                (!uid.is_empty() && r.uid.as_deref() == Some(uid.as_str()))
                    || (r.kind.as_deref() == Some("Connector") && r.name.as_deref() == Some(name))
                    || (r.kind.as_deref() == Some("Deployment")
                        && r.name.is_some()
                        && r.name == dep_name)
            })
        })
        .collect();
    events.sort_by_key(|e| event_time(e).map(|t| t.as_second()));

    let s = &c.spec;
    let mut w = String::new();
    let mut line = |k: &str, v: &str| w.push_str(&format!("{:<20}{v}\n", format!("{k}:")));
    line("Name", &c.name_any());
    line("Namespace", c.metadata.namespace.as_deref().unwrap_or(""));
    line("Type", &s.kind);
    line("Version", s.version.as_deref().unwrap_or("<default>"));
    let create = if s.create_topic {
        " (created when missing)"
    } else {
        ""
    };
    line("Topic", &format!("{}{create}", s.topic));
    line("State", &format!("{:?}", s.state).to_lowercase());
    line("Image", s.image.as_deref().unwrap_or("<default>"));
    line("Hub", s.hub.as_deref().unwrap_or("<the operator's>"));
    line("Age", &age_of(c.metadata.creation_timestamp.as_ref(), now));
    if !s.secrets.is_empty() {
        let refs: Vec<String> = s
            .secrets
            .iter()
            .map(|r| {
                format!(
                    "{} from {}/{}",
                    r.name, r.secret_key_ref.name, r.secret_key_ref.key
                )
            })
            .collect();
        line("Secrets", &refs.join(", "));
    }
    if !s.transforms.is_empty() {
        let uses: Vec<&str> = s.transforms.iter().map(|t| t.uses.as_str()).collect();
        line("Transforms", &uses.join(", "));
    }
    for (label, v) in [
        ("Config", &s.config),
        ("Producer", &s.producer),
        ("Consumer", &s.consumer),
    ] {
        if let Some(v) = v {
            w.push_str(&format!("{label}:\n"));
            for l in serde_yaml::to_string(v)?.lines() {
                w.push_str(&format!("  {l}\n"));
            }
        }
    }
    let status = c.status.clone().unwrap_or_default();
    w.push_str("Status:\n");
    w.push_str(&format!("  {:<18}{}\n", "Phase:", phase(&c)));
    if let Some(m) = &status.message {
        w.push_str(&format!("  {:<18}{m}\n", "Message:"));
    }
    w.push_str(&format!(
        "  {:<18}{}\n",
        "Ready replicas:", status.ready_replicas
    ));
    if let Some(g) = status.observed_generation {
        let current = c.metadata.generation.unwrap_or_default();
        w.push_str(&format!(
            "  {:<18}{g} (spec generation {current})\n",
            "Observed:"
        ));
    }
    if status.conditions.is_empty() {
        w.push_str("Conditions:         <none>\n");
    } else {
        w.push_str("Conditions:\n");
        let rows: Vec<Vec<String>> = status
            .conditions
            .iter()
            .map(|c| {
                vec![
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    age_of(Some(&c.last_transition_time), now),
                    c.message.clone(),
                ]
            })
            .collect();
        indent(
            &mut w,
            &table(&["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"], &rows),
        );
    }
    match &deployment {
        None => w.push_str("Deployment:         <none yet: the operator creates it>\n"),
        Some(d) => {
            let st = d.status.clone().unwrap_or_default();
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            w.push_str(&format!(
                "Deployment:         {}: {}/{want} ready, {} up to date, {} available\n",
                d.name_any(),
                st.ready_replicas.unwrap_or(0),
                st.updated_replicas.unwrap_or(0),
                st.available_replicas.unwrap_or(0),
            ));
            for cond in st.conditions.unwrap_or_default() {
                let why = cond.message.unwrap_or_default();
                w.push_str(&format!(
                    "  {} {} {}: {why}\n",
                    cond.type_,
                    cond.status,
                    cond.reason.unwrap_or_default()
                ));
            }
        }
    }
    if events.is_empty() {
        w.push_str("Events:             <none>\n");
    } else {
        w.push_str("Events:\n");
        let recent = &events[events.len().saturating_sub(10)..];
        let rows: Vec<Vec<String>> = recent
            .iter()
            .map(|e| {
                vec![
                    e.type_.clone().unwrap_or_default(),
                    e.reason.clone().unwrap_or_default(),
                    event_time(e)
                        .map(|t| super::format::human_age(now.as_second() - t.as_second()))
                        .unwrap_or_else(|| "<unknown>".into()),
                    e.reporting_controller.clone().unwrap_or_default(),
                    e.note.clone().unwrap_or_default(),
                ]
            })
            .collect();
        indent(
            &mut w,
            &table(&["TYPE", "REASON", "AGE", "FROM", "MESSAGE"], &rows),
        );
    }
    out.write_all(w.as_bytes())?;
    Ok(())
}

fn indent(w: &mut String, text: &str) {
    for l in text.lines() {
        w.push_str("  ");
        w.push_str(l);
        w.push('\n');
    }
}

/// When an event last happened: its series, its time, or when it was recorded.
fn event_time(e: &Event) -> Option<Timestamp> {
    e.series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.deprecated_last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

pub async fn logs(kube: &Kube, name: &str, follow: bool, out: &mut impl Write) -> Result<()> {
    get_connector(kube, name).await?;
    let pods: Api<Pod> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let mut names: Vec<String> = pods
        .list(&selector(name))
        .await
        .map_err(|e| api_error(e, "cannot list pods"))?
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    names.sort();
    if names.is_empty() {
        bail!(
            "connector {name:?} has no pods (label {CONNECTOR_LABEL}={name}) in namespace {:?}; see runnel connector describe {name}",
            kube.namespace
        );
    }
    let prefix = names.len() > 1;
    let lp = LogParams {
        follow,
        ..LogParams::default()
    };
    let mut streams = Vec::new();
    for pod in &names {
        let reader = pods
            .log_stream(pod, &lp)
            .await
            .map_err(|e| api_error(e, format!("cannot read the logs of pod {pod:?}")))?;
        let tag = if prefix {
            format!("[{pod}] ")
        } else {
            String::new()
        };
        let pod = pod.clone();
        streams.push(
            reader
                .lines()
                .map_ok(move |l| format!("{tag}{l}"))
                .map_err(move |e| anyhow!("reading the logs of pod {pod:?}: {e}"))
                .boxed(),
        );
    }
    // Several pods (a rollout in progress): their lines interleave as they come.
    let mut lines = stream::select_all(streams);
    while let Some(line) = lines.next().await {
        writeln!(out, "{}", line?)?;
        out.flush()?;
    }
    Ok(())
}
