//! The `kafka-expose` binary: install the crypto provider, parse the command line, run it.
//!
//! Installed as `kubectl-kafka_expose`, kubectl runs it as `kubectl kafka-expose` (its plugin
//! rule: a dash in the command is an underscore in the file name); help and errors then name it
//! that way.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

fn main() -> ExitCode {
    // One TLS crypto provider for the whole process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut command = kafka_expose::cli::Cli::command();
    if std::env::args_os()
        .next()
        .as_deref()
        .and_then(|a| std::path::Path::new(a).file_name())
        .is_some_and(|n| n == kafka_expose::names::KUBECTL_PLUGIN)
    {
        command = command.bin_name("kubectl kafka-expose");
    }
    let cli = match kafka_expose::cli::Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cli.run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
