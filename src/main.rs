//! The `offboard` command line. See `offboard --help`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "offboard",
    version,
    about = "Deactivates Adobe Workfront users when the HR system says an employee left.",
    long_about = "Deactivates Adobe Workfront users when the HR system says an employee left.\n\n\
    Configuration: built-in defaults, then --config FILE (or OFFBOARD_CONFIG), then OFFBOARD__SECTION__KEY environment variables.\n\
    With no command, `serve` runs."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default): webhooks, the admin API and the operator console (/console).
    /// Applies database migrations on start.
    Serve {
        /// TOML configuration file (else OFFBOARD_CONFIG).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Zero-setup tour: simulator + service + a signed termination, step by step.
    Demo,
    /// Validate the configuration and print the effective settings with secrets redacted.
    CheckConfig {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Also make one read-only call to Workfront to prove the credentials.
        #[arg(long)]
        connect: bool,
    },
    /// Exit 0 when GET /readyz answers 200 (for container HEALTHCHECK).
    Healthcheck {
        #[arg(default_value = "http://127.0.0.1:8080/readyz")]
        url: String,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Operator commands over the admin API (OFFBOARD_URL, OFFBOARD_ADMIN_TOKEN).
    #[command(subcommand)]
    Actions(offboard::admin_client::ActionsCommand),
    /// Check a list of leavers against Workfront; exit 1 when one still has access (a gap).
    Reconcile(offboard::admin_client::reconcile::ReconcileArgs),
    /// Print the headers source NAME expects for the body on standard input (for curl).
    Sign {
        #[arg(long)]
        source: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("offboard: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve { config: None }) {
            Command::Serve { config } => serve(config).await,
            Command::Demo => offboard::demo::run().await,
            Command::CheckConfig { config, connect } => {
                offboard::cli::check_config(config.as_deref(), connect).await
            }
            Command::Healthcheck { url } => offboard::cli::healthcheck(&url).await,
            Command::Migrate { config } => offboard::cli::migrate(config.as_deref()).await,
            Command::Actions(cmd) => offboard::admin_client::run(cmd).await,
            Command::Reconcile(args) => offboard::admin_client::reconcile::run(args).await,
            Command::Sign { source, config } => offboard::cli::sign(config.as_deref(), &source),
        }
    })
}

async fn serve(config: Option<PathBuf>) -> ExitCode {
    let settings = match offboard::cli::load_or_exit(config.as_deref()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    offboard::telemetry::init(&settings.log);
    match offboard::Application::build(settings).await {
        Ok(app) => {
            app.run_until_signal().await;
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("offboard: cannot start: {e}");
            ExitCode::FAILURE
        }
    }
}
