//! What every config file shares: its format version.
//!
//! A config may say `config_version = N` (default 1). A build refuses a
//! version newer than it reads, naming both, so a config written for a later
//! release fails loudly at start instead of being half understood; older
//! versions are migrated in code when a format changes (none yet).

use crate::Problem;

/// The config format this build reads and writes in its examples.
pub const CONFIG_VERSION: u32 = 1;

/// The `config_version` a file omits.
pub fn default_version() -> u32 {
    CONFIG_VERSION
}

/// The problem with `config_version = found`, if any.
pub fn version_problem(found: u32) -> Option<Problem> {
    if found == 0 {
        Some(Problem::new(
            "config_version",
            "0 is not a version (1 is the first)",
        ))
    } else if found > CONFIG_VERSION {
        Some(Problem::new(
            "config_version",
            format!(
                "{found} is newer than this build reads ({CONFIG_VERSION}): run the release the config was written for, or rewrite it for this one (docs/deploy.md, upgrades)"
            ),
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_versions_pass() {
        assert_eq!(version_problem(CONFIG_VERSION), None);
        assert!(version_problem(0).is_some_and(|p| p.key == "config_version"));
        let p = version_problem(CONFIG_VERSION + 1)
            .expect("newer")
            .to_string();
        assert!(
            p.contains(&format!("{}", CONFIG_VERSION + 1)) && p.contains("newer"),
            "{p}"
        );
    }
}
