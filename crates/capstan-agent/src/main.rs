//! `capstan-agent`: see the library for what it does.

fn main() -> std::process::ExitCode {
    capstan_agent::cli::main()
}
