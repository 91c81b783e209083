//! Password hashing with argon2id, stored as PHC strings.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::rngs::OsRng;

/// Minimum password length, in characters.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// Maximum password length, in bytes. Longer input only costs hashing time.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Checks a new password's length, returning the reason when it is rejected.
pub fn validate_password(password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(format!(
            "password is too short: {chars} characters, at least {MIN_PASSWORD_CHARS} required"
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "password is too long: {} bytes, at most {MAX_PASSWORD_BYTES} allowed",
            password.len()
        ));
    }
    Ok(())
}

/// Hashes a password with argon2id (the `argon2` crate's default parameters: 19 MiB, 2
/// iterations, 1 lane) and a random salt, returning the PHC string.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|error| anyhow::anyhow!("password hashing failed: {error}"))?;
    Ok(hash.to_string())
}

/// Checks a password against a PHC string. A malformed hash never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_argon2id_phc() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    }

    #[test]
    fn hash_verifies_right_password_only() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(!verify_password("", &hash));
    }

    #[test]
    fn hash_uses_fresh_salt() {
        let first = hash_password("correct horse battery").unwrap();
        let second = hash_password("correct horse battery").unwrap();
        assert_ne!(first, second);
    }

    #[test]
    fn malformed_hash_never_matches() {
        assert!(!verify_password("correct horse battery", ""));
        assert!(!verify_password(
            "correct horse battery",
            "not a phc string"
        ));
        assert!(!verify_password(
            "correct horse battery",
            "$argon2id$v=19$m=19456,t=2,p=1$bad"
        ));
    }

    #[test]
    fn validate_rejects_short_password() {
        let error = validate_password("nine char").unwrap_err();
        assert!(error.contains("too short"), "{error}");
        assert!(validate_password("ten chars!").is_ok());
    }

    #[test]
    fn validate_counts_characters_not_bytes() {
        // Nine characters but 18 bytes.
        assert!(validate_password("ééééééééé").is_err());
        assert!(validate_password("éééééééééé").is_ok());
    }

    #[test]
    fn validate_rejects_long_password() {
        assert!(validate_password(&"a".repeat(MAX_PASSWORD_BYTES)).is_ok());
        let error = validate_password(&"a".repeat(MAX_PASSWORD_BYTES + 1)).unwrap_err();
        assert!(error.contains("too long"), "{error}");
    }
}
