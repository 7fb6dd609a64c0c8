//! The peer of the http-sink benchmark: a bare reqwest client in its own process, as the
//! connector is, POSTing N bodies shaped like the benchmark's records with C requests in
//! flight. Usage: peer-http-post URL N C

use std::process::ExitCode;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(url), Some(Ok(n)), Some(Ok(c))) = (
        args.get(1).cloned(),
        args.get(2).map(|s| s.parse::<usize>()),
        args.get(3).map(|s| s.parse::<usize>()),
    ) else {
        eprintln!("usage: peer-http-post URL N CONCURRENCY");
        return ExitCode::from(2);
    };
    let client = reqwest::Client::new();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..c.max(1) {
        let (client, url) = (client.clone(), url.clone());
        tasks.spawn(async move {
            for i in (t..n).step_by(c.max(1)) {
                let body = format!("{{\"i\":{i},\"pad\":\"{}\"}}", "y".repeat(80));
                match client.post(&url).body(body).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                    }
                    Ok(r) => return Err(format!("status {}", r.status())),
                    Err(e) => return Err(format!("{e:?}")),
                }
            }
            Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(e)) | Err(e) = r.map_err(|e| e.to_string()) {
            eprintln!("peer-http-post: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
