//! Backups in an S3 repository (`repository`): the dump streamed to the bucket under the
//! database's cross-host lock, leftovers of crashed runs removed first, the manifest written
//! last; retention there; and copies of verified local backups to one (`copy_to`).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::ledger::{Outcome, Target};
use crate::repository::{S3Lock, S3Repository, S3Store};
use crate::retention::{PrunePlan, RetentionPolicy};
use crate::run::Recorder;

/// The lock scope of one database's writers (backup, prune, copy into it).
pub(crate) const WRITE_SCOPE: &str = "write";

/// The lock scope of the verification of one backup (by its timestamp directory name).
pub(crate) fn verify_scope(backup_key: &str) -> String {
    format!(
        "verify-{}",
        backup_key.rsplit('/').next().unwrap_or_default()
    )
}

/// What every writer of one database's backups does first: take its lock (waiting up to
/// `timeout`), then remove what crashed runs left, which no running writer can own now.
/// Returns the held lock and what was removed.
fn lock_writers(
    store: &S3Store,
    instance_id: &str,
    database: &str,
    timeout: Duration,
    doing: &str,
) -> Result<(S3Lock, Vec<String>)> {
    let what = format!("{doing} '{database}' of '{instance_id}'");
    let lock = S3Lock::acquire(store, instance_id, database, WRITE_SCOPE, timeout, &what)?;
    let removed = store.remove_leftovers(instance_id, database)?;
    Ok((lock, removed))
}

/// A backup of one database streamed into the repository.
pub(super) fn backup_to_repository(
    request: &BackupRequest,
    repository: &S3Repository,
    instance_id: &str,
    check_mode: bool,
) -> Result<BackupReport> {
    refuse_before_connecting(request)?;
    let store = S3Store::open(repository)?;
    let mut engine = engine::connect(&request.connection)?;
    let facts = engine.server_facts()?;
    let database_bytes = database_size(request, &engine.databases()?)?;
    let mut report = BackupReport {
        database_bytes,
        ..BackupReport::default()
    };
    if check_mode {
        return Ok(report);
    }
    if request.method == BackupMethod::Logical {
        check_privileges(engine.as_mut(), &request.database)?;
    }
    let (_lock, removed) = lock_writers(
        &store,
        instance_id,
        &request.database,
        Duration::from_secs(request.lock_timeout),
        "backing up",
    )?;
    report.removed_partials = removed;
    let started = jiff::Timestamp::now();
    let stamp = started.strftime("%Y%m%dT%H%M%S%.3fZ").to_string();
    let key = format!(
        "{}/{stamp}",
        S3Store::database_key(instance_id, &request.database)
    );
    // Private scratch space for a dump tool that wants a directory (none of the streamed
    // formats writes into it).
    let staging = tempfile::Builder::new()
        .prefix("dbcadence-staging-")
        .tempdir()
        .map_err(|e| Error::io("create a staging directory", std::env::temp_dir(), e))?;
    crate::progress::start(&format!("backup {}", request.database), database_bytes);
    let written = write_backup(
        engine.as_mut(),
        request,
        &facts,
        instance_id,
        &Dest::Object {
            store: &store,
            key: key.clone(),
            staging: staging.path(),
        },
        started,
    );
    crate::progress::finish();
    let manifest = written.map_err(|e| discard_objects(&store, &key, e))?;
    report.path = Some(PathBuf::from(store.url(&key)));
    report.manifest = Some(manifest);
    report.changed = true;
    Ok(report)
}

/// Removes the objects a failed backup uploaded (it has no manifest, so it is never listed
/// meanwhile); if even that fails, the error says so and the next backup removes them.
fn discard_objects(store: &S3Store, key: &str, error: Error) -> Error {
    let removed = store
        .list(key)
        .and_then(|objects| objects.iter().try_for_each(|o| store.delete(&o.key)));
    match removed {
        Ok(()) => error,
        Err(e) => Error::invalid(
            "backup",
            format!(
                "{error}; the objects it uploaded could not be removed either ({e}): they are never listed (no manifest) and the next backup of this database removes them"
            ),
        ),
    }
}

