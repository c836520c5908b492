//! The lab's TLS: a CA and one server certificate for 127.0.0.1/localhost, made once per lab
//! directory with openssl, copied to each server with a key only its user can read.

use std::path::{Path, PathBuf};

use super::*;
use crate::process::Tool;
use crate::{Error, Result};

/// A lab CA and one server certificate for 127.0.0.1/localhost, made once per lab directory
/// with the openssl command.
pub(super) fn make_tls(dir: &Path, host_addresses: &[String]) -> Result<()> {
    let tls = dir.join("tls");
    // The certificate names 127.0.0.1 and every test host's address (verify-full from
    // anywhere); it is made again when the hosts change.
    let names: String = std::iter::once("IP:127.0.0.1,DNS:localhost".to_string())
        .chain(host_addresses.iter().map(|a| format!("IP:{a}")))
        .collect::<Vec<_>>()
        .join(",");
    let ext = format!("subjectAltName={names}\nbasicConstraints=CA:FALSE\n");
    if tls.join("server.pem").exists()
        && std::fs::read_to_string(tls.join("server.ext")).is_ok_and(|e| e == ext)
    {
        return Ok(());
    }
    std::fs::create_dir_all(&tls).map_err(|e| Error::io("create the TLS directory", &tls, e))?;
    set_mode(&tls, 0o755)?;
    let p = |name: &str| tls.join(name).to_string_lossy().into_owned();
    std::fs::write(tls.join("server.ext"), &ext)
        .map_err(|e| Error::io("write", tls.join("server.ext"), e))?;
    let steps: [Vec<String>; 3] = [
        [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3650",
            "-subj",
            "/CN=dbcadence lab CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("ca.pem"),
        ]
        .map(String::from)
        .to_vec(),
        [
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &p("server.key"),
            "-out",
            &p("server.csr"),
        ]
        .map(String::from)
        .to_vec(),
        [
            "x509",
            "-req",
            "-in",
            &p("server.csr"),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            &p("server.ext"),
            "-out",
            &p("server.pem"),
        ]
        .map(String::from)
        .to_vec(),
    ];
    // The CA stays when only the server certificate is made again (servers and clients keep
    // trusting it).
    let ca_exists = tls.join("ca.pem").exists() && tls.join("ca.key").exists();
    for args in steps.into_iter().skip(usize::from(ca_exists)) {
        Tool::find("openssl")?
            .package("openssl")
            .args(args)
            .run()
            .map_err(|e| Error::lab("make the lab TLS certificates", e.to_string()))?;
    }
    Ok(())
}

/// Copies the server certificate and key into an instance directory, owned by the server's
/// user: PostgreSQL refuses a key that others can read.
pub(super) fn install_tls(instance: &LabInstance, owner: &str) -> Result<PathBuf> {
    let from = instance
        .ca_cert
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let to = instance.instance_dir().join("tls");
    std::fs::create_dir_all(&to).map_err(|e| Error::io("create the TLS directory", &to, e))?;
    for name in ["server.pem", "server.key", "ca.pem"] {
        std::fs::copy(from.join(name), to.join(name))
            .map_err(|e| Error::io("copy the TLS files to", &to, e))?;
    }
    set_mode(&to.join("server.key"), 0o600)?;
    chown(&to, owner)?;
    Ok(to)
}
