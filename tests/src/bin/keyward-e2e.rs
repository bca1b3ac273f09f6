//! The production `keyward` entry point, built inside the test package so that the
//! end-to-end tests can run it as a separate process (`CARGO_BIN_EXE_keyward-e2e`):
//! core-dump limits, signals and process memory can only be tested on a real process.

fn main() -> std::process::ExitCode {
    keyward::cli::main()
}
