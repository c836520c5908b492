//! Where a server's packages come from, and so the commands db_patch runs by default: the
//! Debian family's dpkg and apt, the RHEL family's rpm and dnf, or the lab's binary switch
//! (tests and demos). Every command can be replaced through the request; placeholders in
//! them are filled here: `{package}`, `{major}`, `{instance}`, `{lab_dir}`, and `{version}`
//! (the target) in the upgrade and restart commands.

use std::path::{Path, PathBuf};
use std::process::Command;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::connection::EngineKind;
use crate::{Error, Result};

/// The package family of the server's host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// dpkg-query, apt-cache policy, apt-get install --only-upgrade, systemctl.
    Debian,
    /// rpm, dnf repoquery, dnf upgrade, systemctl.
    Redhat,
    /// A `dbcadence lab` server: lab packages, lab upgrade, lab restart (needs lab_dir and
    /// instance_id).
    Lab,
}

impl Platform {
    /// The family this host belongs to, from /etc/os-release (ID and ID_LIKE); Debian when
    /// it cannot tell.
    pub fn detect() -> Platform {
        let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        let ids: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("ID=").or_else(|| l.strip_prefix("ID_LIKE=")))
            .flat_map(|v| v.trim_matches('"').split_whitespace())
            .collect();
        if ids
            .iter()
            .any(|id| ["rhel", "fedora", "centos", "rocky", "almalinux"].contains(id))
        {
            Platform::Redhat
        } else {
            Platform::Debian
        }
    }

    /// The server package's usual name.
    pub fn default_package(self, engine: EngineKind, major: &str) -> String {
        match (self, engine) {
            (Platform::Redhat, EngineKind::Postgresql) => format!("postgresql{major}-server"),
            (_, EngineKind::Postgresql) => format!("postgresql-{major}"),
            (_, EngineKind::Mysql) => "mariadb-server".into(),
        }
    }
}

/// The values placeholders stand for.
#[derive(Debug, Clone, Default)]
pub(super) struct Placeholders {
    pub package: String,
    pub major: String,
    pub instance: String,
    pub lab_dir: Option<PathBuf>,
    /// The target version; only the upgrade and restart commands see it.
    pub version: Option<String>,
}

/// The commands of one patch, placeholders filled in.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Commands {
    /// Prints the installed version (alone, or on an "Installed:" line).
    pub installed: Vec<String>,
    /// Prints a "Candidate: <version>" line.
    pub candidate: Vec<String>,
    pub upgrade: Vec<String>,
    pub restart: Vec<String>,
    /// Environment for the upgrade (DEBIAN_FRONTEND).
    pub env: Vec<(String, String)>,
}

/// Overrides from the request (None: the platform's default).
#[derive(Debug, Clone, Default)]
pub(super) struct Overrides<'a> {
    pub installed: Option<&'a [String]>,
    pub candidate: Option<&'a [String]>,
    pub upgrade: Option<&'a [String]>,
    pub restart: Option<&'a [String]>,
}

pub(super) fn commands(
    platform: Platform,
    engine: EngineKind,
    overrides: &Overrides,
    values: &Placeholders,
) -> Result<Commands> {
    if platform == Platform::Lab && (values.lab_dir.is_none() || values.instance.is_empty()) {
        return Err(Error::invalid(
            "platform",
            "platform lab needs lab_dir and instance_id (the lab's instance name, e.g. pg1)",
        ));
    }
    let words = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let lab = |action: &str| {
        words(&[
            "dbcadence",
            "lab",
            action,
            "--dir",
            "{lab_dir}",
            "--instance",
            "{instance}",
        ])
    };
    let (installed, candidate, upgrade) = match platform {
        Platform::Debian => (
            words(&["dpkg-query", "-W", "-f=${Version}", "{package}"]),
            words(&["apt-cache", "policy", "{package}"]),
            words(&[
                "apt-get",
                "install",
                "-y",
                "-q",
                "-o",
                "Dpkg::Options::=--force-confold",
                "--only-upgrade",
                "{package}",
            ]),
        ),
        Platform::Redhat => (
            words(&["rpm", "-q", "--qf", "%{VERSION}", "{package}"]),
            words(&[
                "dnf",
                "-q",
                "repoquery",
                "--latest-limit=1",
                "--qf",
                "Candidate: %{VERSION}",
                "{package}",
            ]),
            words(&["dnf", "-y", "upgrade", "{package}"]),
        ),
        Platform::Lab => (lab("packages"), lab("packages"), lab("upgrade")),
    };
    let restart = match (platform, engine) {
        (Platform::Lab, _) => lab("restart"),
        (Platform::Debian, EngineKind::Postgresql) => {
            words(&["systemctl", "restart", "postgresql@{major}-main"])
        }
        (Platform::Redhat, EngineKind::Postgresql) => {
            words(&["systemctl", "restart", "postgresql-{major}"])
        }
        (_, EngineKind::Mysql) => words(&["systemctl", "restart", "mariadb"]),
    };
    let pick =
        |given: Option<&[String]>, default: Vec<String>| given.map_or(default, <[String]>::to_vec);
    // The target version is only known (and only meaningful) once facts are read.
    let mut early = values.clone();
    early.version = None;
    Ok(Commands {
        installed: fill(&pick(overrides.installed, installed), &early),
        candidate: fill(&pick(overrides.candidate, candidate), &early),
        upgrade: fill(&pick(overrides.upgrade, upgrade), values),
        restart: fill(&pick(overrides.restart, restart), values),
        env: if platform == Platform::Debian && overrides.upgrade.is_none() {
            vec![("DEBIAN_FRONTEND".into(), "noninteractive".into())]
        } else {
            vec![]
        },
    })
}

