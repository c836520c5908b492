//! The lab's object store: Garage, an S3-compatible server (`.ci/setup` builds it once into
//! /var/cache/dbcadence), as one node on free 127.0.0.1 ports with its own data directory,
//! one bucket and one key that may read and write it (`lab up --s3`).
//!
//! ```text
//! DIR/s3/garage.toml       its configuration (0600: it holds the RPC secret)
//! DIR/s3/meta, DIR/s3/data its metadata (sqlite) and blocks
//! DIR/s3/credentials       the key, AWS shared-credentials format, profile default (0600)
//! DIR/s3/garage.{pid,log}
//! ```

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::process::Tool;
use crate::repository::{CredentialSource, S3Repository};
use crate::{Error, Result};

/// The bucket the lab creates (S3 names: 3 to 63 characters).
pub const LAB_BUCKET: &str = "dbcadence-lab";

/// Garage's region name.
pub const LAB_REGION: &str = "garage";

/// Where the lab's object store runs (lab.json). No secret in here: the key's secret is in
/// `credentials_file`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct LabS3 {
    /// DIR/s3: configuration, data, credentials, pid file and log.
    pub dir: PathBuf,
    /// The S3 API's port on 127.0.0.1.
    pub s3_port: u16,
    pub rpc_port: u16,
    pub admin_port: u16,
    pub bucket: String,
    pub access_key_id: String,
    /// The key (AWS shared-credentials format, profile default; 0600).
    pub credentials_file: PathBuf,
}

impl LabS3 {
    /// The S3 API's base address.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// The lab bucket as a repository argument (credentials from the lab's file).
    pub fn repository(&self) -> S3Repository {
        S3Repository {
            credentials: CredentialSource::File,
            credentials_file: Some(self.credentials_file.clone()),
            ..S3Repository::new(Some(self.endpoint()), LAB_REGION, &self.bucket)
        }
    }

    fn config(&self) -> PathBuf {
        self.dir.join("garage.toml")
    }

    /// Garage's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        super::daemon::pid(&self.dir, "garage")
    }

    /// `garage -c DIR/s3/garage.toml ARGS...` (the command line tool talks to the daemon).
    pub fn admin(&self, args: &[&str]) -> Result<String> {
        let output = Tool::find("garage")?
            .package("garage (built by .ci/setup)")
            .arg("-c")
            .arg(self.config())
            .args(args)
            .output()?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Stops Garage (a fault test: the server gone mid-upload). `ensure` starts it again.
    pub fn stop(&self) -> String {
        super::daemon::stop(&self.dir, "garage")
    }
}

/// Plans the object store (ports kept once chosen), starts Garage if it is not running, and
/// on first start gives it a layout, the bucket and a key.
pub(super) fn ensure(lab: &super::Lab, planned: Option<LabS3>) -> Result<LabS3> {
    let dir = lab.dir.join("s3");
    let mut s3 = match planned {
        Some(s3) => s3,
        None => {
            let s3_port = super::free_port(lab, &[])?;
            let rpc_port = super::free_port(lab, &[s3_port])?;
            let admin_port = super::free_port(lab, &[s3_port, rpc_port])?;
            LabS3 {
                credentials_file: dir.join("credentials"),
                dir,
                s3_port,
                rpc_port,
                admin_port,
                bucket: LAB_BUCKET.into(),
                access_key_id: String::new(),
            }
        }
    };
    std::fs::create_dir_all(&s3.dir).map_err(|e| Error::io("create", &s3.dir, e))?;
    super::set_mode(&s3.dir, 0o700)?;
    if !s3.config().exists() {
        let config = format!(
            "# The lab's Garage (dbcadence lab up --s3): written by the lab.\n\
             metadata_dir = {meta}\ndata_dir = {data}\ndb_engine = \"sqlite\"\n\
             replication_factor = 1\n\
             rpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_secret = \"{secret}\"\n\n\
             [s3_api]\ns3_region = \"{LAB_REGION}\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
             root_domain = \".s3.garage.localhost\"\n\n\
             [admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n",
            meta = toml_string(&s3.dir.join("meta")),
            data = toml_string(&s3.dir.join("data")),
            rpc = s3.rpc_port,
            s3 = s3.s3_port,
            admin = s3.admin_port,
            secret = crate::util::random_hex(32)?,
        );
        crate::files::write_atomically(&s3.config(), config.as_bytes(), 0o600)?;
    }
    if s3.pid().is_none() {
        start(&s3)?;
    }
    if s3.access_key_id.is_empty() || !s3.credentials_file.exists() {
        s3.access_key_id = configure(&s3)?;
    }
    Ok(s3)
}

fn toml_string(path: &std::path::Path) -> String {
    serde_json::to_string(&path.display().to_string()).unwrap_or_default()
}

fn start(s3: &LabS3) -> Result<()> {
    let tool = Tool::find("garage")?
        .package("garage (built by .ci/setup)")
        .arg("-c")
        .arg(s3.config())
        .arg("server")
        .env("RUST_LOG", "garage=warn");
    // Any HTTP answer on the S3 port (403 without a signature) means it serves.
    let port = s3.s3_port;
    super::daemon::start(&s3.dir, "garage", tool, || {
        super::monitoring::http_status(port, "/").is_some()
    })
}

/// A fresh node's layout, the bucket, and a key allowed to use it; the key's secret goes to
/// the credentials file only. Returns the key id.
fn configure(s3: &LabS3) -> Result<String> {
    let node = s3.admin(&["node", "id", "-q"])?;
    let node = node
        .trim()
        .split('@')
        .next()
        .unwrap_or_default()
        .to_string();
    // The layout may exist already (a lab started again after its key file was lost).
    let status = s3.admin(&["layout", "show"])?;
    if !status.contains("Current cluster layout version: 1") {
        s3.admin(&["layout", "assign", "-z", "dc1", "-c", "10G", &node])?;
        s3.admin(&["layout", "apply", "--version", "1"])?;
    }
    let buckets = s3.admin(&["bucket", "list"])?;
    if !buckets.contains(&s3.bucket) {
        s3.admin(&["bucket", "create", &s3.bucket])?;
    }
    let key_name = format!("dbcadence-lab-{}", crate::util::random_hex(4)?);
    s3.admin(&["key", "create", &key_name])?;
    s3.admin(&[
        "bucket", "allow", "--read", "--write", "--owner", &s3.bucket, "--key", &key_name,
    ])?;
    let info = s3.admin(&["key", "info", &key_name, "--show-secret"])?;
    let field = |label: &str| {
        info.lines()
            .find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_string()))
            .filter(|v| !v.is_empty())
    };
    let (Some(key_id), Some(secret)) = (field("Key ID:"), field("Secret key:")) else {
        return Err(Error::lab(
            "create the lab's S3 key",
            "garage key info printed no 'Key ID:' and 'Secret key:' lines",
        ));
    };
    let credentials =
        format!("[default]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n");
    crate::files::write_atomically(&s3.credentials_file, credentials.as_bytes(), 0o600)?;
    Ok(key_id)
}

/// Stops Garage (idempotent).
pub(super) fn stop(s3: &LabS3) -> Vec<String> {
    vec![s3.stop()]
}
