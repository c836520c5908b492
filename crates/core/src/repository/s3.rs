//! The S3 client of a repository: object_store's AmazonS3 on a small tokio runtime of its own
//! (the rest of the core is blocking), and the few requests object_store does not make
//! (listing incomplete multipart uploads), signed with its SigV4 signer.

use std::io::Write;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::{
    AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, AwsAuthorizer, AwsCredential, Checksum,
};
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{
    ObjectStore, ObjectStoreExt, PutMultipartOptions, PutPayload, RetryConfig, WriteMultipart,
};
use sha2::{Digest, Sha256};

use super::credentials;
use super::{Addressing, CredentialSource, S3Repository, ServerSideEncryption};
use crate::backup::{BackupEntry, Damaged, Listing, Manifest, encode_name};
use crate::files::Access;
use crate::{Error, Result};

/// An open S3 repository (cheap to clone: the client and runtime are shared).
#[derive(Clone)]
pub struct S3Store {
    pub(crate) settings: Arc<S3Repository>,
    store: Arc<AmazonS3>,
    runtime: Arc<tokio::runtime::Runtime>,
    http: reqwest::Client,
}

/// A key below the repository's prefix, and what a listing found there.
#[derive(Debug, Clone)]
pub struct StoredObject {
    /// The key relative to the prefix (`<instance>/<db>/<stamp>/<file>`).
    pub key: String,
    /// The server's time of its last write.
    pub last_modified: jiff::Timestamp,
}

/// The error of a request to the repository, with the next step where the cause is known.
pub(crate) fn s3_error(
    repository: &S3Repository,
    action: &str,
    e: impl std::fmt::Display,
) -> Error {
    let text = e.to_string();
    let lower = text.to_lowercase();
    let hint = if lower.contains("403")
        || lower.contains("forbidden")
        || lower.contains("accessdenied")
        || lower.contains("invalidaccesskeyid")
        || lower.contains("signaturedoesnotmatch")
        || lower.contains("no such key")
    {
        "; the server refused the credentials: check the repository's access key and secret (and that the key may read and write the bucket)"
    } else if lower.contains("quota") {
        "; the bucket is over its quota: remove old backups (retention) or raise the quota"
    } else if lower.contains("connect") || lower.contains("dns") || lower.contains("timed out") {
        "; the endpoint did not answer: check that it runs and that endpoint is right"
    } else if lower.contains("nosuchbucket") {
        "; the bucket does not exist: create it or fix bucket"
    } else {
        ""
    };
    Error::invalid(
        "repository",
        format!("{}: unable to {action}: {text}{hint}", repository.url()),
    )
}

