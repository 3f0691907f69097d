//! The server's signing keys: ES256 (ECDSA P-256 with SHA-256), which sign per-run identity
//! tokens (JWTs) and execution receipts.
//!
//! Invariants:
//! - private keys are stored only sealed with the secret keyring (`signing_keys.sealed`, bound
//!   to the key id), so a database dump without the secret key cannot sign;
//! - every key is published in the JWKS from the moment it is stored, and stays published, so
//!   what an older key signed (a receipt, a token within its lifetime) keeps verifying;
//! - a new key signs only once it is [`ACTIVATION`] old (clouds cache JWKS for minutes): the
//!   newest key of that age signs, or the oldest of all when none is that old (the first key);
//! - the first start makes the first key (two replicas racing both insert theirs; both are
//!   published); a running server re-reads the keys every [`RELOAD`] in the background, so a
//!   run's transaction never waits on a key read;
//! - the JWKS answer is read from the database at most once per [`PUBLISHED_TTL`], however
//!   often it is asked for without credentials.
//!
//! ring does the cryptography (it is already built for rustls); the JWS compact form
//! (`header.payload.signature`, base64url without padding) is assembled here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use proctor_entity::signing_key;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
    UnparsedPublicKey,
};
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, QueryOrder, Set};
use serde_json::{Value, json};
use sha2::Digest as _;
use tokio::sync::Mutex;

use crate::error::ApiError;
use crate::secrets::keyring::{Keyring, Sealed};

/// How often a running server re-reads the keys.
pub const RELOAD: Duration = Duration::from_secs(60);
/// How old a key must be before it signs (so every cached JWKS holds it by then).
pub const ACTIVATION: Duration = Duration::from_secs(5 * 60);
/// How long the served JWKS is reused.
const PUBLISHED_TTL: Duration = Duration::from_secs(1);
/// The JWS algorithm.
pub const ALGORITHM: &str = "ES256";

fn internal(what: &str) -> impl Fn(String) -> ApiError + '_ {
    move |detail| ApiError::Internal(anyhow::anyhow!("{what}: {detail}"))
}

/// `value` with every object's keys sorted, so equal JSON encodes to equal bytes whatever
/// order it was built or read in (the canonical form of audit events and receipts).
pub fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let ordered: std::collections::BTreeMap<&String, Value> = map
                .iter()
                .map(|(key, value)| (key, sorted(value)))
                .collect();
            serde_json::to_value(ordered).unwrap_or(Value::Null)
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// The keyring context a private key is sealed under.
fn context(kid: &str) -> String {
    format!("proctor:signing-key:{kid}")
}

/// A public key as read from the database.
#[derive(Clone, Debug)]
pub struct PublicKey {
    /// Key id.
    pub kid: String,
    /// The JWK (`kty`, `crv`, `x`, `y`, `kid`, `alg`, `use`).
    pub jwk: Value,
    /// The uncompressed point (0x04 ‖ x ‖ y) ring verifies with.
    point: Vec<u8>,
}

impl PublicKey {
    fn from_row(row: &signing_key::Model) -> Result<Self, ApiError> {
        let jwk: Value = serde_json::from_str(&row.public_jwk)
            .map_err(|e| internal("a stored public key is not JSON")(e.to_string()))?;
        let coordinate = |name: &str| {
            jwk[name]
                .as_str()
                .and_then(|text| URL_SAFE_NO_PAD.decode(text).ok())
                .filter(|bytes| bytes.len() == 32)
                .ok_or_else(|| {
                    internal("a stored public key is malformed")(format!(
                        "{} lacks {name}",
                        row.kid
                    ))
                })
        };
        let mut point = vec![4_u8];
        point.extend(coordinate("x")?);
        point.extend(coordinate("y")?);
        Ok(Self {
            kid: row.kid.clone(),
            jwk,
            point,
        })
    }

    /// Whether `signature` (r ‖ s, base64url) signs `message` with this key.
    pub fn verifies(&self, message: &[u8], signature: &str) -> bool {
        let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
            return false;
        };
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.point)
            .verify(message, &signature)
            .is_ok()
    }
}

/// The keys one replica holds: the newest private key and every public key.
pub struct Keys {
    current_kid: String,
    current: EcdsaKeyPair,
    /// Every published key, newest first.
    pub public: Vec<PublicKey>,
}

impl Keys {
    /// The id of the key that signs.
    pub fn current_kid(&self) -> &str {
        &self.current_kid
    }

    /// `message` signed with the current key: (signature r ‖ s in base64url, kid).
    pub fn sign(&self, message: &[u8]) -> Result<(String, String), ApiError> {
        let signature = self
            .current
            .sign(&SystemRandom::new(), message)
            .map_err(|_| internal("signing")("the signature failed".to_owned()))?;
        Ok((
            URL_SAFE_NO_PAD.encode(signature.as_ref()),
            self.current_kid.clone(),
        ))
    }

