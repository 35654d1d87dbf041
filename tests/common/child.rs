//! A test that runs another (ignored) test of its own binary as a child
//! process, and reads the port the child serves on.

use std::io;
use std::process::{Child, Command};

/// A child process, killed (SIGKILL) and reaped when dropped, so that a
/// failing test leaves no process behind.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The command that runs the ignored test `name` of this test binary, and
/// only it, with its output shown. Set its environment and pipes, then
/// spawn it.
pub fn test_command(name: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("the test binary's path"));
    command.args([name, "--exact", "--ignored", "--nocapture"]);
    command
}

/// The port a child announces with a `PORT <port>` line, read from
/// `lines`; `Err` with the rest of a `REFUSED <why>` line, or when the
/// output ends first. The lines after the port are left to the caller
/// (keep reading them, or the child may block on a full pipe).
pub fn announced_port(lines: &mut impl Iterator<Item = io::Result<String>>) -> Result<u16, String> {
    for line in lines {
        let line = line.map_err(|e| format!("the child's output did not read: {e}"))?;
        if let Some(port) = line.strip_prefix("PORT ") {
            return port
                .parse()
                .map_err(|e| format!("the child announced port {port:?}: {e}"));
        }
        if let Some(why) = line.strip_prefix("REFUSED ") {
            return Err(why.to_owned());
        }
    }
    Err("the child exited before it served".to_owned())
}
