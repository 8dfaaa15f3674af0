//! Bearer-token authentication: JWT verification (HS256, RS256, ES256), the two scopes,
//! and minting tokens for `catalogd token`.
//!
//! Keys come from files or environment variables named in `[auth]`. With nothing configured,
//! an HS256 key is generated once under `data/` (mode 0600) so the quick start needs no setup;
//! `serve` and `token` then read the same file.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::config::AuthConfig;

/// Read-only access: list, get, health, history.
pub const SCOPE_READ: &str = "integrations.read";
/// Changes: create, update, delete, lifecycle operations, the audit trail. Implies read.
pub const SCOPE_ADMIN: &str = "integrations.admin";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Read,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => SCOPE_READ,
            Scope::Admin => SCOPE_ADMIN,
        }
    }
}

/// The claims catalogd reads and writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub tenant: String,
    /// Space-separated scopes (RFC 8693 style).
    pub scope: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub tenant_id: String,
    read: bool,
    admin: bool,
}

impl Principal {
    /// Whether the caller holds `scope`. The admin scope implies read: an operator who may
    /// change an integration may also look at it.
    pub fn has(&self, scope: Scope) -> bool {
        match scope {
            Scope::Read => self.read || self.admin,
            Scope::Admin => self.admin,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    /// Deliberately vague: the caller learns only that the token was refused.
    #[error("invalid or expired token")]
    Invalid,
    #[error("cannot read key {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("environment variable {0} holding the JWT key is not set or empty")]
    KeyEnv(String),
    #[error("key {0} is not a PEM RSA or EC P-256 key")]
    KeyFormat(PathBuf),
    #[error("a tenant id is 1-64 characters of A-Z, a-z, 0-9, '_' and '-'")]
    InvalidTenant,
    #[error("minting RS256/ES256 tokens needs auth.jwt_private_key_file")]
    NoPrivateKey,
    #[error(
        "configure one of auth.jwt_secret_file, auth.jwt_secret_env, auth.jwt_public_key_file"
    )]
    Ambiguous,
    #[error("cannot sign token: {0}")]
    Sign(String),
}

/// Where the key came from, for the start-up log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    SecretFile(PathBuf),
    SecretEnv(String),
    PublicKeyFile(PathBuf),
    /// Generated on this start (`true`) or by an earlier one.
    Generated {
        path: PathBuf,
        new: bool,
    },
}

