//! API keys: `dh_<key_id>_<secret>`. The key id is public (it names the key in lists and
//! logs); the secret is 32 random bytes, of which only the SHA-256 is stored. A secret of
//! that much entropy needs no slow hash: no dictionary reaches it, and SHA-256 keeps the
//! check cheap enough for every request. The digest is compared in constant time.

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const PREFIX: &str = "dh_";
/// Random bytes of a key id (hex: twice as many characters).
const KEY_ID_BYTES: usize = 6;
/// Random bytes of a secret.
const SECRET_BYTES: usize = 32;

/// A key as presented: its id and the secret's digest (the secret itself is not kept).
pub struct Presented<'a> {
    pub key_id: &'a str,
    pub digest: [u8; 32],
}

/// A new key: the whole text, shown once, and what is stored.
pub struct Generated {
    pub key_id: String,
    pub key: String,
    pub digest: [u8; 32],
}

pub fn generate() -> Generated {
    let mut rng = rand::rng();
    let mut id = [0u8; KEY_ID_BYTES];
    let mut secret = [0u8; SECRET_BYTES];
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let key_id = hex::encode(id);
    let secret = hex::encode(secret);
    Generated {
        digest: digest(&secret),
        key: format!("{PREFIX}{key_id}_{secret}"),
        key_id,
    }
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Split a presented key into its id and the digest of its secret; `None` if it does not
/// have the shape of a key (it is then unknown, like any key that does not exist).
pub fn parse(key: &str) -> Option<Presented<'_>> {
    let rest = key.strip_prefix(PREFIX)?;
    let (key_id, secret) = rest.split_once('_')?;
    let hex_of = |s: &str, n: usize| s.len() == 2 * n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex_of(key_id, KEY_ID_BYTES) || !hex_of(secret, SECRET_BYTES) {
        return None;
    }
    Some(Presented {
        key_id,
        digest: digest(secret),
    })
}

/// Whether two digests are equal, in time that does not depend on where they differ.
pub fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

/// Whether `s` can be a key id (for paths: anything else names no key).
pub fn is_key_id(s: &str) -> bool {
    s.len() == 2 * KEY_ID_BYTES && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_to_its_id_and_digest() {
        let g = generate();
        assert!(g.key.starts_with("dh_"));
        assert_eq!(g.key.len(), 3 + 12 + 1 + 64);
        let p = parse(&g.key).unwrap();
        assert_eq!(p.key_id, g.key_id);
        assert!(same(&p.digest, &g.digest));
        assert!(is_key_id(&g.key_id));
        let other = generate();
        assert_ne!(other.key_id, g.key_id);
        assert!(!same(&parse(&other.key).unwrap().digest, &g.digest));
    }

    #[test]
    fn malformed_keys_are_refused() {
        let g = generate();
        let secret = &g.key[16..];
        let cases = [
            String::new(),
            "dh_".into(),
            g.key.replacen("dh_", "dk_", 1),
            format!("dh_{}", g.key_id),
            format!("dh_{}_{}", g.key_id, &secret[1..]),
            format!("dh_{}_{}x", g.key_id, &secret[1..]),
            format!("dh_{}0_{}", g.key_id, secret),
            format!("{} ", g.key),
        ];
        for c in cases {
            assert!(parse(&c).is_none(), "{c:?}");
        }
    }
}
