//! Identifier syntax shared by actor ids (`ActorCheckpoint.actorId`, `ToRivetKvRequest.actorId`)
//! and envoy keys (connect request, §2.2).
//!
//! The specs say "identifier chars" and "an unparsable actor id" without defining them. The model's
//! choice: an **identifier char** is an ASCII letter, an ASCII digit, `-` or `_`. That admits UUIDs
//! (the published client's envoy keys), base-36 ids and the simulator's readable names, and keeps
//! identifiers safe in URLs, store keys, logs and close reasons. Lengths count characters (all
//! ASCII, so also bytes):
//! - an envoy key has `ENVOY_KEY_MIN_CHARS..=ENVOY_KEY_MAX_CHARS` (3..=128) identifier chars;
//! - an actor id has `ACTOR_ID_MIN_CHARS..=ACTOR_ID_MAX_CHARS` (1..=64) identifier chars.
//!
//! Must not touch: whether an actor or a runner exists (engine state).

use crate::keys::ActorId;

/// Fewest characters of an actor id.
pub const ACTOR_ID_MIN_CHARS: usize = 1;
/// Most characters of an actor id.
pub const ACTOR_ID_MAX_CHARS: usize = 64;
/// Fewest characters of an envoy key (§2.2).
pub const ENVOY_KEY_MIN_CHARS: usize = 3;
/// Most characters of an envoy key (§2.2).
pub const ENVOY_KEY_MAX_CHARS: usize = 128;

/// Whether `c` may appear in an identifier: ASCII alphanumerics, `-` and `_`.
pub fn is_identifier_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Why a string is not an identifier of the required length.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    /// Fewer characters than allowed (an empty string included).
    #[error("{len} chars, fewer than the minimum of {min}")]
    TooShort { len: usize, min: usize },
    /// More characters than allowed.
    #[error("{len} chars, more than the maximum of {max}")]
    TooLong { len: usize, max: usize },
    /// A character that is not an identifier char (the position counts characters from 0).
    #[error("char {ch:?} at position {position} is not an ASCII letter, digit, '-' or '_'")]
    InvalidChar { ch: char, position: usize },
}

/// Checks that `value` is `min..=max` identifier chars. The first invalid char is reported before
/// the length, so a long string of garbage says what is wrong with it.
pub fn check_identifier(value: &str, min: usize, max: usize) -> Result<(), IdentifierError> {
    let mut len = 0usize;
    for (position, ch) in value.chars().enumerate() {
        if !is_identifier_char(ch) {
            return Err(IdentifierError::InvalidChar { ch, position });
        }
        len += 1;
    }
    if len < min {
        return Err(IdentifierError::TooShort { len, min });
    }
    if len > max {
        return Err(IdentifierError::TooLong { len, max });
    }
    Ok(())
}

/// Parses an actor id: `ACTOR_ID_MIN_CHARS..=ACTOR_ID_MAX_CHARS` identifier chars.
pub fn parse_actor_id(value: &str) -> Result<ActorId, IdentifierError> {
    check_identifier(value, ACTOR_ID_MIN_CHARS, ACTOR_ID_MAX_CHARS)?;
    Ok(value.to_owned())
}

/// Whether `value` is a valid actor id (see [`parse_actor_id`]).
pub fn is_valid_actor_id(value: &str) -> bool {
    check_identifier(value, ACTOR_ID_MIN_CHARS, ACTOR_ID_MAX_CHARS).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_chars_are_ascii_alphanumerics_dash_and_underscore() {
        for c in ['a', 'z', 'A', 'Z', '0', '9', '-', '_'] {
            assert!(is_identifier_char(c), "{c:?}");
        }
        for c in [' ', '.', '/', '#', '%', '+', 'é', '\u{0}', 'Ⅻ', '٣'] {
            assert!(!is_identifier_char(c), "{c:?}");
        }
    }

    #[test]
    fn a_uuid_is_a_valid_actor_id_and_envoy_key() {
        let uuid = "6f1c1f5e-3b2a-4c7d-9e8f-0a1b2c3d4e5f";
        assert!(is_valid_actor_id(uuid));
        assert_eq!(check_identifier(uuid, ENVOY_KEY_MIN_CHARS, ENVOY_KEY_MAX_CHARS), Ok(()));
    }

    #[test]
    fn actor_id_bounds() {
        assert_eq!(parse_actor_id(""), Err(IdentifierError::TooShort { len: 0, min: 1 }));
        assert_eq!(parse_actor_id("a"), Ok("a".to_owned()));
        let longest = "x".repeat(64);
        assert_eq!(parse_actor_id(&longest), Ok(longest.clone()));
        assert_eq!(
            parse_actor_id(&format!("{longest}y")),
            Err(IdentifierError::TooLong { len: 65, max: 64 })
        );
        assert_eq!(
            parse_actor_id("ab/c"),
            Err(IdentifierError::InvalidChar { ch: '/', position: 2 })
        );
        assert_eq!(
            parse_actor_id("éa"),
            Err(IdentifierError::InvalidChar { ch: 'é', position: 0 })
        );
    }
}
