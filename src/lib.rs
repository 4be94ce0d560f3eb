//! tidegate: an HTTP/WebSocket gateway for event streams with Kafka's model — a durable,
//! partitioned log on redb, publish and fetch over HTTP, JWT-scoped topics.
//!
//! # Layout
//! - [`config`]: the one `Config`, from flags and `TIDEGATE_*` environment variables.
//! - [`startup`]: [`startup::Application`] binds the server over a log; used by `main`
//!   and by the tests.
//! - [`auth`]: JWT verification, scopes, token minting (no HTTP here); [`auth_setup`]
//!   turns the configuration into a verifier and keeps the first-run secret.
//! - [`log`]: the partitioned log behind the [`log::EventLog`] trait, committed group offsets
//!   behind [`log::OffsetStore`] (no HTTP here).
//! - [`groups`]: consumer groups: membership, sticky assignment, generations, positions.
//! - [`records`]: what a producer may publish, whatever the transport.
//! - [`http`]: actix handlers, error mapping and the OpenAPI document.
//! - [`wire`]: JSON encoding of stored records shared by every transport.
//! - [`metrics`]: the Prometheus registry behind `/metrics`.
//! - [`telemetry`]: tracing subscriber setup.
//!
//! See ARCHITECTURE.md for the invariants that hold between these modules.

pub mod auth;
pub mod auth_setup;
pub mod config;
pub mod echo;
pub mod groups;
pub mod http;
pub mod json;
pub mod log;
pub mod metrics;
pub mod panics;
pub mod private_fs;
pub mod push;
pub mod records;
pub mod sse;
pub mod startup;
pub mod telemetry;
pub mod wire;
pub mod ws;

use std::process::ExitCode;

use clap::Parser;

use config::{Cli, Command, Config};
use startup::Application;

/// Entry point of the binary: parses the command line and runs it. Every failure is
/// reported as one line on stderr with a non-zero exit code.
pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => {
            // --help and --version
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            let rendered = err.to_string();
            eprintln!("{}", rendered.lines().next().unwrap_or("invalid arguments"));
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Some(Command::Serve(config)) => serve(*config),
        Some(Command::Token(args)) => auth_setup::mint_token(&args)
            .map(|token| println!("{token}"))
            .map_err(|err| err.to_string()),
        Some(Command::Check(args)) => match log::check(&args.data_dir) {
            Ok(report) => {
                println!("{report}");
                return if report.intact {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                };
            }
            Err(err) => Err(err.to_string()),
        },
        None => serve(cli.serve),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> Result<(), String> {
    telemetry::init(config.log_format);
    panics::install_hook();
    let runtime =
        tokio::runtime::Runtime::new().map_err(|err| format!("starting runtime: {err}"))?;
    runtime.block_on(async {
        let app = Application::build(&config).map_err(|err| err.to_string())?;
        // Tests and scripts read this line to learn the port when listening on port 0.
        println!("tidegate listening on http://{}", app.local_addr());
        if let Some(token) = app.first_run_token() {
            print_first_run_token(token, app.local_addr());
        }
        tracing::info!(addr = %app.local_addr(), data_dir = %config.data_dir.display(), fsync = ?config.fsync, "serving");
        let shutdown = app.shutdown_token();
        tokio::spawn(async move {
            startup::termination_signal().await;
            shutdown.cancel();
        });
        app.run().await.map_err(|err| format!("server failed: {err}"))
    })
}

/// Shown once, when the secret was just generated: the only time a token is printed.
fn print_first_run_token(token: &str, addr: std::net::SocketAddr) {
    println!(
        "\nGenerated a signing secret in the data directory. Admin token (keep it secret):\n\n\
         {token}\n\n\
         Try it:\n  curl -H 'Authorization: Bearer {token}' http://{addr}/v1/topics\n\
         Mint more with: tidegate token --sub NAME --scope 'publish:orders subscribe:orders' --ttl 1h\n"
    );
}
