//! The receiver, run from a checkout: `cargo run --example receiver -- ARGS`
//! runs the same program as the installed `cmc-receiver` (its code is the
//! `cmc-receiver` crate, in `crates/receiver`).
//!
//! ```text
//! cargo run --example receiver                       # 127.0.0.1:8080, loopback allowed,
//!                                                    # stored in ./cmc-inbox.sqlite3
//! cargo run --example receiver -- --help
//! ```

fn main() -> std::process::ExitCode {
    cmc_receiver::cli::main()
}
