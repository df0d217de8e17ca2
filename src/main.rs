//! The `callbridge` binary: parse the command line and hand over to the library.

use callbridge::cli::{Cli, Command, room_command};
use callbridge::config::Config;
use callbridge::daemon::Daemon;
use clap::Parser;
use std::process::ExitCode;

/// See the `mimalloc` entry in Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let platforms = callbridge::daemon::platforms();
    let config = match Config::load(cli.config.as_deref(), &platforms) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    callbridge::logging::init(config.secrets(), &platforms.iter().map(|p| p.log_filter()).collect::<Vec<_>>());
    let command = cli.command.unwrap_or(Command::Run);
    if let Command::CheckConfig = command {
        println!("# {} is valid; effective configuration (secrets redacted):", cli.config.as_deref().map_or("<defaults>".into(), |p| p.display().to_string()));
        for warning in callbridge::deployment::review(&config) {
            println!("# warning: {} {}", warning.key, warning.message);
            eprintln!("warning: {} {}", warning.key, warning.message);
        }
        print!("{}", config.to_redacted_toml());
        println!("\n# Effective policy of each listed chat (then of any other):");
        print!("{}", config.effective_policies());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Command::Doctor = command {
        let lines = runtime.block_on(callbridge::doctor::run(&config));
        return if callbridge::doctor::print(&lines) { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    }
    let result = runtime.block_on(async move {
        match command {
            Command::Run => Daemon::start(config).await?.run_until_signal().await,
            other => room_command(&config, other).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
