//! `workfront-sim`: a local simulator of the Workfront endpoints offboard uses. See `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use offboard::sim::{parse_users, sample_users, Sim, SimConfig};

#[derive(Parser)]
#[command(
    name = "workfront-sim",
    version,
    about = "A local simulator of the Adobe Workfront user endpoints, for demos and tests."
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    bind: SocketAddr,
    /// JSON array of USER objects (default: built-in sample users).
    #[arg(long)]
    users: Option<PathBuf>,
    /// Delay added to every Workfront request, e.g. 50ms.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    latency: Duration,
    /// Concurrent requests admitted; more are answered 429 as Workfront does.
    #[arg(long, default_value_t = 10)]
    max_concurrency: usize,
    /// Probability (0..1) that a request fails with 500.
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Require this API key (header apiKey or ?apiKey=).
    #[arg(long, env = "WORKFRONT_SIM_API_KEY", conflicts_with = "api_key_file")]
    api_key: Option<String>,
    /// Read the API key from this file (one trailing newline trimmed).
    #[arg(long)]
    api_key_file: Option<PathBuf>,
    /// Serve the OAuth2 JWT exchange: the app's client id (with the --oauth-* flags below).
    #[arg(long, requires_all = ["oauth_client_secret", "oauth_customer_id", "oauth_user_id", "oauth_public_key"])]
    oauth_client_id: Option<String>,
    /// The app's client secret.
    #[arg(long)]
    oauth_client_secret: Option<String>,
    /// The `iss` the JWTs must carry.
    #[arg(long)]
    oauth_customer_id: Option<String>,
    /// The `sub` the JWTs must carry.
    #[arg(long)]
    oauth_user_id: Option<String>,
    /// PEM file of the public key the JWTs are verified with.
    #[arg(long)]
    oauth_public_key: Option<PathBuf>,
    /// Serve an IMS token endpoint (POST /ims/token/v3) for this client id.
    #[arg(long, requires = "ims_client_secret")]
    ims_client_id: Option<String>,
    /// The IMS credential's client secret.
    #[arg(long)]
    ims_client_secret: Option<String>,
    /// How long issued tokens are accepted.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    token_ttl: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    offboard::config::parse_duration(s)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if !(0.0..=1.0).contains(&args.fail_rate) {
        eprintln!("workfront-sim: --fail-rate must be between 0 and 1");
        return ExitCode::from(2);
    }
    let users = match &args.users {
        None => sample_users(),
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| parse_users(&t))
        {
            Ok(u) => u,
            Err(e) => {
                eprintln!("workfront-sim: {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
    };
    let api_key = match &args.api_key_file {
        None => args.api_key.clone(),
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Some(text.trim_end_matches(['\n', '\r']).to_string()),
            Err(e) => {
                eprintln!("workfront-sim: {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
    };
    let oauth = match (&args.oauth_client_id, &args.oauth_public_key) {
        (Some(id), Some(key)) => match std::fs::read_to_string(key) {
            Ok(pem) => Some(offboard::sim::SimOAuth {
                client_id: id.clone(),
                client_secret: args.oauth_client_secret.clone().unwrap_or_default(),
                customer_id: args.oauth_customer_id.clone().unwrap_or_default(),
                user_id: args.oauth_user_id.clone().unwrap_or_default(),
                public_key_pem: pem,
            }),
            Err(e) => {
                eprintln!("workfront-sim: {}: {e}", key.display());
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    let ims = args.ims_client_id.clone().map(|id| offboard::sim::SimIms {
        client_id: id,
        client_secret: args.ims_client_secret.clone().unwrap_or_default(),
    });
    let config = SimConfig {
        latency: args.latency,
        max_concurrency: args.max_concurrency.max(1),
        fail_rate: args.fail_rate,
        api_key,
        users,
        oauth,
        ims,
        token_ttl: args.token_ttl,
    };
    let count = config.users.len();
    match Sim::new(config).serve(args.bind).await {
        Ok(running) => {
            eprintln!(
                "workfront-sim listening on {} with {count} users",
                running.base_url()
            );
            shutdown_signal().await;
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("workfront-sim: cannot listen on {}: {e}", args.bind);
            ExitCode::FAILURE
        }
    }
}

/// SIGINT or SIGTERM (containers stop with SIGTERM).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
