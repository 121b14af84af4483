use std::io::IsTerminal;
use std::process::ExitCode;

use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;
use wagate_bridge::app::Bridge;
use wagate_bridge::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("wagate-bridge: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing();
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wagate-bridge: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Human-readable logs on a terminal, JSON lines when a supervisor collects them.
fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    if std::io::stdout().is_terminal() {
        logs.init();
    } else {
        logs.json().init();
    }
}

async fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let bridge = Bridge::start(&config).await?;
    let listener = TcpListener::bind((config.host, config.port))
        .await
        .map_err(|e| format!("cannot listen on {}:{}: {e}", config.host, config.port))?;
    tracing::info!(
        address = %listener.local_addr()?,
        engine = ?config.engine,
        data_dir = %config.data_dir.display(),
        worker_url = %config.worker_url,
        "wagate-bridge listening"
    );
    axum::serve(listener, bridge.router()).with_graceful_shutdown(shutdown_signal()).await?;
    bridge.stop().await;
    tracing::info!("wagate-bridge stopped");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
