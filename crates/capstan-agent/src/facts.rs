//! What the agent reports of itself in a health check.

use std::path::Path;

use capstan_api::{AgentFacts, ScriptSyntax};

use crate::{client::VERSION, script::find_on_path};

/// The agent's version, OS, host name, interpreters, and the free space of `home`.
pub fn gather(home: &Path) -> AgentFacts {
    AgentFacts {
        version: VERSION.to_owned(),
        os: std::env::consts::OS.to_owned(),
        hostname: hostname(),
        shells: shells(),
        free_disk_bytes: free_disk_bytes(home),
    }
}

fn hostname() -> String {
    let from_kernel = nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok());
    let from_file = || {
        std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|name| name.trim().to_owned())
    };
    [from_kernel, from_file(), std::env::var("HOSTNAME").ok()]
        .into_iter()
        .flatten()
        .find(|name| !name.trim().is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The interpreters this agent can run scripts with.
pub fn shells() -> Vec<ScriptSyntax> {
    let mut found = Vec::new();
    if find_on_path("bash").is_some() {
        found.push(ScriptSyntax::Bash);
    }
    if find_on_path("sh").is_some() {
        found.push(ScriptSyntax::Sh);
    }
    if find_on_path("pwsh").is_some() || find_on_path("powershell").is_some() {
        found.push(ScriptSyntax::PowerShell);
    }
    found
}

/// Bytes an unprivileged user may still write on the file system holding `dir`.
pub fn free_disk_bytes(dir: &Path) -> Option<u64> {
    let stats = nix::sys::statvfs::statvfs(dir).ok()?;
    #[expect(
        clippy::useless_conversion,
        reason = "the field types differ between platforms"
    )]
    let free = u64::from(stats.blocks_available()).checked_mul(u64::from(stats.fragment_size()));
    free
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_describe_this_machine() {
        let dir = crate::testing::TempDir::new();
        let facts = gather(dir.path());
        assert_eq!(facts.version, VERSION);
        assert_eq!(facts.os, "linux");
        assert!(!facts.hostname.is_empty() && facts.hostname != "unknown");
        assert!(
            facts.shells.contains(&ScriptSyntax::Sh),
            "{:?}",
            facts.shells
        );
        assert!(facts.free_disk_bytes.is_some_and(|free| free > 0));
        assert_eq!(free_disk_bytes(&dir.path().join("missing")), None);
    }
}
