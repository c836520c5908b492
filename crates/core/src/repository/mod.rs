//! Repositories: where backups are kept. Either the local directory `backup_dir` (the layout
//! of `backup::layout`) or an S3-compatible bucket (`repository`), with the same layout as
//! keys: `<prefix>/<instance>/<db>/<UTC stamp>/{dump.*.zst, globals.sql.zst, manifest.json}`.
//!
//! The directory's guarantees hold in the bucket:
//! - nothing without a complete manifest is ever listed: a backup's objects are uploaded first
//!   (the dump streamed as a multipart upload while it runs), its manifest last, and listing
//!   reads manifests only;
//! - every object's sha256 is in the manifest and a download re-hashes what it receives;
//!   parts are uploaded with their own SHA-256 checksum, which the server checks;
//! - one writer per database across hosts: a lock object per holder under `.locks/`, taken by
//!   writing one's own and then listing (restic's protocol: it needs no conditional put, which
//!   not every S3-compatible server has), renewed while held, ignored once expired;
//! - leftovers of crashed runs (incomplete multipart uploads, objects of a backup without a
//!   manifest) are removed by the next backup or prune of the database, under its lock.
//!
//! - `s3`: the client (object_store), streaming uploads, downloads, listing, deletion.
//! - `lock`: the cross-host lock.
//! - `credentials`: keys from the environment or a shared-credentials file.

mod credentials;
mod lock;
mod s3;

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use lock::S3Lock;
pub use s3::{S3Store, S3Upload, StoredObject};

/// An S3-compatible repository (the modules' `repository` and `copy_to`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3Repository {
    /// Endpoint URL, e.g. http://127.0.0.1:3900 (Garage, MinIO) or
    /// https://s3.eu-west-1.amazonaws.com; default: AWS's endpoint of the region.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Region (Garage's default is garage).
    #[serde(default = "default_region")]
    pub region: String,
    /// Bucket name.
    pub bucket: String,
    /// Key prefix the layout starts under (e.g. prod/backups); empty: the bucket's root.
    #[serde(default)]
    pub prefix: String,
    /// path (endpoint/bucket/key: most S3-compatible servers) or virtual (bucket.endpoint/key).
    #[serde(default)]
    pub addressing: Addressing,
    /// Where the keys come from: env (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
    /// AWS_SESSION_TOKEN of the module's environment), file (credentials_file), or chain (what
    /// the host is given: web identity token, container or instance profile).
    #[serde(default)]
    pub credentials: CredentialSource,
    /// AWS shared-credentials file (credentials: file): an INI file whose profile section has
    /// aws_access_key_id and aws_secret_access_key (and aws_session_token). Keep it 0600.
    #[serde(default)]
    #[schemars(extend("x-path" = true))]
    pub credentials_file: Option<PathBuf>,
    /// The profile (section) of credentials_file.
    #[serde(default = "default_profile")]
    pub credentials_profile: String,
    /// Server-side encryption asked of the server: none (the bucket's default), aes256
    /// (SSE-S3) or kms (SSE-KMS with sse_kms_key_id).
    #[serde(default)]
    pub server_side_encryption: ServerSideEncryption,
    /// KMS key of server_side_encryption kms.
    #[serde(default)]
    pub sse_kms_key_id: Option<String>,
    /// Size of one part of a multipart upload, in MiB (5 to 5120).
    #[serde(default = "default_part_size")]
    pub part_size_mib: u32,
    /// Parts uploaded at once. An upload holds about (this + 1) × part_size_mib in memory,
    /// whatever the size of the backup.
    #[serde(default = "default_concurrency")]
    pub upload_concurrency: u32,
    /// Seconds a lock stays valid without renewal (renewed every third of it while held): how
    /// long a crashed writer blocks the next one.
    #[serde(default = "default_lock_ttl")]
    pub lock_ttl_seconds: u64,
}

/// URL style of an S3 request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Addressing {
    /// https://endpoint/bucket/key
    #[default]
    Path,
    /// https://bucket.endpoint/key
    Virtual,
}

/// Where an S3 repository's keys come from; never from a module argument, so that they
/// appear in no task's arguments or output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CredentialSource {
    /// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN of the environment.
    #[default]
    Env,
    /// credentials_file (AWS shared-credentials format).
    File,
    /// The host's own: web identity token (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN),
    /// container credentials, or the instance profile.
    Chain,
}

/// Server-side encryption of stored objects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ServerSideEncryption {
    #[default]
    None,
    Aes256,
    Kms,
}

fn default_region() -> String {
    "us-east-1".into()
}

fn default_profile() -> String {
    "default".into()
}

fn default_part_size() -> u32 {
    16
}

fn default_concurrency() -> u32 {
    4
}

fn default_lock_ttl() -> u64 {
    300
}

impl S3Repository {
    /// A bucket at `endpoint` with every other setting at its default (credentials env).
    pub fn new(endpoint: Option<String>, region: &str, bucket: &str) -> S3Repository {
        S3Repository {
            endpoint,
            region: region.into(),
            bucket: bucket.into(),
            prefix: String::new(),
            addressing: Addressing::default(),
            credentials: CredentialSource::default(),
            credentials_file: None,
            credentials_profile: default_profile(),
            server_side_encryption: ServerSideEncryption::default(),
            sse_kms_key_id: None,
            part_size_mib: default_part_size(),
            upload_concurrency: default_concurrency(),
            lock_ttl_seconds: default_lock_ttl(),
        }
    }

    /// `s3://bucket/prefix`, for messages and listings (no secret in it).
    pub fn url(&self) -> String {
        let prefix = self.prefix.trim_matches('/');
        if prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{prefix}", self.bucket)
        }
    }
}
