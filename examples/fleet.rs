//! The fleet demonstration: N worker processes share one limit through
//! Redis.
//!
//! ```sh
//! cargo run --release --example fleet
//! cargo run --release --example fleet -- --workers 6 --calls 200
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --release --example fleet
//! ```
//!
//! This is a launcher: the demonstration itself is
//! `examples/fleet/fleet_demo.rs`, in a package of its own (`limit-fleet`)
//! so that the Redis client is compiled only for it, never for
//! `cargo run --release --example batch`. The launcher checks that a Redis
//! server is at hand (`REDIS_URL`, or `redis-server` to start one), then
//! has cargo build and run the demonstration with the same profile and
//! arguments.

use std::process::{Command, ExitCode, Stdio};

fn main() -> ExitCode {
    let have_server = std::env::var_os("REDIS_URL").is_some()
        || Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok();
    if !have_server {
        println!(
            "This demonstration needs a Redis server, and `redis-server` is not installed.\n\
             Install it (Debian, Ubuntu: `sudo apt-get install redis-server`; macOS: \
             `brew install redis`) and run this again, or point REDIS_URL at a server:\n\
             REDIS_URL=redis://127.0.0.1:6379 cargo run --release --example fleet"
        );
        return ExitCode::SUCCESS;
    }
    // `cargo run` tells the program which cargo started it.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "run",
        "--quiet",
        "-p",
        "limit-fleet",
        "--example",
        "fleet_demo",
    ]);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    cmd.arg("--").args(std::env::args_os().skip(1));
    eprintln!("building and running the fleet demonstration (package limit-fleet)...");
    match cmd.status() {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => ExitCode::from(u8::try_from(status.code().unwrap_or(1)).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: could not run cargo: {e}");
            ExitCode::FAILURE
        }
    }
}
