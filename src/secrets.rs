//! AuthRef secrets: `ref://<scope>/<provider>/<key>` resolved at the moment of use from the
//! configured backends, in order.
//!
//! - `file` reads `<directory>/<scope>/<provider>/<key>`, without one trailing newline. The
//!   value is kept for at most `cache_ttl`, and re-read sooner when the file's modification
//!   time or length changes (a rotated secret is picked up on the next check).
//! - `env` reads `<env_prefix><SCOPE>_<PROVIDER>_<KEY>`: upper-cased, every character other
//!   than an ASCII letter or digit replaced by `_`.
//!
//! Architecture invariant: a secret value lives only in a [`SecretValue`], which has no
//! `Display`, no `Serialize` and a `Debug` that prints `[redacted]`. Errors name the AuthRef,
//! never the value, so they are safe to log and to return.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use secrecy::{ExposeSecret, SecretString};

use crate::config::{SecretBackend, SecretsConfig};

/// A secret file larger than this is refused rather than read: keys and tokens are small.
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// A parsed `ref://<scope>/<provider>/<key>`. Each segment is 1–128 characters of
/// `[A-Za-z0-9._-]` and never `.` or `..`, so it can name a file without escaping the
/// secrets directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AuthRef {
    scope: String,
    provider: String,
    key: String,
}

impl AuthRef {
    /// Parses an AuthRef with the same rule that validates the integration resource.
    pub fn parse(raw: &str) -> Result<AuthRef, SecretError> {
        if !crate::validation::is_auth_ref(raw) {
            // The refused string is not echoed: a user may have pasted a credential here.
            return Err(SecretError::Invalid);
        }
        let mut segments = raw["ref://".len()..].split('/').map(str::to_owned);
        match (segments.next(), segments.next(), segments.next()) {
            (Some(scope), Some(provider), Some(key)) => Ok(AuthRef {
                scope,
                provider,
                key,
            }),
            _ => Err(SecretError::Invalid),
        }
    }

    pub fn scope(&self) -> &str {
        &self.scope
    }

    pub fn provider(&self) -> &str {
        &self.provider
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// The file the `file` backend reads for this reference.
    pub fn file_path(&self, directory: &Path) -> PathBuf {
        directory
            .join(&self.scope)
            .join(&self.provider)
            .join(&self.key)
    }

    /// The variable the `env` backend reads for this reference.
    pub fn env_var(&self, prefix: &str) -> String {
        let suffix: String = [&self.scope, &self.provider, &self.key]
            .map(|segment| {
                segment
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() {
                            c.to_ascii_uppercase()
                        } else {
                            '_'
                        }
                    })
                    .collect::<String>()
            })
            .join("_");
        format!("{prefix}{suffix}")
    }
}

impl fmt::Display for AuthRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ref://{}/{}/{}", self.scope, self.provider, self.key)
    }
}

impl std::str::FromStr for AuthRef {
    type Err = SecretError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuthRef::parse(s)
    }
}

/// A resolved secret. Deliberately without `Display` or `Serialize`; `Debug` prints
/// `[redacted]`. The only way to the value is [`SecretValue::expose`], at the point where it
/// goes into a request.
#[derive(Clone)]
pub struct SecretValue(SecretString);

impl SecretValue {
    pub fn new(value: String) -> SecretValue {
        SecretValue(SecretString::from(value))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// `user:password` split at the first colon (basic-auth secrets); the whole value is the
    /// user when there is no colon.
    pub fn user_and_password(&self) -> (&str, &str) {
        let value = self.expose();
        value.split_once(':').unwrap_or((value, ""))
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue([redacted])")
    }
}

/// Why an AuthRef could not be resolved. Connectors turn every variant into a `config`
/// failure. The messages name the reference and the backend, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("invalid AuthRef (expected ref://<scope>/<provider>/<key>)")]
    Invalid,
    #[error("AuthRef {auth_ref} is not resolvable (tried: {tried})")]
    Unresolvable { auth_ref: String, tried: String },
    #[error("AuthRef {auth_ref}: the {backend} backend failed: {reason}")]
    Backend {
        auth_ref: String,
        backend: &'static str,
        reason: &'static str,
    },
}

/// Resolves AuthRefs through the configured backends. Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct SecretResolver {
    inner: Arc<ResolverInner>,
}

struct ResolverInner {
    backends: Vec<SecretBackend>,
    directory: PathBuf,
    env_prefix: String,
    cache_ttl: Duration,
    files: Mutex<HashMap<PathBuf, CachedFile>>,
}

/// A file secret with what identified the file version it was read from.
struct CachedFile {
    value: SecretValue,
    modified: Option<SystemTime>,
    len: u64,
    read_at: Instant,
}

impl fmt::Debug for SecretResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretResolver")
            .field("backends", &self.inner.backends)
            .field("directory", &self.inner.directory)
            .field("env_prefix", &self.inner.env_prefix)
            .field("cache_ttl", &self.inner.cache_ttl)
            .finish_non_exhaustive()
    }
}

