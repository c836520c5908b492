//! Lab test hosts: network namespaces on this machine that look like separate servers to
//! Ansible. Each host has its own address on the project's test network (10.213.N.0/24, one
//! /24 per lab, behind a bridge `dbcbrN` that holds 10.213.N.1), its own sshd (host keys in the
//! lab directory, root login with the lab's key only) and the lab servers placed on it, which
//! listen on its address. Nothing is routed beyond the bridge: traffic stays on this machine.
//!
//! ```text
//! DIR/ssh/lab_key, lab_key.pub   the key Ansible logs in with (0600)
//! DIR/ssh/known_hosts            every host's address with its host key
//! DIR/hosts/NAME/{ssh_host_ed25519_key, sshd_config, sshd.pid, sshd.log}
//! ```
//!
//! Namespaces, links and sshd are root's business: `lab up --hosts` needs root (CI runs as
//! root). `lab down` removes all of it; [`leftovers`] says what would remain.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::process::Tool;
use crate::util::process_alive;
use crate::{Error, Result};

/// The first two octets of the project's own test network.
const TEST_NETWORK: &str = "10.213";

/// A lab's test network: the bridge on this machine and its /24.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct LabNetwork {
    /// The bridge device (dbcbrN).
    pub bridge: String,
    /// N: the third octet of the lab's addresses.
    pub index: u8,
    /// The bridge's own address, this machine as the hosts see it (10.213.N.1).
    pub gateway: String,
}

/// One test host.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct LabHost {
    /// host1, host2... or runner.
    pub name: String,
    /// Its address on the test network; sshd and the host's servers listen on it.
    pub address: String,
    /// Its network namespace (`ip netns`).
    pub netns: String,
    /// The veth end on this machine's side, attached to the bridge.
    pub veth: String,
    /// Its directory in the lab (host keys, sshd_config, pid file, log).
    pub dir: PathBuf,
    /// A runner holds backups and runs verification; it has no servers of its own.
    pub runner: bool,
}

