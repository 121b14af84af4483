//! Resident memory of one bridge holding many simulated linked devices.
//!
//! Starts the given bridge binary (sim engine, a fresh data directory, a free
//! port, a stand-in worker that accepts every event), links and scans the
//! devices through the signed API and `/sim`, lets the bridge settle, then reads
//! its `VmRSS` from `/proc` and stops it. `device-bridge/benches/memory.sh`
//! builds the release binaries and runs this:
//!
//! ```text
//! link_many <path to wagate-bridge> [devices, default 1000]
//! ```

use std::error::Error;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::Router;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use wagate_contract::signing::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use wagate_contract::wire::{EVENTS_PATH, LINK_PATH};

const SECRET: &str = "bench-secret";
/// Enough to keep the bridge busy without measuring a queue of waiting requests.
const CONCURRENCY: usize = 16;
const SETTLE: Duration = Duration::from_secs(3);

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let binary = args.next().ok_or("usage: link_many <path to wagate-bridge> [devices]")?;
    let devices: u64 = args.next().map(|n| n.parse()).transpose()?.unwrap_or(1000);

    let data_dir = tempfile::tempdir()?;
    let worker_url = accept_all_events().await?;
    let port = free_port()?;
    let mut bridge = Command::new(&binary)
        .env("BRIDGE_SECRET", SECRET)
        .env("BRIDGE_PORT", port.to_string())
        .env("WAGATE_DATA_DIR", data_dir.path())
        .env("WAGATE_WORKER_URL", &worker_url)
        .env("WAGATE_ENGINE", "sim")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    let outcome = measure(&bridge, &format!("http://127.0.0.1:{port}"), devices).await;
    stop(&mut bridge)?;
    let (idle_kib, loaded_kib, elapsed) = outcome?;
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!("{:<28}{devices} in {:.1} s", "devices linked and scanned:", elapsed.as_secs_f64());
    println!("{:<28}{idle_kib} KiB ({:.1} MiB)", "VmRSS before linking:", mib(idle_kib));
    println!("{:<28}{loaded_kib} KiB ({:.1} MiB)", format!("VmRSS with {devices} linked:"), mib(loaded_kib));
    Ok(())
}

async fn measure(bridge: &Child, url: &str, devices: u64) -> Result<(u64, u64, Duration)> {
    let http = reqwest::Client::new();
    wait_until_healthy(&http, url).await?;
    let idle = vm_rss_kib(bridge.id())?;

    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut links = JoinSet::new();
    for n in 0..devices {
        let permit = permits.clone().acquire_owned().await?;
        let (http, url) = (http.clone(), url.to_owned());
        links.spawn(async move {
            let linked = link_and_scan(&http, &url, n).await;
            drop(permit);
            linked
        });
    }
    while let Some(linked) = links.join_next().await {
        linked??;
    }
    let elapsed = started.elapsed();

    tokio::time::sleep(SETTLE).await;
    let metrics = http.get(format!("{url}/metrics")).send().await?.text().await?;
    let connected = format!("wagate_bridge_devices{{state=\"connected\"}} {devices}");
    if !metrics.lines().any(|line| line == connected) {
        return Err(format!("the bridge does not report {devices} connected devices:\n{metrics}").into());
    }
    Ok((idle, vm_rss_kib(bridge.id())?, elapsed))
}

async fn link_and_scan(http: &reqwest::Client, url: &str, n: u64) -> Result<()> {
    let device_id = format!("dev_bench_{n:05}");
    let body = json!({ "device_id": device_id }).to_string();
    let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let signature = signing::sign(SECRET.as_bytes(), ts, "POST", LINK_PATH, body.as_bytes());
    http.post(format!("{url}{LINK_PATH}"))
        .header(TIMESTAMP_HEADER, ts.to_string())
        .header(SIGNATURE_HEADER, signature)
        .body(body)
        .send()
        .await?
        .error_for_status()?;
    http.post(format!("{url}/sim/devices/{device_id}/scan"))
        .bearer_auth(SECRET)
        .body(json!({ "phone": format!("62800{n:08}") }).to_string())
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

/// A worker that acknowledges every event, so the bridge's outbox drains as in production.
async fn accept_all_events() -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let worker = Router::new().route(EVENTS_PATH, post(|| async {}));
    tokio::spawn(async move { axum::serve(listener, worker).await });
    Ok(url)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn wait_until_healthy(http: &reqwest::Client, url: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if http.get(format!("{url}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("the bridge did not become healthy within 20 s".into())
}

fn vm_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or("no VmRSS in /proc/<pid>/status")?;
    Ok(line.split_whitespace().nth(1).ok_or("malformed VmRSS line")?.parse()?)
}

/// SIGTERM, so the bridge shuts down as in production; SIGKILL if it hangs.
fn stop(bridge: &mut Child) -> Result<()> {
    Command::new("kill").args(["-TERM", &bridge.id().to_string()]).status()?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if bridge.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bridge.kill()?;
    Err("the bridge did not stop within 15 s of SIGTERM".into())
}