/// Verifies bearer tokens, and mints them when it holds a signing key.
pub struct Authenticator {
    decoding: DecodingKey,
    encoding: Option<EncodingKey>,
    validation: Validation,
    algorithm: Algorithm,
    pub source: KeySource,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("algorithm", &self.algorithm)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Builds the authenticator from `[auth]`, generating the HS256 key file when no key is
    /// configured and the file does not exist yet.
    pub fn from_config(config: &AuthConfig) -> Result<Self, AuthError> {
        let configured = [
            config.jwt_secret_file.is_some(),
            config.jwt_secret_env.is_some(),
            config.jwt_public_key_file.is_some(),
        ];
        if configured.iter().filter(|&&c| c).count() > 1 {
            return Err(AuthError::Ambiguous);
        }
        if let Some(path) = &config.jwt_public_key_file {
            return Self::asymmetric(config, path);
        }
        let (secret, source) = if let Some(path) = &config.jwt_secret_file {
            (read_secret_file(path)?, KeySource::SecretFile(path.clone()))
        } else if let Some(var) = &config.jwt_secret_env {
            let value = std::env::var(var)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| AuthError::KeyEnv(var.clone()))?;
            (
                SecretString::from(value.trim().to_owned()),
                KeySource::SecretEnv(var.clone()),
            )
        } else {
            let path = &config.generated_key_file;
            let new = generate_key_file(path)?;
            (
                read_secret_file(path)?,
                KeySource::Generated {
                    path: path.clone(),
                    new,
                },
            )
        };
        let key = secret.expose_secret().as_bytes();
        Ok(Authenticator {
            decoding: DecodingKey::from_secret(key),
            encoding: Some(EncodingKey::from_secret(key)),
            validation: validation(config, Algorithm::HS256),
            algorithm: Algorithm::HS256,
            source,
        })
    }

    fn asymmetric(config: &AuthConfig, path: &Path) -> Result<Self, AuthError> {
        let pem = read_file(path)?;
        let (algorithm, decoding) = if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
            (Algorithm::RS256, key)
        } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
            (Algorithm::ES256, key)
        } else {
            return Err(AuthError::KeyFormat(path.to_owned()));
        };
        let encoding = match &config.jwt_private_key_file {
            None => None,
            Some(private) => {
                let pem = read_file(private)?;
                let key = match algorithm {
                    Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
                    _ => EncodingKey::from_ec_pem(&pem),
                }
                .map_err(|_| AuthError::KeyFormat(private.clone()))?;
                Some(key)
            }
        };
        Ok(Authenticator {
            decoding,
            encoding,
            validation: validation(config, algorithm),
            algorithm,
            source: KeySource::PublicKeyFile(path.to_owned()),
        })
    }

    /// Verifies a bearer token and returns its principal.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| AuthError::Invalid)?;
        let claims = data.claims;
        if claims.sub.is_empty() || !is_valid_tenant_id(&claims.tenant) {
            return Err(AuthError::Invalid);
        }
        let scopes: Vec<&str> = claims.scope.split_ascii_whitespace().collect();
        Ok(Principal {
            read: scopes.contains(&SCOPE_READ),
            admin: scopes.contains(&SCOPE_ADMIN),
            subject: claims.sub,
            tenant_id: claims.tenant,
        })
    }

    /// Signs a token for `tenant` with the given scopes, valid for `ttl`.
    pub fn mint(
        &self,
        tenant: &str,
        subject: &str,
        scopes: &[String],
        ttl: Duration,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<String, AuthError> {
        let key = self.encoding.as_ref().ok_or(AuthError::NoPrivateKey)?;
        if !is_valid_tenant_id(tenant) {
            return Err(AuthError::InvalidTenant);
        }
        let claims = Claims {
            sub: subject.to_owned(),
            tenant: tenant.to_owned(),
            scope: scopes.join(" "),
            exp: now.timestamp() + ttl.as_secs() as i64,
            iat: Some(now.timestamp()),
            iss: self
                .validation
                .iss
                .as_ref()
                .and_then(|s| s.iter().next().cloned()),
            aud: self
                .validation
                .aud
                .as_ref()
                .and_then(|s| s.iter().next().cloned()),
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key)
            .map_err(|e| AuthError::Sign(e.to_string()))
    }
}

/// Tenant ids name NATS subjects (`integrations.events.<tenant>.<event>`), so they are
/// restricted to characters that are safe in a subject token: 1–64 of `[A-Za-z0-9_-]`, and
/// never `_system`, whose subjects carry the daemon's own events (the network guard's).
/// A token for any other tenant id is refused like any invalid token.
pub fn is_valid_tenant_id(tenant: &str) -> bool {
    tenant != crate::network_guard::SYSTEM_TENANT
        && (1..=64).contains(&tenant.len())
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn validation(config: &AuthConfig, algorithm: Algorithm) -> Validation {
    let mut v = Validation::new(algorithm);
    v.leeway = config.leeway.as_secs();
    v.validate_nbf = true;
    // jsonwebtoken checks `iss` and `aud` only when present unless they are also required, so
    // a configured issuer or audience must be required explicitly.
    let mut required = vec!["exp", "sub"];
    match &config.audience {
        Some(aud) => {
            v.set_audience(&[aud]);
            required.push("aud");
        }
        None => v.validate_aud = false,
    }
    if let Some(iss) = &config.issuer {
        v.set_issuer(&[iss]);
        required.push("iss");
    }
    v.set_required_spec_claims(&required);
    v
}

fn read_file(path: &Path) -> Result<Vec<u8>, AuthError> {
    std::fs::read(path).map_err(|source| AuthError::KeyFile {
        path: path.to_owned(),
        source,
    })
}

fn read_secret_file(path: &Path) -> Result<SecretString, AuthError> {
    let bytes = read_file(path)?;
    let text = String::from_utf8(bytes).map_err(|_| AuthError::KeyFormat(path.to_owned()))?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(AuthError::KeyFormat(path.to_owned()));
    }
    Ok(SecretString::from(trimmed.to_owned()))
}

