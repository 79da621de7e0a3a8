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

/// How far a message's `webhook-timestamp` may be from the receiver's clock (the Standard
/// Webhooks libraries' default), so that a captured message cannot be replayed later.
pub const TIMESTAMP_TOLERANCE_SECS: u64 = 300;

/// Why a received message is not one this secret signed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the secret is not whsec_ followed by base64")]
    BadSecret,
    #[error("webhook-timestamp is not a number of seconds")]
    BadTimestamp,
    #[error("webhook-timestamp is {0} s away from this machine's clock (at most {TIMESTAMP_TOLERANCE_SECS} s)")]
    Stale(u64),
    #[error("no v1 signature in webhook-signature matches")]
    NoMatch,
}

/// The secret's bytes from its `whsec_...` form (the prefix is optional, as in the
/// reference libraries).
pub fn parse_secret(secret: &str) -> Result<Vec<u8>, VerifyError> {
    let b64 = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    B64.decode(b64).map_err(|_| VerifyError::BadSecret)
}

/// Checks a received message as a Standard Webhooks receiver must: the timestamp within
/// the tolerance of `now_secs`, and one of the space-separated `v1,` signatures of the
/// header equal (in constant time) to the message's.
pub fn verify(
    secret: &[u8],
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &str,
    now_secs: u64,
) -> Result<(), VerifyError> {
    let ts: u64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    let skew = ts.abs_diff(now_secs);
    if skew > TIMESTAMP_TOLERANCE_SECS {
        return Err(VerifyError::Stale(skew));
    }
    let expected = signature(secret, id, ts, body);
    let expected = expected.as_bytes();
    let matched = signatures
        .split_whitespace()
        .filter(|s| s.starts_with("v1,"))
        .any(|s| bool::from(subtle::ConstantTimeEq::ct_eq(s.as_bytes(), expected)));
    if matched {
        Ok(())
    } else {
        Err(VerifyError::NoMatch)
    }
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

    #[test]
    fn verifies_what_it_signs_and_nothing_else() {
        let secret = parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let (id, ts, body) = (
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        let good = signature(&secret, id, ts, body);
        let ok =
            |sigs: &str, body: &str, now: u64| verify(&secret, id, "1614265330", sigs, body, now);
        // (signatures header, body, receiver's clock, expected)
        let cases: [(&str, &str, u64, Result<(), VerifyError>); 6] = [
            (&good, body, ts, Ok(())),
            (&format!("v1,bm9wZQ== {good}"), body, ts + 300, Ok(())),
            (&good, r#"{"test": 1}"#, ts, Err(VerifyError::NoMatch)),
            (
                &good.replacen("v1,", "v2,", 1),
                body,
                ts,
                Err(VerifyError::NoMatch),
            ),
            (&good, body, ts + 301, Err(VerifyError::Stale(301))),
            (&good, body, ts - 301, Err(VerifyError::Stale(301))),
        ];
        for (sigs, body, now, want) in cases {
            assert_eq!(ok(sigs, body, now), want, "{sigs} {body} {now}");
        }
        assert_eq!(
            verify(&secret, id, "soon", &good, body, ts),
            Err(VerifyError::BadTimestamp)
        );
        assert_eq!(parse_secret("whsec_!!"), Err(VerifyError::BadSecret));
    }
}
