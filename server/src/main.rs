//! The `proctord` binary.

fn main() -> std::process::ExitCode {
    proctor_server::cli::main()
}
