//! Verification of the `X-Hub-Signature-256` header that Meta puts on every webhook POST.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const SCHEME_PREFIX: &str = "sha256=";

/// Length in bytes of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;

/// Reasons to reject a webhook body with HTTP 401 because its signature does not
/// verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    #[error("malformed X-Hub-Signature-256 header: expected `sha256=` followed by 64 hex digits")]
    Malformed,
    #[error("X-Hub-Signature-256 does not match the body, so the app secret is wrong or the body was changed")]
    Mismatch,
}

/// Verifies `header` (the `X-Hub-Signature-256` value, `sha256=<hex>`) against the
/// HMAC-SHA256 of `body` keyed with the app secret.
///
/// `body` must be the raw bytes as received. Meta signs its own serialisation, which
/// escapes non-ASCII characters as `\uXXXX` and may escape `/` as `\/`, so a body that
/// was parsed and serialised again no longer matches. The tag comparison runs in
/// constant time.
pub fn verify_signature(
    app_secret: &[u8],
    header: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?.trim();
    if header.is_empty() {
        return Err(SignatureError::Missing);
    }
    let hex_tag = header
        .strip_prefix(SCHEME_PREFIX)
        .ok_or(SignatureError::Malformed)?;
    let tag = hex::decode(hex_tag).map_err(|_| SignatureError::Malformed)?;
    if tag.len() != TAG_LEN {
        return Err(SignatureError::Malformed);
    }

    let mut mac = new_mac(app_secret);
    mac.update(body);
    mac.verify_slice(&tag).map_err(|_| SignatureError::Mismatch)
}

/// Computes the `X-Hub-Signature-256` value (`sha256=<lowercase hex>`) that Meta would
/// send with `body`.
pub fn sign(app_secret: &[u8], body: &[u8]) -> String {
    let mut mac = new_mac(app_secret);
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    format!("{SCHEME_PREFIX}{}", hex::encode(tag))
}

fn new_mac(app_secret: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(app_secret).expect("HMAC-SHA256 accepts keys of any length")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-app-secret";

    #[test]
    fn sign_matches_rfc4231_vector() {
        // RFC 4231, test case 2.
        let expected = "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(sign(b"Jefe", b"what do ya want for nothing?"), expected);
    }

    #[test]
    fn verify_accepts_own_signature() {
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let header = sign(SECRET, body);
        assert_eq!(verify_signature(SECRET, Some(&header), body), Ok(()));
    }

    #[test]
    fn verify_accepts_uppercase_hex_and_whitespace() {
        let body = b"{}";
        let header = sign(SECRET, body);
        let upper = format!("sha256={}", header["sha256=".len()..].to_uppercase());
        assert_eq!(verify_signature(SECRET, Some(&upper), body), Ok(()));
        let padded = format!(" {header} ");
        assert_eq!(verify_signature(SECRET, Some(&padded), body), Ok(()));
    }

    #[test]
    fn verify_rejects_changed_body() {
        let header = sign(SECRET, b"{\"a\":1}");
        assert_eq!(
            verify_signature(SECRET, Some(&header), b"{\"a\":2}"),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn verify_rejects_wrong_secret() {
        let body = b"{}";
        let header = sign(b"another-secret", body);
        assert_eq!(
            verify_signature(SECRET, Some(&header), body),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn verify_rejects_missing_header() {
        assert_eq!(
            verify_signature(SECRET, None, b"{}"),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_signature(SECRET, Some("  "), b"{}"),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn verify_rejects_malformed_headers() {
        let body = b"{}";
        let good_hex = &sign(SECRET, body)["sha256=".len()..];
        let cases = [
            good_hex.to_string(),
            format!("sha1={good_hex}"),
            format!("SHA256={good_hex}"),
            "sha256=".to_string(),
            "sha256=zz".to_string(),
            format!("sha256={}", &good_hex[..62]),
            format!("sha256={good_hex}00"),
            format!("sha256={}g", &good_hex[..63]),
        ];
        for header in &cases {
            assert_eq!(
                verify_signature(SECRET, Some(header), body),
                Err(SignatureError::Malformed),
                "header {header:?}"
            );
        }
    }

    #[test]
    fn verify_uses_bytes_exactly_as_sent() {
        // Meta's serialisation: é, ₹ and 🙏 as \u escapes (the emoji as a surrogate
        // pair), `/` escaped as `\/`, and a literal `@`.
        let sent =
            br#"{"text":{"body":"Caf\u00e9 \u20b9 87,500 \ud83d\ude4f a@b.in https:\/\/x.in\/p"}}"#;
        let header = sign(SECRET, sent);
        assert_eq!(verify_signature(SECRET, Some(&header), sent), Ok(()));

        let value: serde_json::Value = serde_json::from_slice(sent).unwrap();
        assert_eq!(
            value["text"]["body"],
            "Café ₹ 87,500 🙏 a@b.in https://x.in/p"
        );
        let reserialised = serde_json::to_vec(&value).unwrap();
        assert_ne!(reserialised.as_slice(), sent.as_slice());
        assert_eq!(
            verify_signature(SECRET, Some(&header), &reserialised),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn verify_accepts_empty_body() {
        let header = sign(SECRET, b"");
        assert_eq!(verify_signature(SECRET, Some(&header), b""), Ok(()));
    }
}