impl LabHost {
    fn sshd_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("sshd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Whether its sshd runs.
    pub fn running(&self) -> bool {
        self.sshd_pid().is_some_and(process_alive)
    }
}

fn ip(args: &[&str]) -> Result<()> {
    Tool::new("ip").package("iproute2").args(args).run()
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// The lab's network, made (or remade after a reboot) when missing: a free /24 of the test
/// range is picked by the bridges that exist.
pub(super) fn ensure_network(existing: Option<LabNetwork>) -> Result<LabNetwork> {
    if crate::util::effective_uid() != Some(0) {
        return Err(Error::lab(
            "make the test hosts",
            "network namespaces and sshd need root; run `dbcadence lab up --hosts` as root",
        ));
    }
    let network = match existing {
        Some(network) => network,
        None => {
            let index = (1..=250u8)
                .find(|n| !link_exists(&format!("dbcbr{n}")))
                .ok_or_else(|| {
                    Error::lab("make the test network", "all 250 lab networks are in use")
                })?;
            LabNetwork {
                bridge: format!("dbcbr{index}"),
                index,
                gateway: format!("{TEST_NETWORK}.{index}.1"),
            }
        }
    };
    if !link_exists(&network.bridge) {
        ip(&["link", "add", &network.bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", network.gateway),
            "dev",
            &network.bridge,
        ])?;
    }
    ip(&["link", "set", &network.bridge, "up"])?;
    Ok(network)
}

/// Plans host `name` (the `number`th of the lab) on `network`.
pub(super) fn plan_host(
    lab_dir: &Path,
    network: &LabNetwork,
    name: &str,
    number: u8,
    runner: bool,
) -> LabHost {
    LabHost {
        name: name.to_string(),
        address: format!("{TEST_NETWORK}.{}.{}", network.index, 10 + number),
        netns: format!("dbc{}-{name}", network.index),
        veth: format!("dbc{}-v{number}", network.index),
        dir: lab_dir.join("hosts").join(name),
        runner,
    }
}

/// Makes the host's namespace and link (when missing) and starts its sshd (when stopped).
pub(super) fn start_host(lab_dir: &Path, network: &LabNetwork, host: &LabHost) -> Result<()> {
    if !netns_exists(&host.netns) {
        ip(&["netns", "add", &host.netns])?;
    }
    if !link_exists(&host.veth) {
        let peer = format!("{}p", host.veth);
        ip(&[
            "link", "add", &host.veth, "type", "veth", "peer", "name", &peer,
        ])?;
        ip(&["link", "set", &peer, "netns", &host.netns])?;
        ip(&["-n", &host.netns, "link", "set", &peer, "name", "eth0"])?;
        ip(&[
            "-n",
            &host.netns,
            "addr",
            "add",
            &format!("{}/24", host.address),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &host.netns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &host.netns, "link", "set", "lo", "up"])?;
        ip(&["link", "set", &host.veth, "master", &network.bridge, "up"])?;
    }
    start_sshd(lab_dir, host)
}

/// The lab's login key (made once).
pub(super) fn ensure_lab_key(lab_dir: &Path) -> Result<PathBuf> {
    let dir = lab_dir.join("ssh");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
    let key = dir.join("lab_key");
    if !key.exists() {
        keygen(&key, "dbcadence lab")?;
    }
    Ok(key)
}

fn keygen(path: &Path, comment: &str) -> Result<()> {
    Tool::new("ssh-keygen")
        .package("openssh-client")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .run()
}

fn start_sshd(lab_dir: &Path, host: &LabHost) -> Result<()> {
    if host.running() {
        return Ok(());
    }
    std::fs::create_dir_all(&host.dir).map_err(|e| Error::io("create", &host.dir, e))?;
    let host_key = host.dir.join("ssh_host_ed25519_key");
    if !host_key.exists() {
        keygen(&host_key, &host.name)?;
    }
    let lab_key = ensure_lab_key(lab_dir)?;
    let config = host.dir.join("sshd_config");
    let text = format!(
        "# sshd of lab test host {name}: the lab key only, on the host's address only.\n\
         ListenAddress {address}\n\
         Port 22\n\
         HostKey {host_key}\n\
         PidFile {pid}\n\
         AuthorizedKeysFile {authorized}\n\
         PermitRootLogin prohibit-password\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UsePAM no\n\
         StrictModes no\n\
         Subsystem sftp internal-sftp\n",
        name = host.name,
        address = host.address,
        host_key = host_key.display(),
        pid = host.dir.join("sshd.pid").display(),
        authorized = lab_key.with_extension("pub").display(),
    );
    std::fs::write(&config, text).map_err(|e| Error::io("write", &config, e))?;
    // sshd's privilege separation directory.
    std::fs::create_dir_all("/run/sshd").map_err(|e| Error::io("create", "/run/sshd", e))?;
    let _ = std::fs::remove_file(host.dir.join("sshd.pid"));
    let sshd = crate::util::find_program("sshd").map_err(|_| {
        Error::lab(
            "start the test hosts",
            "sshd is missing; install the openssh-server package",
        )
    })?;
    Tool::new(sshd)
        .arg("-f")
        .arg(&config)
        .arg("-E")
        .arg(host.dir.join("sshd.log"))
        .in_netns(Some(&host.netns))
        .run()?;
    // sshd listens before it detaches and writes its pid file.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !host.running() {
        if std::time::Instant::now() > deadline {
            return Err(Error::lab(
                format!("{} sshd", host.name),
                format!(
                    "it did not start; --- {} ---\n{}",
                    host.dir.join("sshd.log").display(),
                    crate::util::tail_file(&host.dir.join("sshd.log"), 10)
                ),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(())
}

/// DIR/ssh/known_hosts: every host's address with its host key, so that Ansible checks them.
pub(super) fn write_known_hosts(lab_dir: &Path, hosts: &[LabHost]) -> Result<()> {
    let mut text = String::new();
    for host in hosts {
        let public = host.dir.join("ssh_host_ed25519_key.pub");
        let key = std::fs::read_to_string(&public).map_err(|e| Error::io("read", &public, e))?;
        let mut fields = key.split_whitespace();
        if let (Some(kind), Some(value)) = (fields.next(), fields.next()) {
            text.push_str(&format!("{} {kind} {value}\n", host.address));
        }
    }
    let path = lab_dir.join("ssh").join("known_hosts");
    crate::files::write_atomically(&path, text.as_bytes(), crate::files::PUBLIC_FILE)
}

/// Stops the hosts' sshd and removes their namespaces and links, and the bridge. Returns a
/// line per host.
pub(super) fn remove(hosts: &[LabHost], network: Option<&LabNetwork>) -> Vec<String> {
    let mut lines = Vec::new();
    for host in hosts {
        if let Some(pid) = host.sshd_pid().filter(|p| process_alive(*p)) {
            crate::process::stop_process(
                pid,
                rustix::process::Signal::TERM,
                std::time::Duration::from_secs(10),
            );
        }
        if netns_exists(&host.netns) {
            let _ = ip(&["netns", "del", &host.netns]);
        }
        // Deleting the namespace deletes its end of the pair, and with it this one.
        if link_exists(&host.veth) {
            let _ = ip(&["link", "del", &host.veth]);
        }
        lines.push(format!("{}: removed", host.name));
    }
    if let Some(network) = network
        && link_exists(&network.bridge)
    {
        let _ = ip(&["link", "del", &network.bridge]);
    }
    lines
}

/// What of the hosts is still there (a namespace, a link, a running sshd, the bridge): empty
/// after a clean `lab down`.
pub fn leftovers(hosts: &[LabHost], network: Option<&LabNetwork>) -> Vec<String> {
    let mut left = Vec::new();
    for host in hosts {
        if netns_exists(&host.netns) {
            left.push(format!("network namespace {}", host.netns));
        }
        if link_exists(&host.veth) {
            left.push(format!("link {}", host.veth));
        }
        if host.running() {
            left.push(format!("sshd of {}", host.name));
        }
    }
    if let Some(network) = network
        && link_exists(&network.bridge)
    {
        left.push(format!("bridge {}", network.bridge));
    }
    left
}