/// Retention of one database's backups in the repository: under its lock, leftovers of
/// crashed runs removed, a backup whose verification runs kept, the newest and the newest
/// verified always kept (the same plan as on disk). Check mode lists and decides only.
pub(super) fn prune(
    repository: &S3Repository,
    instance_id: &str,
    database: &str,
    policy: &RetentionPolicy,
    check_mode: bool,
) -> Result<PrunePlan> {
    let store = S3Store::open(repository)?;
    if check_mode {
        let (listing, _) = store.scan(Some(instance_id), Some(database))?;
        let mut plan = retention::plan(&listing.backups, policy);
        plan.damaged = listing.damaged;
        return Ok(plan);
    }
    let _writers = lock_writers(
        &store,
        instance_id,
        database,
        Duration::from_secs(60),
        "pruning",
    )?;
    let (listing, _) = store.scan(Some(instance_id), Some(database))?;
    let decided = retention::plan(&listing.backups, policy);
    let mut plan = PrunePlan {
        keep: decided.keep,
        damaged: listing.damaged,
        ..PrunePlan::default()
    };
    for url in decided.delete {
        let Some(key) = store.key_of_url(&url.to_string_lossy()) else {
            continue;
        };
        // Held while deleting: a verification that starts now finds no manifest and skips it.
        match S3Lock::try_acquire(&store, instance_id, database, &verify_scope(&key))? {
            None => {
                plan.keep.push(url.clone());
                plan.busy.push(url);
            }
            Some(_verification_lock) => {
                store.delete_backup(&key)?;
                plan.delete.push(url);
            }
        }
    }
    Ok(plan)
}

/// db_backup action prune with a repository: retention there, recorded as a prune.
pub(super) fn prune_recorded(
    request: &BackupRequest,
    repository: &S3Repository,
    instance_id: &str,
    check_mode: bool,
) -> Result<(BackupReport, Vec<String>)> {
    let recorder = Recorder::start(crate::task::Task::Prune, &request.run, check_mode);
    let target = Target {
        instance: instance_id.to_string(),
        db: Some(request.database.clone()),
    };
    let policy = request.retention.clone().unwrap_or_default();
    let result = if policy.is_empty() {
        Err(Error::invalid(
            "retention",
            "a prune needs a retention policy (keep_last, keep_daily, keep_weekly, keep_monthly)",
        ))
    } else {
        prune(
            repository,
            instance_id,
            &request.database,
            &policy,
            check_mode,
        )
    };
    match result {
        Ok(plan) => {
            let changed = !check_mode && !plan.delete.is_empty();
            let mut warnings = plan.warnings();
            let details = json!({"repository": repository.url(), "removed": plan.delete, "kept": plan.keep.len()});
            warnings.extend(recorder.finish(target, Outcome::Ok, changed, details, vec![]));
            let report = BackupReport {
                changed,
                pruned: plan.delete,
                kept: plan.keep,
                ..BackupReport::default()
            };
            Ok((report, warnings))
        }
        Err(e) => {
            recorder.fail(target, &e);
            Err(e)
        }
    }
}

/// db_backup action copy: every verified backup of the database in backup_dir that copy_to
/// lacks is uploaded (objects first, each re-hashed against the manifest on the way, the
/// manifest last), under copy_to's lock; then copy_to's retention. Recorded as its own task
/// (`copy`): a copy is not a new backup.
pub(super) fn copy_recorded(
    request: &BackupRequest,
    instance_id: &str,
    check_mode: bool,
) -> Result<(BackupReport, Vec<String>)> {
    let recorder = Recorder::start(crate::task::Task::Copy, &request.run, check_mode);
    let target = Target {
        instance: instance_id.to_string(),
        db: Some(request.database.clone()),
    };
    let result = copy(request, instance_id, check_mode);
    match result {
        Ok((report, mut warnings)) => {
            let details = json!({
                "copy_to": request.copy_to.as_ref().map(|r| r.url()),
                "copied": report.copied,
                "pruned": report.pruned,
            });
            warnings.extend(recorder.finish(target, Outcome::Ok, report.changed, details, vec![]));
            Ok((report, warnings))
        }
        Err(e) => {
            recorder.fail(target, &e);
            Err(e)
        }
    }
}