    /// A compact JWS (a JWT) of `claims`, with the key id in its header.
    pub fn jwt(&self, claims: &Value) -> Result<String, ApiError> {
        let header = json!({ "alg": ALGORITHM, "typ": "JWT", "kid": self.current_kid });
        let encode = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
        let signing_input = format!("{}.{}", encode(&header), encode(claims));
        let (signature, _) = self.sign(signing_input.as_bytes())?;
        Ok(format!("{signing_input}.{signature}"))
    }

    /// The published key `kid`.
    pub fn public_key(&self, kid: &str) -> Option<&PublicKey> {
        self.public.iter().find(|key| key.kid == kid)
    }
}

/// Makes a new key pair, seals its private half and stores it; returns its kid.
pub async fn create_key<C: ConnectionTrait>(db: &C, keyring: &Keyring) -> Result<String, ApiError> {
    let random = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &random)
        .map_err(|_| internal("making a signing key")("no randomness".to_owned()))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &random)
        .map_err(|e| internal("making a signing key")(e.to_string()))?;
    let point = pair.public_key().as_ref();
    let kid = URL_SAFE_NO_PAD.encode(&sha2::Sha256::digest(point)[..16]);
    let jwk = json!({
        "kty": "EC",
        "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        "kid": kid,
        "alg": ALGORITHM,
        "use": "sig",
    });
    let sealed = keyring
        .seal(&context(&kid), pkcs8.as_ref())
        .map_err(|e| internal("sealing a signing key")(e.to_string()))?;
    signing_key::ActiveModel {
        kid: Set(kid.clone()),
        key_id: Set(sealed.key_id),
        sealed: Set(sealed.ciphertext),
        public_jwk: Set(jwk.to_string()),
        created_at: Set(Utc::now()),
    }
    .insert(db)
    .await?;
    Ok(kid)
}

/// Every stored key, newest first.
async fn rows<C: ConnectionTrait>(db: &C) -> Result<Vec<signing_key::Model>, ApiError> {
    Ok(signing_key::Entity::find()
        .order_by_desc(signing_key::Column::CreatedAt)
        .order_by_desc(signing_key::Column::Kid)
        .all(db)
        .await?)
}

/// The JWK Set of every stored key, read now (what `/.well-known/jwks.json` serves, so a key
/// made by a rotation is published before any replica signs with it).
pub async fn published<C: ConnectionTrait>(db: &C) -> Result<Value, ApiError> {
    let keys = rows(db)
        .await?
        .iter()
        .map(|row| PublicKey::from_row(row).map(|key| key.jwk))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({ "keys": keys }))
}

/// Reads the keys (making the first one when there is none).
pub async fn load<C: ConnectionTrait>(db: &C, keyring: &Keyring) -> Result<Keys, ApiError> {
    let mut stored = rows(db).await?;
    if stored.is_empty() {
        create_key(db, keyring).await?;
        stored = rows(db).await?;
    }
    let active_before =
        Utc::now() - chrono::Duration::from_std(ACTIVATION).unwrap_or(chrono::Duration::minutes(5));
    let newest = stored
        .iter()
        .find(|row| row.created_at <= active_before)
        .or_else(|| stored.last())
        .ok_or_else(|| internal("reading signing keys")("none was stored".to_owned()))?;
    let pkcs8 = unseal(keyring, newest)?;
    let current = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &pkcs8,
        &SystemRandom::new(),
    )
    .map_err(|e| internal("opening the signing key")(e.to_string()))?;
    let public = stored
        .iter()
        .map(PublicKey::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Keys {
        current_kid: newest.kid.clone(),
        current,
        public,
    })
}

/// The PKCS#8 private key of `row`, opened with the keyring.
fn unseal(keyring: &Keyring, row: &signing_key::Model) -> Result<Vec<u8>, ApiError> {
    keyring
        .open(
            &context(&row.kid),
            &Sealed {
                key_id: row.key_id.clone(),
                ciphertext: row.sealed.clone(),
            },
        )
        .map_err(|e| internal("opening a signing key")(e.to_string()))
}

/// Re-seals every private key not under the keyring's current key (after a secret key
/// rotation); returns how many.
pub async fn reseal_all<C: ConnectionTrait>(db: &C, keyring: &Keyring) -> Result<usize, ApiError> {
    let current = keyring.current_key_id();
    let mut count = 0;
    for row in rows(db).await? {
        if row.key_id == current {
            continue;
        }
        let plain = unseal(keyring, &row)?;
        let sealed = keyring
            .seal(&context(&row.kid), &plain)
            .map_err(|e| internal("sealing a signing key")(e.to_string()))?;
        let mut active: signing_key::ActiveModel = row.into();
        active.key_id = Set(sealed.key_id);
        active.sealed = Set(sealed.ciphertext);
        active.update(db).await?;
        count += 1;
    }
    Ok(count)
}