impl SecretResolver {
    pub fn new(config: &SecretsConfig) -> SecretResolver {
        SecretResolver {
            inner: Arc::new(ResolverInner {
                backends: config.backends.clone(),
                directory: config.directory.clone(),
                env_prefix: config.env_prefix.clone(),
                cache_ttl: config.cache_ttl,
                files: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Parses and resolves `raw`.
    pub fn resolve_str(&self, raw: &str) -> Result<SecretValue, SecretError> {
        self.resolve(&AuthRef::parse(raw)?)
    }

    /// The value of `auth_ref` from the first backend that has it.
    pub fn resolve(&self, auth_ref: &AuthRef) -> Result<SecretValue, SecretError> {
        let mut tried = Vec::new();
        for backend in &self.inner.backends {
            let found = match backend {
                SecretBackend::File => {
                    tried.push("file");
                    self.read_file(auth_ref)?
                }
                SecretBackend::Env => {
                    tried.push("env");
                    self.read_env(auth_ref)?
                }
            };
            if let Some(value) = found {
                return Ok(value);
            }
        }
        tracing::debug!(auth_ref = %auth_ref, "AuthRef not resolvable");
        Err(SecretError::Unresolvable {
            auth_ref: auth_ref.to_string(),
            tried: if tried.is_empty() {
                "no backend configured".to_owned()
            } else {
                tried.join(", ")
            },
        })
    }

    fn read_env(&self, auth_ref: &AuthRef) -> Result<Option<SecretValue>, SecretError> {
        match std::env::var(auth_ref.env_var(&self.inner.env_prefix)) {
            Ok(value) if value.is_empty() => Ok(None),
            Ok(value) => Ok(Some(SecretValue::new(value))),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(SecretError::Backend {
                auth_ref: auth_ref.to_string(),
                backend: "env",
                reason: "the variable is not valid UTF-8",
            }),
        }
    }

    fn read_file(&self, auth_ref: &AuthRef) -> Result<Option<SecretValue>, SecretError> {
        let path = auth_ref.file_path(&self.inner.directory);
        let failed = |reason: &'static str| SecretError::Backend {
            auth_ref: auth_ref.to_string(),
            backend: "file",
            reason,
        };
        let metadata = match std::fs::metadata(&path) {
            Ok(metadata) => metadata,
            Err(e) if is_absent(&e) => {
                self.forget(&path);
                return Ok(None);
            }
            Err(_) => return Err(failed("the file cannot be read")),
        };
        if !metadata.is_file() {
            return Err(failed("not a regular file"));
        }
        if metadata.len() > MAX_SECRET_FILE_BYTES {
            return Err(failed("the file is larger than 64 KiB"));
        }
        let modified = metadata.modified().ok();
        if let Some(value) = self.cached(&path, modified, metadata.len()) {
            return Ok(Some(value));
        }
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if is_absent(&e) => return Ok(None),
            Err(_) => return Err(failed("the file cannot be read")),
        };
        let mut text = String::from_utf8(bytes).map_err(|_| failed("not valid UTF-8"))?;
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        if text.is_empty() {
            return Ok(None);
        }
        let value = SecretValue::new(text);
        if !self.inner.cache_ttl.is_zero() {
            self.lock_files().insert(
                path,
                CachedFile {
                    value: value.clone(),
                    modified,
                    len: metadata.len(),
                    read_at: Instant::now(),
                },
            );
        }
        Ok(Some(value))
    }

    /// The cached value of `path` if it is younger than the TTL and the file is unchanged.
    fn cached(&self, path: &Path, modified: Option<SystemTime>, len: u64) -> Option<SecretValue> {
        let files = self.lock_files();
        let entry = files.get(path)?;
        let fresh = entry.read_at.elapsed() < self.inner.cache_ttl
            && entry.modified == modified
            && modified.is_some()
            && entry.len == len;
        fresh.then(|| entry.value.clone())
    }

    fn forget(&self, path: &Path) {
        self.lock_files().remove(path);
    }

    fn lock_files(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, CachedFile>> {
        // A panic while holding the lock cannot leave the map inconsistent (every update is a
        // single insert or remove), so a poisoned lock is still usable.
        self.inner
            .files
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A missing file, or a path through something that is not a directory.
fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_the_backends_locations() {
        let auth_ref = AuthRef::parse("ref://team-a/harbor.prod/robot_token").unwrap();
        assert_eq!(auth_ref.to_string(), "ref://team-a/harbor.prod/robot_token");
        assert_eq!(
            auth_ref.env_var("CATALOGD_SECRET_"),
            "CATALOGD_SECRET_TEAM_A_HARBOR_PROD_ROBOT_TOKEN"
        );
        assert_eq!(
            auth_ref.file_path(Path::new("/s")),
            Path::new("/s/team-a/harbor.prod/robot_token")
        );
    }

    #[test]
    fn refuses_malformed_references_without_echoing_them() {
        for raw in [
            "ref://a/b",
            "ref://a/b/c/d",
            "ref://../b/c",
            "ref://a/../c",
            "ref://a/b/..",
            "ref://a/./c",
            "ref://a/b%2f/c",
            "ref://a/b/c\n",
            "hunter2",
            "",
        ] {
            let error = AuthRef::parse(raw).unwrap_err();
            assert_eq!(error, SecretError::Invalid, "{raw:?}");
            if !raw.is_empty() {
                assert!(!error.to_string().contains(raw), "{raw:?}");
            }
        }
    }

    #[test]
    fn secret_value_debug_is_redacted() {
        let value = SecretValue::new("s3cr3t-value".to_owned());
        assert_eq!(format!("{value:?}"), "SecretValue([redacted])");
        assert_eq!(value.user_and_password(), ("s3cr3t-value", ""));
    }
}
