//! The `catalogd` binary: parses the command line and hands over to [`catalogd::cli`].

fn main() -> std::process::ExitCode {
    catalogd::cli::main()
}
