//! `keygate`: parses the command line (a usage error exits 2, clap's code) and runs it.

use std::process::ExitCode;

use clap::Parser;
use keygate_cli::args::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = keygate_cli::run(
        cli,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(code)
}
