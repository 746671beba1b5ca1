use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "pvce=info,tower_http=info".into()),
        )
        .init();
    match pvce::cli::run(pvce::cli::Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pvce: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
