//! The `sessionlake` binary: parses the configuration, runs one subcommand,
//! and turns any error chain into one line and a non-zero exit code.
//!
//! ```text
//!  generate ──> file.jsonl.bz2 ──ingest──> landingzone/ ──raw──> r_session_events ──sessions──> uc_delta_session_events
//!                                                              └──> r_session_events_rejected             │ serve
//!                                          db init|reset ──> Cassandra session_events.{api_start_session_by_hour, api_completed_sessions}
//!                                          api ──> REST: GET /models/... (Cassandra), POST /events ──> r_session_events
//! ```

mod commands;
mod config;
mod report;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::config::{Command, Config};

fn main() -> ExitCode {
    let config = Config::parse();
    let filter = EnvFilter::try_new(&config.global.log).unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match &config.command {
            Command::Generate(args) => commands::generate(&config.global, args),
            Command::Ingest(args) => commands::ingest(&config.global, args).await,
            Command::Raw => commands::raw(&config.global).await,
            Command::Sessions(args) => commands::sessions(&config.global, args).await,
            Command::Db(args) => commands::db(&config.global, args).await,
            Command::Serve(args) => commands::serve(&config.global, args).await,
            Command::Api(args) => commands::api(&config.global, args).await,
            Command::Run(args) => commands::run(&config.global, args).await,
            Command::Up(args) => commands::up(&config.global, args).await,
            Command::Insights(args) => commands::insights(&config.global, args).await,
            Command::Sql(args) => commands::sql(&config.global, args).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each said once: many library
/// errors repeat their source's text in their own, which `{:#}` would print
/// again for every level (found by the torture suite's full-disk test).
fn one_line(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}
