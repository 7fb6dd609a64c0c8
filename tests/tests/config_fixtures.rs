//! connect.yml handling through the real binaries: every broken fixture gives exactly its
//! expected error and exit code 2 (never a panic); every good fixture and example passes
//! `--check`; flags override the file; secrets are masked.

#![allow(clippy::unwrap_used)]

use std::{path::Path, process::Command};

use runnel_tests::{bin, workspace_root};

/// The `# connector:` and `# expect:` header lines of a fixture.
fn header(path: &Path) -> (String, Option<String>) {
    let text = std::fs::read_to_string(path).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("# {name}: ")).map(String::from))
    };
    (
        field("connector").unwrap_or_else(|| panic!("{} has no # connector: line", path.display())),
        field("expect"),
    )
}

fn check(connector: &str, file: &Path) -> std::process::Output {
    Command::new(bin(connector))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUNNEL_FIXTURE_TOKEN", "fixture-token-value")
        .env("BROKER_URL", "secret-broker.example:9093")
        .arg("--config")
        .arg(file)
        .arg("--check")
        .output()
        .unwrap()
}

/// Runs `connector` with `args`; asserts success and returns stdout.
fn passes(connector: &str, args: &[&str]) -> String {
    let out = Command::new(bin(connector)).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn yml_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn broken_configs_give_their_exact_error() {
    let files = yml_files(&workspace_root().join("tests/fixtures/bad"));
    assert!(files.len() >= 30, "only {} broken fixtures", files.len());
    let mut wrong = Vec::new();
    for f in &files {
        let (connector, expect) = header(f);
        let expect = expect.unwrap_or_else(|| panic!("{} has no # expect: line", f.display()));
        let out = check(&connector, f);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let want = format!("error: {}: {expect}\n", f.display());
        if out.status.code() != Some(2) || stderr != want || !out.stdout.is_empty() {
            wrong.push(format!(
                "{}: exit {:?}\n  want: {want}  got:  {stderr}",
                f.display(),
                out.status.code()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn good_fixtures_and_examples_pass_check() {
    let root = workspace_root();
    let mut files = yml_files(&root.join("tests/fixtures/good"));
    let examples = yml_files(&root.join("examples"));
    assert!(!examples.is_empty());
    for e in &examples {
        // Examples name their connector in meta.type (or type: when flat).
        let text = std::fs::read_to_string(e).unwrap();
        let kind = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("type: "))
            .unwrap()
            .trim();
        let connector = match kind {
            "test-connector" => "test-source",
            k => k,
        };
        let out = Command::new(bin(connector))
            .env("WEBHOOK_TOKEN", "t0ken-for-check")
            .env("MQTT_PASSWORD", "pa55-for-check")
            .env("RABBITMQ_PASSWORD", "pa55-for-check")
            .env("REDIS_PASSWORD", "pa55-for-check")
            .env("WS_API_KEY", "k3y-for-check")
            .env("KAFKA_BROKERS", "secret-broker.example:9093")
            .env("DB_PASSWORD", "pa55-for-check")
            .env("INFLUX_PASSWORD", "pa55-for-check")
            .arg("--config")
            .arg(e)
            .arg("--check")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            e.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The transforms fixture names modules that do not exist here; `--check` loads modules,
    // so it is checked for that refusal below instead.
    files.retain(|f| {
        f.extension().is_some() && !f.to_string_lossy().ends_with("secrets-transforms.yml")
    });
    for f in &files {
        let (connector, _) = header(f);
        let out = check(&connector, f);
        assert!(
            out.status.success(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let shown = String::from_utf8_lossy(&out.stdout);
        // `# shows: TEXT` lines: what the resolved config must say (Fluvio's meaning of a
        // field, read the way Fluvio read it).
        let text = std::fs::read_to_string(f).unwrap();
        for want in text.lines().filter_map(|l| l.strip_prefix("# shows: ")) {
            assert!(
                shown.lines().any(|l| l.trim() == want),
                "{}: --check does not show {want:?}:\n{shown}",
                f.display()
            );
        }
        for secret in [
            "fixture-token-value",
            "abc123secret",
            "secret-broker.example",
        ] {
            assert!(
                !shown.contains(secret),
                "{} shows a secret:\n{shown}",
                f.display()
            );
        }
    }
}

#[test]
fn check_resolves_aliases_secrets_and_formats() {
    let root = workspace_root().join("tests/fixtures/good");
    // The fixture's modules, stood in for by an example module (it has no init, so the
    // jolt spec is not read), and without the lookback this runtime refuses.
    let dir = tempfile::tempdir().unwrap();
    let text =
        std::fs::read_to_string(root.join("v010-http-source-secrets-transforms.yml")).unwrap();
    let text = &text[..text.find("  - uses: ./filter.wasm").unwrap()];
    let fixture = dir.path().join("v010-http-source-secrets-transforms.yml");
    std::fs::write(&fixture, text).unwrap();
    std::fs::create_dir_all(dir.path().join("modules/infinyon")).unwrap();
    std::fs::copy(
        runnel_tests::wasm("json_map"),
        dir.path().join("modules/infinyon/jolt@0.4.1.wasm"),
    )
    .unwrap();
    let out = Command::new(bin("http-source"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUNNEL_FIXTURE_TOKEN", "fixture-token-value")
        .env("RUNNEL_SMARTMODULE_DIR", dir.path().join("modules"))
        .env("RUNNEL_SMARTMODULE_CACHE", "off")
        .arg("--config")
        .arg(&fixture)
        .arg("--check")
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shown.contains("type: http-source"), "{shown}");
    assert!(shown.contains("X-Token: ******"), "{shown}");
    assert!(shown.contains("key=******"), "{shown}");
    assert!(shown.contains("uses: infinyon/jolt@0.4.1"), "{shown}");
    assert!(shown.contains("interval: 1m 30s"), "{shown}");

    let out = check("http-sink", &root.join("v020-topic-config-and-offsets.yml"));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("topic: orders"), "{shown}");
    assert!(shown.contains("from-end: 5"), "{shown}");
    assert!(shown.contains("create-topic: true"), "{shown}");

    let out = check(
        "http-sink",
        &root.join("flat-http-sink-with-inline-secrets.yml"),
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("Authorization: ******"), "{shown}");
    assert!(shown.contains("batch-size: 16000"), "{shown}");
}

#[test]
fn flags_override_the_file_and_work_alone() {
    let example = workspace_root().join("examples/test-source.yml");
    let example = example.to_str().unwrap();
    let shown = passes(
        "test-source",
        &[
            "--config",
            example,
            "--check",
            "--fluvio-topic",
            "other",
            "--count",
            "3",
            "--timeout",
            "5",
        ],
    );
    assert!(shown.contains("topic: other"), "{shown}");
    assert!(shown.contains("count: 3"), "{shown}");
    assert!(shown.contains("interval: 5ms"), "{shown}");

    // No file: flags alone, as `docker run IMAGE -- --endpoint=...` passes them.
    let shown = passes(
        "http-source",
        &[
            "--",
            "--endpoint=http://127.0.0.1:1/x",
            "--topic=t",
            "--interval=2s",
            "--check",
        ],
    );
    assert!(shown.contains("endpoint: http://127.0.0.1:1/x"), "{shown}");

    // Fluvio's `docker run ... -- --interval=10`: seconds, as its http connector counted.
    let shown = passes(
        "http-source",
        &[
            "--",
            "--endpoint=http://127.0.0.1:1/x",
            "--fluvio-topic=t",
            "--interval=10",
            "--check",
        ],
    );
    assert!(shown.contains("interval: 10s"), "{shown}");

    // A sink takes the shared delivery options as flags like its own.
    let shown = passes(
        "http-sink",
        &[
            "--endpoint=http://127.0.0.1:1/x",
            "--topic=t",
            "--concurrency=8",
            "--on-error=skip",
            "--check",
        ],
    );
    assert!(shown.contains("concurrency: 8"), "{shown}");
    assert!(shown.contains("on_error: skip"), "{shown}");

    // And a bad flag value names the field like a bad file would.
    let out = Command::new(bin("http-source"))
        .args([
            "--endpoint=http://127.0.0.1:1/x",
            "--topic=t",
            "--interval=10 parsecs",
            "--check",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: command line: http.interval: invalid duration \"10 parsecs\" (write it as 500ms, 10s, 1m or a number of seconds)\n"
    );
    let out = Command::new(bin("http-source"))
        .args(["--endpoint=http://x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: command line: meta.topic: missing field\n"
    );
}

#[test]
fn schema_is_json_schema_of_the_section() {
    for (connector, field) in [
        ("test-source", "interval"),
        ("http-source", "endpoint"),
        ("http-sink", "dead_letter_topic"),
    ] {
        let out = Command::new(bin(connector))
            .arg("--schema")
            .output()
            .unwrap();
        assert!(out.status.success());
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(v["properties"][field].is_object(), "{connector}: {v}");
        assert!(v["$schema"].as_str().unwrap().contains("json-schema.org"));
    }
}

#[test]
fn check_loads_transforms_and_names_a_missing_module() {
    let hub = runnel_tests::TempHub::new();
    let fixture =
        workspace_root().join("tests/fixtures/good/v010-http-source-secrets-transforms.yml");
    let out = Command::new(bin("http-source"))
        .env("RUNNEL_HUB", &hub.url)
        .env("RUNNEL_FIXTURE_TOKEN", "x")
        .env("RUNNEL_SMARTMODULE_DIR", hub.path("modules"))
        .arg("--config")
        .arg(&fixture)
        .arg("--check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("secrets-transforms.yml")
            && err.contains("transforms[0] (infinyon/jolt@0.4.1)")
            && err.contains("infinyon/jolt@0.4.1.wasm"),
        "{err}"
    );
}
