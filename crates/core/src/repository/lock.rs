//! A lock that works across hosts in an S3 repository, without conditional puts (which not
//! every S3-compatible server has): each holder writes its own lock object
//! `<instance>/<db>/.locks/<scope>/<ttl>-<holder>.json`, then lists the scope. When another
//! live lock is there, it removes its own, waits and tries again; whichever of two writers
//! lists second sees the other, so two never both hold it (S3 lists what a finished PUT wrote).
//! A lock is live while its object's last modification (the server's clock) plus its ttl is
//! later than the server's time of our own object: no host's clock is trusted. The holder
//! rewrites its object every third of the ttl; a crashed holder's lock expires and is removed.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::s3::S3Store;
use crate::{Error, Result};

/// A held lock; released (its object deleted) when dropped.
pub struct S3Lock {
    store: S3Store,
    key: String,
    stop: Option<mpsc::Sender<()>>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

/// Who holds a lock, as written in its object.
fn holder_text() -> String {
    let uname = rustix::system::uname();
    format!(
        "{}:{}",
        uname.nodename().to_string_lossy(),
        std::process::id()
    )
}

impl S3Lock {
    /// Takes the lock `scope` of one database's backups, waiting up to `timeout` while
    /// another live holder has it. `what` names the work for the error message.
    pub fn acquire(
        store: &S3Store,
        instance: &str,
        database: &str,
        scope: &str,
        timeout: Duration,
        what: &str,
    ) -> Result<S3Lock> {
        match Self::try_acquire_until(store, instance, database, scope, Instant::now() + timeout)? {
            Ok(lock) => Ok(lock),
            Err(holder) => Err(Error::invalid(
                "repository lock",
                format!(
                    "{what} is locked in {} by {holder}, still after {}s; try again later or raise lock_timeout (a crashed holder's lock expires after its lock_ttl_seconds)",
                    store.settings.url(),
                    timeout.as_secs()
                ),
            )),
        }
    }

    /// Takes the lock if nobody else holds it; None when another live holder does.
    pub fn try_acquire(
        store: &S3Store,
        instance: &str,
        database: &str,
        scope: &str,
    ) -> Result<Option<S3Lock>> {
        Ok(Self::try_acquire_until(store, instance, database, scope, Instant::now())?.ok())
    }

    /// The lock, or (once `deadline` has passed) the description of who holds it.
    fn try_acquire_until(
        store: &S3Store,
        instance: &str,
        database: &str,
        scope: &str,
        deadline: Instant,
    ) -> Result<std::result::Result<S3Lock, String>> {
        let scope_key = format!(
            "{}/.locks/{scope}",
            S3Store::database_key(instance, database)
        );
        let ttl = store.settings.lock_ttl_seconds;
        let mut random = [0u8; 8];
        getrandom::fill(&mut random)
            .map_err(|e| Error::invalid("repository lock", format!("no randomness: {e}")))?;
        let id: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let own = format!("{scope_key}/{ttl}-{id}.json");
        let body = serde_json::json!({"holder": holder_text(), "ttl_seconds": ttl}).to_string();
        loop {
            store.put_bytes(&own, body.clone().into_bytes())?;
            let objects = store.list(&scope_key)?;
            let now = objects
                .iter()
                .find(|o| o.key == own)
                .map(|o| o.last_modified)
                .ok_or_else(|| {
                    Error::invalid(
                        "repository lock",
                        format!(
                            "the lock object just written is not listed in {}: the server does not list what it stored; this repository cannot be locked safely",
                            store.settings.url()
                        ),
                    )
                })?;
            let mut others = Vec::new();
            for object in objects.iter().filter(|o| o.key != own) {
                let name = object.key.rsplit('/').next().unwrap_or_default();
                let their_ttl: i64 = name
                    .split_once('-')
                    .and_then(|(t, _)| t.parse().ok())
                    .unwrap_or(0);
                let expires = object
                    .last_modified
                    .checked_add(jiff::SignedDuration::from_secs(their_ttl))
                    .unwrap_or(object.last_modified);
                if expires > now {
                    others.push(object.key.clone());
                } else {
                    // Expired: its holder crashed or lost the repository; nobody renews it.
                    store.delete(&object.key)?;
                }
            }
            if others.is_empty() {
                return Ok(Ok(Self::hold(store, own)));
            }
            store.delete(&own)?;
            if Instant::now() >= deadline {
                let holder = store
                    .get_bytes(&others[0])
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .and_then(|v| v["holder"].as_str().map(str::to_string))
                    .unwrap_or_else(|| "another run".into());
                return Ok(Err(format!("{holder} ({})", store.url(&others[0]))));
            }
            // Jitter: two writers that keep seeing each other stop doing so in lockstep.
            let jitter = u64::from(random[0]) * 4;
            std::thread::sleep(Duration::from_millis(500 + jitter));
        }
    }

    /// Starts renewing the lock object every third of its ttl.
    fn hold(store: &S3Store, key: String) -> S3Lock {
        let (stop, stopped) = mpsc::channel::<()>();
        let renew_store = store.clone();
        let renew_key = key.clone();
        let every = Duration::from_secs((store.settings.lock_ttl_seconds / 3).max(1));
        let body = serde_json::json!({"holder": holder_text(), "ttl_seconds": store.settings.lock_ttl_seconds})
            .to_string();
        let renewer = std::thread::spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                let _ = renew_store.put_bytes(&renew_key, body.clone().into_bytes());
            }
        });
        S3Lock {
            store: store.clone(),
            key,
            stop: Some(stop),
            renewer: Some(renewer),
        }
    }

    /// Whether a live lock of `scope` is held by anyone (a prune asks before deleting a backup
    /// under verification).
    pub fn is_held(store: &S3Store, instance: &str, database: &str, scope: &str) -> Result<bool> {
        match Self::try_acquire(store, instance, database, scope)? {
            Some(_released_on_drop) => Ok(false),
            None => Ok(true),
        }
    }
}

impl Drop for S3Lock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.join();
        }
        // Best effort: a lock that cannot be deleted now expires after its ttl.
        let _ = self.store.delete(&self.key);
    }
}