impl S3Store {
    /// Checks the settings and builds the client; nothing is requested yet.
    pub fn open(settings: &S3Repository) -> Result<S3Store> {
        let invalid = |detail: String| Error::invalid("repository", detail);
        if settings.bucket.trim().is_empty() {
            return Err(invalid("bucket is empty".into()));
        }
        if !(5..=5120).contains(&settings.part_size_mib) {
            return Err(invalid(format!(
                "part_size_mib {} is outside 5..5120 (S3's part sizes)",
                settings.part_size_mib
            )));
        }
        if !(1..=64).contains(&settings.upload_concurrency) {
            return Err(invalid(format!(
                "upload_concurrency {} is outside 1..64",
                settings.upload_concurrency
            )));
        }
        if settings.lock_ttl_seconds < 10 {
            return Err(invalid("lock_ttl_seconds must be at least 10".into()));
        }
        let prefix = settings.prefix.trim_matches('/');
        if !prefix.is_empty() {
            Path::parse(prefix).map_err(|e| invalid(format!("prefix '{prefix}': {e}")))?;
        }
        crate::tls::install_provider();
        let mut builder = match settings.credentials {
            // The host's chain: object_store reads the same variables as the AWS SDKs.
            CredentialSource::Chain => AmazonS3Builder::from_env(),
            CredentialSource::Env => AmazonS3Builder::new()
                .with_credentials(credentials::static_provider(credentials::from_env()?)),
            CredentialSource::File => {
                let path = settings
                    .credentials_file
                    .as_deref()
                    .ok_or_else(|| invalid("credentials file needs credentials_file".into()))?;
                AmazonS3Builder::new().with_credentials(credentials::static_provider(
                    credentials::from_file(path, &settings.credentials_profile)?,
                ))
            }
        };
        builder = builder
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_virtual_hosted_style_request(settings.addressing == Addressing::Virtual)
            .with_checksum_algorithm(Checksum::SHA256)
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(30),
                ..RetryConfig::default()
            });
        if let Some(endpoint) = &settings.endpoint {
            builder = builder
                .with_endpoint(endpoint.trim_end_matches('/'))
                .with_allow_http(endpoint.starts_with("http://"));
        }
        builder = match settings.server_side_encryption {
            ServerSideEncryption::None => builder,
            ServerSideEncryption::Aes256 => {
                let key: AmazonS3ConfigKey = "aws_server_side_encryption"
                    .parse()
                    .map_err(|e| invalid(format!("server_side_encryption: {e}")))?;
                builder.with_config(key, "AES256")
            }
            ServerSideEncryption::Kms => {
                let key = settings.sse_kms_key_id.as_deref().ok_or_else(|| {
                    invalid("server_side_encryption kms needs sse_kms_key_id".into())
                })?;
                builder.with_sse_kms_encryption(key)
            }
        };
        let store = builder
            .build()
            .map_err(|e| s3_error(settings, "set up the S3 client", e))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("dbcadence-s3")
            .enable_all()
            .build()
            .map_err(|e| invalid(format!("unable to start the S3 client's runtime: {e}")))?;
        Ok(S3Store {
            settings: Arc::new(settings.clone()),
            store: Arc::new(store),
            runtime: Arc::new(runtime),
            http: reqwest::Client::new(),
        })
    }

    fn error(&self, action: &str, e: impl std::fmt::Display) -> Error {
        s3_error(&self.settings, action, e)
    }

    /// The full key of `rest` (relative to the prefix).
    fn path(&self, rest: &str) -> Result<Path> {
        let prefix = self.settings.prefix.trim_matches('/');
        let full = if prefix.is_empty() {
            rest.to_string()
        } else {
            format!("{prefix}/{rest}")
        };
        Path::parse(&full).map_err(|e| Error::invalid("repository key", e.to_string()))
    }

    /// `rest` relative to the prefix of a full key.
    fn relative(&self, key: &str) -> String {
        let prefix = self.settings.prefix.trim_matches('/');
        if prefix.is_empty() {
            key.to_string()
        } else {
            key.strip_prefix(&format!("{prefix}/"))
                .unwrap_or(key)
                .to_string()
        }
    }

    /// `s3://bucket/prefix/rest`: how a backup is named in reports and the ledger.
    pub fn url(&self, rest: &str) -> String {
        format!("{}/{rest}", self.settings.url())
    }

    /// The key of one database's backups: `<instance>/<db>`.
    pub fn database_key(instance: &str, database: &str) -> String {
        format!("{}/{}", encode_name(instance), encode_name(database))
    }

    /// The key (relative to the prefix) of a backup named by [`S3Store::url`].
    pub fn key_of_url(&self, url: &str) -> Option<String> {
        url.strip_prefix(&format!("{}/", self.settings.url()))
            .map(|k| k.trim_end_matches('/').to_string())
    }

    pub(crate) fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Stores a small object in one request.
    pub fn put_bytes(&self, rest: &str, bytes: Vec<u8>) -> Result<()> {
        let path = self.path(rest)?;
        self.block_on(self.store.put(&path, PutPayload::from(bytes)))
            .map_err(|e| self.error(&format!("upload '{rest}'"), e))?;
        Ok(())
    }

    /// A streaming multipart upload to `rest`: parts of part_size_mib are sent as they fill,
    /// upload_concurrency at a time. Nothing is visible at the key before [`S3Upload::finish`].
    pub fn upload(&self, rest: &str) -> Result<S3Upload> {
        let path = self.path(rest)?;
        let upload = self
            .block_on(
                self.store
                    .put_multipart_opts(&path, PutMultipartOptions::default()),
            )
            .map_err(|e| self.error(&format!("start the upload of '{rest}'"), e))?;
        let chunk = self.settings.part_size_mib as usize * 1024 * 1024;
        Ok(S3Upload {
            writer: Some(WriteMultipart::new_with_chunk_size(upload, chunk)),
            runtime: Arc::clone(&self.runtime),
            concurrency: self.settings.upload_concurrency as usize,
            url: self.url(rest),
        })
    }

    /// Uploads a local file (multipart above one part's size).
    pub fn upload_file(&self, file: &FsPath, rest: &str) -> Result<()> {
        let mut source =
            std::fs::File::open(file).map_err(|e| Error::io("read the backup file", file, e))?;
        let mut upload = self.upload(rest)?;
        std::io::copy(&mut source, &mut upload).map_err(|e| Error::Write {
            path: PathBuf::from(self.url(rest)),
            cause: e.to_string(),
            hint: "",
        })?;
        upload.finish()
    }

    /// The whole object (manifests, locks).
    pub fn get_bytes(&self, rest: &str) -> Result<Bytes> {
        let path = self.path(rest)?;
        self.block_on(async { self.store.get(&path).await?.bytes().await })
            .map_err(|e| self.error(&format!("download '{rest}'"), e))
    }

    /// Downloads `rest` into a new file `to` (with `access`); returns its size and sha256.
    pub fn download(&self, rest: &str, to: &FsPath, access: Access) -> Result<(u64, String)> {
        let path = self.path(rest)?;
        let mut file = access
            .create_file(to)
            .map_err(|e| Error::io("create the downloaded file", to, e))?;
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        self.block_on(async {
            let mut stream = self
                .store
                .get(&path)
                .await
                .map_err(|e| self.error(&format!("download '{rest}'"), e))?
                .into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.error(&format!("download '{rest}'"), e))?;
                hasher.update(&chunk);
                bytes += chunk.len() as u64;
                file.write_all(&chunk)
                    .map_err(|e| crate::backup::write_error(to, e))?;
            }
            Ok::<(), Error>(())
        })?;
        file.sync_all()
            .map_err(|e| crate::backup::write_error(to, e))?;
        Ok((bytes, format!("{:x}", hasher.finalize())))
    }

    /// Every object under `rest` (relative keys), in key order.
    pub fn list(&self, rest: &str) -> Result<Vec<StoredObject>> {
        let prefix = if rest.is_empty() {
            let p = self.settings.prefix.trim_matches('/');
            match p.is_empty() {
                true => None,
                false => Some(
                    Path::parse(p)
                        .map_err(|e| Error::invalid("repository prefix", e.to_string()))?,
                ),
            }
        } else {
            Some(self.path(rest)?)
        };
        let metas = self.block_on(async {
            let mut out = Vec::new();
            let mut stream = self.store.list(prefix.as_ref());
            while let Some(meta) = stream.next().await {
                out.push(meta?);
            }
            Ok::<_, object_store::Error>(out)
        });
        let metas = metas.map_err(|e| self.error("list the repository", e))?;
        let mut objects: Vec<StoredObject> = metas
            .into_iter()
            .map(|m| StoredObject {
                key: self.relative(m.location.as_ref()),
                last_modified: jiff::Timestamp::from_second(m.last_modified.timestamp())
                    .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            })
            .collect();
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// Deletes one object (absent is fine).
    pub fn delete(&self, rest: &str) -> Result<()> {
        let path = self.path(rest)?;
        match self.block_on(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(&format!("delete '{rest}'"), e)),
        }
    }

    /// Deletes a backup: its manifest first (from then on it is never listed), then the rest.
    pub fn delete_backup(&self, backup_key: &str) -> Result<()> {
        self.delete(&format!("{backup_key}/manifest.json"))?;
        for object in self.list(backup_key)? {
            self.delete(&object.key)?;
        }
        Ok(())
    }

    /// The complete backups (by their manifests) of one instance and database, or all; the
    /// damaged (a manifest that is not complete or not readable); and the keys of backups
    /// with objects but no manifest (uploads in progress or crashed; see `remove_leftovers`).
    pub fn scan(
        &self,
        instance: Option<&str>,
        database: Option<&str>,
    ) -> Result<(Listing, Vec<String>)> {
        let rest = match (instance, database) {
            (Some(i), Some(d)) => Self::database_key(i, d),
            (Some(i), None) => encode_name(i),
            _ => String::new(),
        };
        let objects = self.list(&rest)?;
        // Backups are the third level: <instance>/<db>/<stamp>/...; locks live in .locks.
        let mut backups: std::collections::BTreeMap<String, bool> = Default::default();
        for object in &objects {
            let parts: Vec<&str> = object.key.splitn(4, '/').collect();
            if parts.len() < 4 || parts[2].starts_with('.') {
                continue;
            }
            let key = parts[..3].join("/");
            let is_manifest = parts[3] == "manifest.json";
            *backups.entry(key).or_insert(false) |= is_manifest;
        }
        let mut listing = Listing::default();
        let mut incomplete = Vec::new();
        for (key, has_manifest) in backups {
            if !has_manifest {
                incomplete.push(key);
                continue;
            }
            let manifest = self
                .get_bytes(&format!("{key}/manifest.json"))
                .map_err(|e| e.to_string())
                .and_then(|bytes| crate::backup::complete_manifest(&bytes));
            let wanted = |m: &Manifest| {
                instance.is_none_or(|i| i == m.instance_id)
                    && database.is_none_or(|d| d == m.database)
            };
            match manifest {
                Ok(m) if !wanted(&m) => {}
                Ok(m) => listing
                    .backups
                    .push(BackupEntry::of(PathBuf::from(self.url(&key)), m)),
                Err(reason) => listing.damaged.push(Damaged {
                    path: PathBuf::from(self.url(&key)),
                    reason,
                }),
            }
        }
        listing
            .backups
            .sort_by(|a, b| a.started_at.cmp(&b.started_at));
        Ok((listing, incomplete))
    }

    /// Removes what crashed runs left of one database's backups: incomplete multipart uploads
    /// and the objects of backups without a manifest. Only with the database's lock held (no
    /// upload of it can be running then).
    pub fn remove_leftovers(&self, instance: &str, database: &str) -> Result<Vec<String>> {
        let db_key = Self::database_key(instance, database);
        let mut removed = Vec::new();
        for (key, upload_id) in self.incomplete_uploads(&format!("{db_key}/"))? {
            let path = self.path(&key)?;
            self.block_on(self.store.abort_multipart(&path, &upload_id))
                .map_err(|e| self.error(&format!("abort the incomplete upload of '{key}'"), e))?;
            removed.push(format!("incomplete upload of {}", self.url(&key)));
        }
        let (_, incomplete) = self.scan(Some(instance), Some(database))?;
        for key in incomplete {
            for object in self.list(&key)? {
                self.delete(&object.key)?;
            }
            removed.push(format!("backup without a manifest {}", self.url(&key)));
        }
        Ok(removed)
    }

    /// Incomplete multipart uploads under `rest` (ListMultipartUploads, which object_store
    /// does not offer: one request signed with its SigV4 signer), as (relative key, upload id).
    fn incomplete_uploads(&self, rest: &str) -> Result<Vec<(String, String)>> {
        let full_prefix = {
            let prefix = self.settings.prefix.trim_matches('/');
            if prefix.is_empty() {
                rest.to_string()
            } else {
                format!("{prefix}/{rest}")
            }
        };
        let bucket_url = self.bucket_url();
        let credential = self
            .block_on(self.store.credentials().get_credential())
            .map_err(|e| self.error("obtain credentials", e))?;
        let mut found = Vec::new();
        let (mut key_marker, mut upload_marker) = (String::new(), String::new());
        let tag = |body: &str, name: &str| -> Vec<String> {
            let re = regex::Regex::new(&format!("<{name}>([^<]*)</{name}>")).expect("valid");
            re.captures_iter(body)
                .map(|c| xml_unescape(&c[1]))
                .collect()
        };
        loop {
            let mut query = vec![
                ("uploads".to_string(), String::new()),
                ("prefix".to_string(), full_prefix.clone()),
            ];
            if !key_marker.is_empty() {
                query.push(("key-marker".into(), key_marker.clone()));
                query.push(("upload-id-marker".into(), upload_marker.clone()));
            }
            let query: String = query
                .iter()
                .map(|(k, v)| {
                    if v.is_empty() && k == "uploads" {
                        k.clone()
                    } else {
                        format!("{k}={}", uri_encode(v))
                    }
                })
                .collect::<Vec<_>>()
                .join("&");
            let url = format!("{bucket_url}?{query}");
            let body = self.signed_get(&url, &credential)?;
            for upload in body.split("<Upload>").skip(1) {
                let (keys, ids) = (tag(upload, "Key"), tag(upload, "UploadId"));
                if let (Some(key), Some(id)) = (keys.first(), ids.first()) {
                    found.push((self.relative(key), id.clone()));
                }
            }
            let truncated = tag(&body, "IsTruncated").first().map(String::as_str) == Some("true");
            let next_key = tag(&body, "NextKeyMarker").into_iter().next();
            let next_upload = tag(&body, "NextUploadIdMarker").into_iter().next();
            match (truncated, next_key) {
                (true, Some(k)) if !k.is_empty() => {
                    key_marker = k;
                    upload_marker = next_upload.unwrap_or_default();
                }
                _ => return Ok(found),
            }
        }
    }

    /// The bucket's base URL in the configured addressing style.
    fn bucket_url(&self) -> String {
        let endpoint = self
            .settings
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", self.settings.region));
        let endpoint = endpoint.trim_end_matches('/');
        match self.settings.addressing {
            Addressing::Path => format!("{endpoint}/{}", self.settings.bucket),
            Addressing::Virtual => match endpoint.split_once("://") {
                Some((scheme, host)) => format!("{scheme}://{}.{host}/", self.settings.bucket),
                None => format!("https://{}.{endpoint}/", self.settings.bucket),
            },
        }
    }

    fn signed_get(&self, url: &str, credential: &AwsCredential) -> Result<String> {
        let mut request = http::Request::builder()
            .method("GET")
            .uri(url)
            .body(object_store::client::HttpRequestBody::from(Vec::new()))
            .map_err(|e| self.error("build a request", e))?;
        AwsAuthorizer::new(credential, "s3", &self.settings.region)
            .try_authorize(&mut request, None)
            .map_err(|e| self.error("sign a request", e))?;
        let mut outgoing = self.http.get(url);
        for (name, value) in request.headers() {
            outgoing = outgoing.header(name.as_str(), value.as_bytes());
        }
        self.block_on(async {
            let response = outgoing
                .send()
                .await
                .map_err(|e| self.error("list incomplete uploads", e))?;
            let status = response.status();
            let body = response
                .text()
                .await
                .map_err(|e| self.error("list incomplete uploads", e))?;
            if status.is_success() {
                Ok(body)
            } else {
                Err(self.error(
                    "list incomplete uploads",
                    format!(
                        "HTTP {status}: {}",
                        body.chars().take(300).collect::<String>()
                    ),
                ))
            }
        })
    }
}

