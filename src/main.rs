use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use velochat::cli::{Cli, Command, TenantCommand, UserCommand};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_json, matches!(cli.command, Command::Demo(_)));

    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Migrate(args) => {
            velochat::store::migrate(&args.database_url).await?;
            println!("database is up to date");
        }
        Command::Tenant(TenantCommand::Create(args)) => {
            let id = velochat::tenant_cli::create(args).await?;
            println!("{id}");
        }
        Command::User(UserCommand::Create(args)) => {
            let id = velochat::user_cli::create(args).await?;
            println!("{id}");
        }
        Command::Serve(args) => {
            let engine = velochat::engine::Engine::start(args.engine_config()?).await?;
            shutdown_signal().await?;
            engine.shutdown().await;
        }
        Command::Demo(args) => velochat::demo::run(args).await?,
    }
    Ok(())
}

/// Waits for Ctrl-C or SIGTERM, which container runtimes and service managers send.
async fn shutdown_signal() -> std::io::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = terminate.recv() => Ok(()),
    }
}

/// Logs to standard error; the demo keeps its transcript readable by logging warnings only.
fn init_tracing(json: bool, quiet: bool) {
    let default = if quiet {
        "warn"
    } else {
        "info,sqlx=warn,tower_http=warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
