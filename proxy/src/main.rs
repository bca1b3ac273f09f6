//! The `keyward` binary: everything happens in [`keyward::cli`].

fn main() -> std::process::ExitCode {
    keyward::cli::main()
}
