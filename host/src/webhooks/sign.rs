//! Standard Webhooks signing: secrets (`whsec_` + base64 of 32 random bytes) and the
//! `webhook-signature` header, `v1,` + base64 of HMAC-SHA256 over `id.timestamp.body`
//! keyed with the secret's bytes. Pure: no IO, no clock.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const SECRET_PREFIX: &str = "whsec_";

pub fn new_secret() -> [u8; 32] {
    rand::random()
}

/// The secret as shown once, at creation.
pub fn secret_string(secret: &[u8]) -> String {
    format!("{SECRET_PREFIX}{}", B64.encode(secret))
}

/// `v1,<base64 signature>` of one message.
pub fn signature(secret: &[u8], id: &str, timestamp_secs: u64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification (and its reference libraries).
    #[test]
    fn signs_the_standard_webhooks_example() {
        let secret = B64.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = signature(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(secret_string(&[0; 32]).starts_with("whsec_AAAA"));
    }
}
