//! `mock-exchange`: the signature-checking mock of Binance's spot API that keyward's
//! end-to-end tests run against, as a program to practise with
//! (docs/getting-started.md). It accepts one API key, verifies every signature with
//! its secret, keeps open orders and reference prices (BTCUSDT about 60000), serves
//! the spot WebSocket API beside REST, and prints one line per request (or WebSocket
//! message) it receives, so that what keyward sent can be seen.
//! It is a test double: never point a real bot or a real key at it.

// A program whose output is what it is for: its banner, its errors and a line per
// request, on the standard streams.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use keyward_tests::mock::{Mock, Recorded};

/// A practice Binance spot exchange on this machine, for trying keyward without a key.
#[derive(Debug, Parser)]
#[command(name = "mock-exchange")]
struct Args {
    /// Where to listen (HTTPS).
    #[arg(long, default_value = "127.0.0.1:9444")]
    listen: String,
    /// Another name keyward reaches it by, for its certificate (repeatable): on a
    /// container network keyward dials the service name, not 127.0.0.1.
    #[arg(long = "name", value_name = "NAME")]
    names: Vec<String>,
    /// Where to write the CA certificate keyward must trust for it (`upstream_ca`).
    #[arg(long, default_value = "mock-exchange-ca.pem")]
    ca_out: PathBuf,
    /// The API key it accepts.
    #[arg(long, default_value = "practice-key")]
    api_key: String,
    /// The secret it verifies signatures with.
    #[arg(long, default_value = "practice-secret")]
    api_secret: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("mock-exchange: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let mock = match Mock::bind(&args.listen, &args.names).await {
            Ok(mock) => mock,
            Err(error) => {
                let hint = match error.kind() {
                    std::io::ErrorKind::AddrInUse => " (choose another with --listen)",
                    _ => "",
                };
                eprintln!(
                    "mock-exchange: cannot start on {}: {error}{hint}",
                    args.listen
                );
                return ExitCode::FAILURE;
            }
        };
        if let Err(error) = std::fs::copy(&mock.ca, &args.ca_out) {
            eprintln!(
                "mock-exchange: cannot write {}: {error}",
                args.ca_out.display()
            );
            return ExitCode::FAILURE;
        }
        mock.accept_key(&args.api_key, &args.api_secret);
        println!(
            "mock-exchange: Binance spot API on {} (WebSocket API {}), trusting it takes {}; API key {}",
            mock.url(),
            mock.ws_url(),
            args.ca_out.display(),
            args.api_key
        );
        // Printed as each request arrives, before it is answered: whatever the
        // answer sets off (a bot's next command) finds the line already written.
        mock.echo(print_request);
        let _ = tokio::signal::ctrl_c().await;
        ExitCode::SUCCESS
    })
}

fn print_request(request: &Recorded) {
    let signature = match request.signature_ok {
        Some(true) => "signature valid",
        Some(false) => "SIGNATURE INVALID",
        None => "unsigned",
    };
    let params = [request.query.as_str(), request.body.as_str()]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("&");
    let whose = if request.is_keywards_own() {
        " (keyward's own: clock, prices or housekeeping)"
    } else {
        ""
    };
    println!(
        "mock-exchange: {} {} {params} [{signature}]{whose}",
        request.method, request.path
    );
}
