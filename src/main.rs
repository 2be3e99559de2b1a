//! The `portcullis` binary: parse arguments, run the subcommand, map the outcome to an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    portcullis::cli::main()
}
