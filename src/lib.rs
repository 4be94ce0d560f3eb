//! tidegate: an HTTP/WebSocket gateway for event streams with Kafka's model — a durable,
//! partitioned log (embedded on redb, or an Apache Kafka cluster), publish and fetch over
//! HTTP, push over WebSocket and Server-Sent Events, consumer groups, JWT-scoped topics.
//!
//! # Layout (each layer imports only those below it)
//! - [`startup`]: `Application::build(config)` picks the backend, builds the gateway and
//!   binds the server; used by `main` and by the tests. [`config`]: the one `Config`.
//! - `http`: actix routes (mounting the WebSocket upgrade and the event stream too),
//!   extractors, CORS, the OpenAPI document, error → response.
//! - `ws`, `sse`: the push transports over the gateway.
//! - `gateway`: the transport-neutral layer: state, the caller and its capabilities,
//!   error codes, the one publish path and the one subscribe-start.
//! - `cluster`: consumer groups and idempotency keys across the replicas of a deployment
//!   (`--cluster-secret`), behind the same traits.
//! - `groups`: consumer groups behind the `GroupCoordinator` trait.
//! - `push`: positions and cursors, and the shared cache of encoded records.
//! - `records`: what a producer may publish; `wire`: records as JSON.
//! - `log`: the `EventLog` and `OffsetStore` traits; backends in `log::redb` and
//!   `log::kafka`.
//! - [`auth`]: JWT verification, scopes, token minting; `auth_setup`: configuration into a
//!   verifier, and the first-run secret.
//! - Leaves: `metrics` (the Prometheus registry), `json`, `echo`, `murmur` (Kafka's key
//!   hash), `panics`, `private_fs`, `telemetry`.
//!
//! See ARCHITECTURE.md for the invariants that hold between these modules.

pub mod auth;
mod auth_setup;
mod cluster;
pub mod config;
mod echo;
mod export;
#[doc(hidden)]
pub mod fuzz;
mod gateway;
mod groups;
mod history;
mod http;
mod json;
mod log;
mod metrics;
mod murmur;
mod panics;
mod private_fs;
mod push;
mod records;
mod sse;
pub mod startup;
mod telemetry;
mod wire;
mod ws;

#[cfg(test)]
mod layers;

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
        Some(Command::Check(args)) => match log::redb::check(&args.data_dir) {
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
        Some(Command::Export(mut args)) => export(&mut args),
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

fn export(args: &mut config::ExportArgs) -> Result<(), String> {
    args.validate()?;
    telemetry::init(config::LogFormat::Text);
    let runtime =
        tokio::runtime::Runtime::new().map_err(|err| format!("starting runtime: {err}"))?;
    let exported = runtime.block_on(export::run(args))?;
    println!(
        "exported {} topics, {} records, committed offsets of {} groups",
        exported.topics, exported.records, exported.groups
    );
    Ok(())
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