/// Creates `path` with 256 random bits (hex) and mode 0600 unless it exists. Returns whether
/// a new key was written. `create_new` makes two racing starts agree on one key.
fn generate_key_file(path: &Path) -> Result<bool, AuthError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if path.exists() {
        return Ok(false);
    }
    let io = |source| AuthError::KeyFile {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
    }
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(io(e)),
    };
    let key: [u8; 32] = rand::random();
    file.write_all(format!("{}\n", hex::encode(key)).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs256(dir: &Path) -> Authenticator {
        let config = AuthConfig {
            generated_key_file: dir.join("data/key"),
            ..AuthConfig::default()
        };
        Authenticator::from_config(&config).unwrap()
    }

    #[test]
    fn generated_key_is_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = hs256(dir.path());
        assert!(matches!(a.source, KeySource::Generated { new: true, .. }));
        let mode = std::fs::metadata(dir.path().join("data/key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = hs256(dir.path());
        assert!(matches!(b.source, KeySource::Generated { new: false, .. }));
        let now = chrono::Utc::now();
        let token = a
            .mint(
                "acme",
                "alice",
                &[SCOPE_READ.into()],
                Duration::from_secs(60),
                now,
            )
            .unwrap();
        let p = b.verify(&token).unwrap();
        assert_eq!(
            (p.tenant_id.as_str(), p.subject.as_str()),
            ("acme", "alice")
        );
        assert!(p.has(Scope::Read) && !p.has(Scope::Admin));
    }

    #[test]
    fn tenant_ids_must_be_subject_safe() {
        let dir = tempfile::tempdir().unwrap();
        let a = hs256(dir.path());
        let now = chrono::Utc::now();
        let ttl = Duration::from_secs(60);
        for bad in [
            "",
            "a.b",
            "a b",
            "a*",
            "a>",
            &"x".repeat(65),
            "ünï",
            "_system",
        ] {
            assert!(
                matches!(
                    a.mint(bad, "s", &[], ttl, now),
                    Err(AuthError::InvalidTenant)
                ),
                "{bad:?}"
            );
            // A token carrying such a tenant (signed by someone else with our key) is refused.
            let claims = Claims {
                sub: "s".into(),
                tenant: bad.to_string(),
                scope: SCOPE_READ.into(),
                exp: now.timestamp() + 60,
                iat: None,
                iss: None,
                aud: None,
            };
            let key = EncodingKey::from_secret(
                std::fs::read_to_string(dir.path().join("data/key"))
                    .unwrap()
                    .trim()
                    .as_bytes(),
            );
            let token =
                jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap();
            assert!(
                matches!(a.verify(&token), Err(AuthError::Invalid)),
                "{bad:?}"
            );
        }
        for good in ["acme", "Acme_Corp-42", &"x".repeat(64)] {
            assert!(a.mint(good, "s", &[], ttl, now).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn expired_and_foreign_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = hs256(dir.path());
        let other = hs256(&dir.path().join("other"));
        let long_ago = chrono::Utc::now() - chrono::Duration::hours(2);
        let expired = a
            .mint(
                "acme",
                "alice",
                &[SCOPE_ADMIN.into()],
                Duration::from_secs(60),
                long_ago,
            )
            .unwrap();
        assert!(matches!(a.verify(&expired), Err(AuthError::Invalid)));
        let foreign = other
            .mint(
                "acme",
                "alice",
                &[SCOPE_ADMIN.into()],
                Duration::from_secs(60),
                chrono::Utc::now(),
            )
            .unwrap();
        assert!(matches!(a.verify(&foreign), Err(AuthError::Invalid)));
        assert!(matches!(a.verify("not.a.jwt"), Err(AuthError::Invalid)));
    }

    /// Generates a key pair with the openssl CLI, as an operator would.
    fn keypair(dir: &Path, name: &str, genpkey_args: &[&str]) -> (PathBuf, PathBuf) {
        let private = dir.join(format!("{name}.key.pem"));
        let public = dir.join(format!("{name}.pub.pem"));
        let ok = std::process::Command::new("openssl")
            .arg("genpkey")
            .args(genpkey_args)
            .arg("-out")
            .arg(&private)
            .status()
            .unwrap()
            .success();
        assert!(ok, "openssl genpkey");
        let ok = std::process::Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&private)
            .arg("-out")
            .arg(&public)
            .status()
            .unwrap()
            .success();
        assert!(ok, "openssl pkey -pubout");
        (private, public)
    }

    #[test]
    fn rs256_and_es256_from_public_key_files() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "rsa",
                &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"][..],
                Algorithm::RS256,
            ),
            (
                "ec",
                &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"][..],
                Algorithm::ES256,
            ),
        ];
        let hs = hs256(dir.path());
        for (name, args, algorithm) in cases {
            let (private, public) = keypair(dir.path(), name, args);
            let verify_only = Authenticator::from_config(&AuthConfig {
                jwt_public_key_file: Some(public.clone()),
                ..AuthConfig::default()
            })
            .unwrap();
            assert_eq!(verify_only.algorithm, algorithm);
            let now = chrono::Utc::now();
            let ttl = Duration::from_secs(60);
            assert!(matches!(
                verify_only.mint("acme", "a", &[], ttl, now),
                Err(AuthError::NoPrivateKey)
            ));
            let signer = Authenticator::from_config(&AuthConfig {
                jwt_public_key_file: Some(public),
                jwt_private_key_file: Some(private),
                ..AuthConfig::default()
            })
            .unwrap();
            let token = signer
                .mint("acme", "carol", &[SCOPE_ADMIN.into()], ttl, now)
                .unwrap();
            let p = verify_only.verify(&token).unwrap();
            assert_eq!(
                (p.tenant_id.as_str(), p.subject.as_str()),
                ("acme", "carol")
            );
            assert!(p.has(Scope::Admin) && p.has(Scope::Read));
            // An HS256 token is refused by an RS256/ES256 verifier (no algorithm confusion).
            let hs_token = hs
                .mint("acme", "carol", &[SCOPE_ADMIN.into()], ttl, now)
                .unwrap();
            assert!(matches!(
                verify_only.verify(&hs_token),
                Err(AuthError::Invalid)
            ));
        }
    }

    #[test]
    fn issuer_and_audience_are_enforced_when_configured() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        std::fs::write(&key, "shared-secret-for-this-test-0123456789").unwrap();
        let strict = Authenticator::from_config(&AuthConfig {
            jwt_secret_file: Some(key.clone()),
            issuer: Some("https://sso.example.com".into()),
            audience: Some("catalogd".into()),
            ..AuthConfig::default()
        })
        .unwrap();
        let lax = Authenticator::from_config(&AuthConfig {
            jwt_secret_file: Some(key),
            ..AuthConfig::default()
        })
        .unwrap();
        let now = chrono::Utc::now();
        let ttl = Duration::from_secs(60);
        let good = strict
            .mint("acme", "a", &[SCOPE_READ.into()], ttl, now)
            .unwrap();
        assert!(strict.verify(&good).is_ok());
        let no_claims = lax
            .mint("acme", "a", &[SCOPE_READ.into()], ttl, now)
            .unwrap();
        assert!(matches!(strict.verify(&no_claims), Err(AuthError::Invalid)));
    }
}