/// Every stored public key (no private key is opened: what verifiers need).
pub async fn public_keys<C: ConnectionTrait>(db: &C) -> Result<Vec<PublicKey>, ApiError> {
    rows(db).await?.iter().map(PublicKey::from_row).collect()
}

/// The public key `kid` among `keys`.
pub fn find<'k>(keys: &'k [PublicKey], kid: &str) -> Option<&'k PublicKey> {
    keys.iter().find(|key| key.kid == kid)
}

/// The keys of one replica: read at start, then again every [`RELOAD`] by
/// [`crate::state::AppState::refresh_signing_keys_forever`]; the JWKS answer, cached for [`PUBLISHED_TTL`].
#[derive(Default)]
pub struct Signer {
    loaded: std::sync::RwLock<Option<Arc<Keys>>>,
    published: Mutex<Option<(Instant, Value)>>,
}

impl Signer {
    /// The keys read last; read now (making the first key if needed) when none were yet.
    pub async fn keys<C: ConnectionTrait>(
        &self,
        db: &C,
        keyring: &Keyring,
    ) -> Result<Arc<Keys>, ApiError> {
        if let Some(keys) = self.cached() {
            return Ok(keys);
        }
        self.reload(db, keyring).await
    }

    fn cached(&self) -> Option<Arc<Keys>> {
        self.loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads the keys again.
    pub async fn reload<C: ConnectionTrait>(
        &self,
        db: &C,
        keyring: &Keyring,
    ) -> Result<Arc<Keys>, ApiError> {
        let keys = Arc::new(load(db, keyring).await?);
        // A poisoned lock holds a whole `Option<Arc>` (one assignment): safe to reuse.
        *self
            .loaded
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::clone(&keys));
        Ok(keys)
    }

    /// The JWK Set to serve: every stored key, read at most once per [`PUBLISHED_TTL`].
    pub async fn published<C: ConnectionTrait>(&self, db: &C) -> Result<Value, ApiError> {
        let mut cached = self.published.lock().await;
        if let Some((read_at, set)) = cached.as_ref()
            && read_at.elapsed() < PUBLISHED_TTL
        {
            return Ok(set.clone());
        }
        let set = published(db).await?;
        *cached = Some((Instant::now(), set.clone()));
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn database() -> sea_orm::DatabaseConnection {
        use proctor_migration::MigratorTrait as _;
        let db = sea_orm::Database::connect("sqlite::memory:").await.unwrap();
        proctor_migration::Migrator::up(&db, None).await.unwrap();
        db
    }

    #[tokio::test]
    async fn a_token_verifies_with_its_published_key_and_not_when_altered() {
        let db = database().await;
        let keyring = Keyring::ephemeral().unwrap();
        let keys = load(&db, &keyring).await.unwrap();
        let token = keys.jwt(&json!({ "sub": "proc:x" })).unwrap();
        let (input, signature) = token.rsplit_once('.').unwrap();
        let key = keys.public_key(keys.current_kid()).unwrap();
        assert!(key.verifies(input.as_bytes(), signature));
        assert!(!key.verifies(format!("{input}x").as_bytes(), signature));
        let stored = signing_key::Entity::find().all(&db).await.unwrap();
        assert_eq!(stored.len(), 1, "the first load makes one key");
        assert!(
            !String::from_utf8_lossy(&stored[0].sealed).contains("PRIVATE"),
            "the private key is sealed"
        );
    }

    #[tokio::test]
    async fn a_new_key_signs_and_the_old_one_stays_published() {
        let db = database().await;
        let keyring = Keyring::ephemeral().unwrap();
        let first = load(&db, &keyring).await.unwrap();
        let (signature, old_kid) = first.sign(b"receipt").unwrap();
        let new_kid = create_key(&db, &keyring).await.unwrap();
        let second = load(&db, &keyring).await.unwrap();
        assert_eq!(
            second.current_kid(),
            old_kid,
            "a new key waits before it signs"
        );
        assert_eq!(second.public.len(), 2, "but is published at once");
        // Older than the activation delay, the new key signs; the old one stays published.
        let mut aged: signing_key::ActiveModel = signing_key::Entity::find_by_id(new_kid.clone())
            .one(&db)
            .await
            .unwrap()
            .unwrap()
            .into();
        aged.created_at = Set(Utc::now() - chrono::Duration::minutes(6));
        aged.update(&db).await.unwrap();
        let mut first_row: signing_key::ActiveModel =
            signing_key::Entity::find_by_id(old_kid.clone())
                .one(&db)
                .await
                .unwrap()
                .unwrap()
                .into();
        first_row.created_at = Set(Utc::now() - chrono::Duration::minutes(60));
        first_row.update(&db).await.unwrap();
        let second = load(&db, &keyring).await.unwrap();
        assert_eq!(second.current_kid(), new_kid);
        assert!(
            second
                .public_key(&old_kid)
                .unwrap()
                .verifies(b"receipt", &signature)
        );
        assert_eq!(
            published(&db).await.unwrap()["keys"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }
}
