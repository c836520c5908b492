//! Where an S3 repository's keys come from when they are given (credentials env or file):
//! the environment's AWS_* variables or an AWS shared-credentials file. Never a module
//! argument, so no key travels in a task's arguments or output.

use std::path::Path as FsPath;
use std::sync::Arc;

use object_store::StaticCredentialProvider;
use object_store::aws::AwsCredential;

use crate::{Error, Result};

/// Keys of an S3 shared-credentials file's profile.
pub(super) fn from_file(path: &FsPath, profile: &str) -> Result<AwsCredential> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io("read the repository's credentials file", path, e))?;
    let mut in_profile = false;
    let (mut key_id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let section = section.trim();
            in_profile = section == profile || section == format!("profile {profile}");
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((name, value)) = line.split_once('=') {
            let value = value.trim().to_string();
            match name.trim() {
                "aws_access_key_id" => key_id = Some(value),
                "aws_secret_access_key" => secret = Some(value),
                "aws_session_token" => token = Some(value),
                _ => {}
            }
        }
    }
    match (key_id, secret) {
        (Some(key_id), Some(secret_key)) => Ok(AwsCredential {
            key_id,
            secret_key,
            token,
        }),
        _ => Err(Error::invalid(
            "repository",
            format!(
                "the credentials file '{}' has no aws_access_key_id and aws_secret_access_key in profile [{profile}]",
                path.display()
            ),
        )),
    }
}

/// Keys from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN).
pub(super) fn from_env() -> Result<AwsCredential> {
    let get = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
        (Some(key_id), Some(secret_key)) => Ok(AwsCredential {
            key_id,
            secret_key,
            token: get("AWS_SESSION_TOKEN"),
        }),
        _ => Err(Error::invalid(
            "repository",
            "credentials env: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not both set in the module's environment; set them (Ansible: the task's environment) or use credentials file or chain",
        )),
    }
}

/// A provider that always hands out `credential`.
pub(super) fn static_provider(
    credential: AwsCredential,
) -> object_store::aws::AwsCredentialProvider {
    Arc::new(StaticCredentialProvider::new(credential))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_files_are_read_by_profile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        std::fs::write(
            &path,
            "[default]\naws_access_key_id = A\naws_secret_access_key = s#:$\\\"'x\n\n[profile backup]\naws_access_key_id=B\naws_secret_access_key=t\naws_session_token=T\n",
        )
        .unwrap();
        let default = from_file(&path, "default").unwrap();
        assert_eq!(
            (default.key_id.as_str(), default.secret_key.as_str()),
            ("A", "s#:$\\\"'x")
        );
        let backup = from_file(&path, "backup").unwrap();
        assert_eq!(backup.token.as_deref(), Some("T"));
        let missing = from_file(&path, "other").unwrap_err().to_string();
        assert!(missing.contains("[other]"), "{missing}");
        assert!(!missing.contains("s#:$"), "{missing}");
    }
}