/// Percent-encoding of a query value as SigV4 wants it (unreserved characters kept).
fn uri_encode(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn xml_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// A streaming multipart upload (see [`S3Store::upload`]); aborted when dropped unfinished.
pub struct S3Upload {
    writer: Option<WriteMultipart>,
    runtime: Arc<tokio::runtime::Runtime>,
    concurrency: usize,
    url: String,
}

impl S3Upload {
    /// Completes the upload: from now on the object exists.
    pub fn finish(mut self) -> Result<()> {
        let writer = self.writer.take().expect("finished once");
        self.runtime
            .block_on(writer.finish())
            .map_err(|e| Error::Write {
                path: PathBuf::from(&self.url),
                cause: e.to_string(),
                hint: "",
            })?;
        Ok(())
    }

    /// Where it goes, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Write for S3Upload {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let writer = self.writer.as_mut().expect("not finished");
        // Part uploads are spawned on the client's runtime; waiting for capacity bounds the
        // memory held to (concurrency + 1) parts.
        let _entered = self.runtime.enter();
        writer.write(buf);
        self.runtime
            .block_on(writer.wait_for_capacity(self.concurrency))
            .map_err(std::io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            // Best effort: an upload that cannot be aborted now is removed by the next run.
            let _ = self.runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), writer.abort()).await
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded_for_signing() {
        assert_eq!(uri_encode("db%22x/2026"), "db%2522x%2F2026");
        assert_eq!(uri_encode("a-b_c.d~"), "a-b_c.d~");
    }
}
