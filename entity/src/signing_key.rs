//! `signing_keys`: the server's ES256 keys, which sign per-run identity tokens and execution
//! receipts. The newest signs; every one stays published (JWKS) so what it signed still verifies.

use sea_orm::entity::prelude::*;

/// One key pair.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "signing_keys")]
pub struct Model {
    /// Key id (`kid`): the first 16 bytes of the SHA-256 of the public key, base64url.
    #[sea_orm(primary_key, auto_increment = false)]
    pub kid: String,
    /// The secret keyring key the private half is sealed with.
    pub key_id: String,
    /// The PKCS#8 private key, sealed with the secret keyring (never stored in the clear).
    pub sealed: Vec<u8>,
    /// The public key as a JWK (JSON text).
    pub public_jwk: String,
    /// When it was made; the newest signs.
    pub created_at: DateTimeUtc,
}

/// Keys stand alone.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
