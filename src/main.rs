use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    pvce::logging::init();
    match pvce::cli::run(pvce::cli::Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "pvce: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
