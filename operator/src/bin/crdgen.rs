//! Prints the Connector CRD as YAML: `cargo run -p runnel-operator --bin crdgen > crds/connector.yaml`.

use std::process::ExitCode;

use kube::CustomResourceExt;
use runnel_operator::Connector;

fn main() -> ExitCode {
    match serde_yaml::to_string(&Connector::crd()) {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("crdgen: cannot print the CRD: {e}");
            ExitCode::FAILURE
        }
    }
}