fn copy(
    request: &BackupRequest,
    instance_id: &str,
    check_mode: bool,
) -> Result<(BackupReport, Vec<String>)> {
    let Some(copy_to) = &request.copy_to else {
        return Err(Error::invalid(
            "copy_to",
            "action copy needs copy_to (the S3 repository to copy verified backups to)",
        ));
    };
    if request.backup_dir.as_os_str().is_empty() {
        return Err(Error::invalid(
            "backup_dir",
            "action copy copies from backup_dir: set it",
        ));
    }
    let store = S3Store::open(copy_to)?;
    let db_dir = request
        .backup_dir
        .join(encode_name(instance_id))
        .join(encode_name(&request.database));
    let local = scan_database(&db_dir);
    let mut warnings: Vec<String> = local.damaged.iter().map(|d| d.warning()).collect();
    let verified: Vec<&BackupEntry> = local
        .backups
        .iter()
        .filter(|b| b.verified && b.instance_id == instance_id && b.database == request.database)
        .collect();
    let stamp_of = |path: &std::path::Path| {
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let db_key = S3Store::database_key(instance_id, &request.database);
    let mut report = BackupReport {
        ..BackupReport::default()
    };
    let missing = |store: &S3Store| -> Result<Vec<&BackupEntry>> {
        let (remote, _) = store.scan(Some(instance_id), Some(&request.database))?;
        let present: Vec<String> = remote.backups.iter().map(|b| stamp_of(&b.path)).collect();
        Ok(verified
            .iter()
            .copied()
            .filter(|b| !present.contains(&stamp_of(&b.path)))
            .collect())
    };
    if check_mode {
        report.copied = missing(&store)?
            .iter()
            .map(|b| PathBuf::from(store.url(&format!("{db_key}/{}", stamp_of(&b.path)))))
            .collect();
        return Ok((report, warnings));
    }
    let (lock, removed) = lock_writers(
        &store,
        instance_id,
        &request.database,
        Duration::from_secs(request.lock_timeout),
        "copying",
    )?;
    report.removed_partials = removed;
    for backup in missing(&store)? {
        let key = format!("{db_key}/{}", stamp_of(&backup.path));
        copy_one(&store, &backup.path, &key).map_err(|e| discard_objects(&store, &key, e))?;
        report.copied.push(PathBuf::from(store.url(&key)));
    }
    drop(lock);
    report.changed = !report.copied.is_empty();
    if let Some(policy) = &request.retention {
        let plan = prune(copy_to, instance_id, &request.database, policy, false)?;
        warnings.extend(plan.warnings());
        report.changed |= !plan.delete.is_empty();
        report.pruned = plan.delete;
        report.kept = plan.keep;
    }
    Ok((report, warnings))
}

/// Uploads one local backup: every file of its manifest, re-hashed on the way (a local file
/// damaged since its verification is refused, not copied), the manifest last.
fn copy_one(store: &S3Store, dir: &std::path::Path, key: &str) -> Result<()> {
    let manifest = crate::verify::read_manifest(dir)?;
    for file in &manifest.files {
        let local = dir.join(&file.path);
        let mut source = std::fs::File::open(&local)
            .map_err(|e| Error::io("read the backup file", &local, e))?;
        let mut upload = store.upload(&format!("{key}/{}", file.path))?;
        let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = std::io::Read::read(&mut source, &mut buf)
                .map_err(|e| Error::io("read the backup file", &local, e))?;
            if n == 0 {
                break;
            }
            sha2::Digest::update(&mut hasher, &buf[..n]);
            std::io::Write::write_all(&mut upload, &buf[..n])
                .map_err(|e| write_error(std::path::Path::new(upload.url()), e))?;
        }
        if format!("{:x}", sha2::Digest::finalize(hasher)) != file.sha256 {
            // Dropped unfinished: the upload is aborted, nothing is stored at the key.
            return Err(Error::invalid(
                "copy",
                format!(
                    "'{}' no longer matches its checksum in the manifest: the local backup is damaged and is not copied (verify it again or take a new backup)",
                    local.display()
                ),
            ));
        }
        upload.finish()?;
    }
    let bytes = std::fs::read(dir.join("manifest.json"))
        .map_err(|e| Error::io("read the manifest", dir.join("manifest.json"), e))?;
    store.put_bytes(&format!("{key}/manifest.json"), bytes)
}
