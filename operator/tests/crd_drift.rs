//! `crds/connector.yaml` and the chart's copy must be what `crdgen` prints from the types.

#![allow(clippy::unwrap_used)]

use kube::CustomResourceExt;
use runnel_operator::Connector;

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn crd_files_match_the_types() {
    let want = serde_yaml::to_string(&Connector::crd()).unwrap();
    for file in [
        "crds/connector.yaml",
        "charts/runnel-operator/crds/connector.yaml",
    ] {
        let got = std::fs::read_to_string(root().join(file)).unwrap_or_default();
        assert!(
            got == want,
            "{file} is out of date: run `cargo run -p runnel-operator --bin crdgen > {file}`"
        );
    }
}

#[test]
fn crd_has_the_names_kubectl_uses() {
    let crd = Connector::crd();
    assert_eq!(crd.spec.group, "runnel.dev");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.short_names, Some(vec!["conn".to_string()]));
    let v = &crd.spec.versions[0];
    assert_eq!(v.name, "v1alpha1");
    assert!(v.subresources.as_ref().unwrap().status.is_some());
    let cols: Vec<String> = v
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.to_uppercase())
        .collect();
    assert_eq!(cols, ["TYPE", "TOPIC", "STATUS", "AGE"]);
}

#[test]
fn the_example_manifest_is_a_valid_connector() {
    let text = std::fs::read_to_string(root().join("examples/kubernetes/connector.yaml")).unwrap();
    let c: Connector = serde_yaml::from_str(&text).unwrap();
    assert_eq!(c.spec.kind, "http-source");
    assert_eq!(c.spec.secrets[0].secret_key_ref.name, "cat-facts");
}
