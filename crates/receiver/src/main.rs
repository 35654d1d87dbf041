//! `cmc-receiver`: see `cmc-receiver --help`, and the crate's documentation.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    cmc_receiver::cli::main()
}