/// Replaces the placeholders in each word; a word is never split or joined, so a value with
/// spaces stays one argument.
fn fill(template: &[String], values: &Placeholders) -> Vec<String> {
    let lab_dir = values
        .lab_dir
        .as_deref()
        .map(Path::to_string_lossy)
        .unwrap_or_default();
    template
        .iter()
        .map(|word| {
            let mut word = word
                .replace("{package}", &values.package)
                .replace("{major}", &values.major)
                .replace("{instance}", &values.instance)
                .replace("{lab_dir}", &lab_dir);
            if let Some(version) = &values.version {
                word = word.replace("{version}", version);
            }
            word
        })
        .collect()
}

/// Runs a facts command (installed or candidate); its stdout when it succeeds.
pub(super) fn read_output(command: &[String]) -> Option<String> {
    let (program, args) = command.split_first()?;
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The version on a `Label:` line ("  Candidate: 15.20-0+deb12u1"), upstream part.
pub(super) fn labelled_version(text: &str, label: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label).map(|v| upstream(v.trim())))
        .filter(|v| !v.is_empty() && v != "(none)")
}

/// What an installed-version command printed: an "Installed:" line, or the version alone.
pub(super) fn installed_version(text: &str) -> Option<String> {
    labelled_version(text, "Installed:")
        .or_else(|| Some(upstream(text.trim())))
        .filter(|v| !v.is_empty() && v != "(none)")
}

/// The upstream part of a package version: `1:10.11.19-0+deb12u1` is 10.11.19.
pub(super) fn upstream(version: &str) -> String {
    let no_epoch = version.split_once(':').map_or(version, |(_, v)| v);
    no_epoch
        .split(['-', '+', '~'])
        .next()
        .unwrap_or("")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Placeholders {
        Placeholders {
            package: "postgresql-15".into(),
            major: "15".into(),
            instance: "pg1".into(),
            lab_dir: Some("/tmp/my lab".into()),
            version: Some("15.20".into()),
        }
    }

    #[test]
    fn each_platform_has_its_commands_and_placeholders_stay_one_word() {
        let debian = commands(
            Platform::Debian,
            EngineKind::Postgresql,
            &Overrides::default(),
            &values(),
        )
        .unwrap();
        assert_eq!(
            debian.restart,
            ["systemctl", "restart", "postgresql@15-main"]
        );
        assert_eq!(debian.installed[2], "-f=${Version}");
        assert_eq!(
            debian.env,
            [("DEBIAN_FRONTEND".to_string(), "noninteractive".to_string())]
        );
        let redhat = commands(
            Platform::Redhat,
            EngineKind::Mysql,
            &Overrides::default(),
            &values(),
        )
        .unwrap();
        assert_eq!(redhat.upgrade, ["dnf", "-y", "upgrade", "postgresql-15"]);
        assert_eq!(redhat.restart, ["systemctl", "restart", "mariadb"]);
        let lab = commands(
            Platform::Lab,
            EngineKind::Postgresql,
            &Overrides::default(),
            &values(),
        )
        .unwrap();
        assert_eq!(
            lab.restart,
            [
                "dbcadence",
                "lab",
                "restart",
                "--dir",
                "/tmp/my lab",
                "--instance",
                "pg1"
            ]
        );
        let mut no_dir = values();
        no_dir.lab_dir = None;
        assert!(
            commands(
                Platform::Lab,
                EngineKind::Postgresql,
                &Overrides::default(),
                &no_dir
            )
            .is_err()
        );
    }

    #[test]
    fn the_target_version_reaches_only_the_upgrade_and_restart() {
        let custom = ["echo".to_string(), "{package}={version}".to_string()];
        let overrides = Overrides {
            candidate: Some(&custom),
            upgrade: Some(&custom),
            ..Overrides::default()
        };
        let c = commands(
            Platform::Debian,
            EngineKind::Postgresql,
            &overrides,
            &values(),
        )
        .unwrap();
        assert_eq!(c.upgrade[1], "postgresql-15=15.20");
        assert_eq!(c.candidate[1], "postgresql-15={version}");
        assert!(
            c.env.is_empty(),
            "a custom upgrade command gets no apt environment"
        );
    }

    #[test]
    fn versions_are_read_the_way_package_tools_print_them() {
        assert_eq!(upstream("15.20-0+deb12u1"), "15.20");
        assert_eq!(upstream("1:10.11.19-0+deb12u1"), "10.11.19");
        let policy = "postgresql-15:\n  Installed: 15.8\n  Candidate: 15.20-0+deb12u1\n";
        assert_eq!(
            labelled_version(policy, "Candidate:").as_deref(),
            Some("15.20")
        );
        assert_eq!(installed_version(policy).as_deref(), Some("15.8"));
        assert_eq!(
            installed_version("15.20-0+deb12u1").as_deref(),
            Some("15.20")
        );
        assert_eq!(labelled_version("  Candidate: (none)", "Candidate:"), None);
    }
}
