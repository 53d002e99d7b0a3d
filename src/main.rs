//! The `redeye` command line: parses arguments, sets up logging, runs one subcommand and prints
//! the whole error chain on failure.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = redeye::cmd::Cli::parse();
    redeye::telemetry::init();
    match cli.run() {
        Ok(code) => code,
        Err(err) => {
            // `{:#}` prints every cause, e.g. "reading cameras.toml: No such file or directory".
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
