//! The typed KV errors of `spec/preload.md` §1.4, their wire rendering `kv.<code>[: detail]`, and
//! the receiver-side classification by code alone. Owns nothing else: when each error is raised is
//! decided by `limits`, `fence` and `ops`.

use std::fmt;

use rivet_envoy_protocol::{KvErrorResponse, KvResponseData};

use crate::constants::{MAX_KEYS, MAX_PUT_PAYLOAD_SIZE, MAX_RAW_KEY_SIZE, MAX_VALUE_SIZE};

/// Prefix of every rendered KV error message.
const CODE_PREFIX: &str = "kv.";

/// A rejected KV request, exactly the table of §1.4, in check order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum KvError {
    /// The actor does not exist, is destroyed, or is not in the connection's namespace.
    #[error("kv.actor_not_found")]
    ActorNotFound,
    /// Fencing refuses the request: it did not arrive on the holder connection.
    #[error("kv.not_holder")]
    NotHolder,
    /// A put whose `keys` and `values` differ in length.
    #[error("kv.keys_values_mismatch")]
    KeysValuesMismatch,
    /// More than `MAX_KEYS` keys in a get, put or delete.
    #[error("kv.too_many_keys: more than {MAX_KEYS} keys")]
    TooManyKeys,
    /// The first key longer than `MAX_RAW_KEY_SIZE` raw bytes, in request order (for a range,
    /// 0 = `start`, 1 = `end`; for a list prefix, 0).
    #[error("kv.key_too_large: key {index} is longer than {MAX_RAW_KEY_SIZE} bytes")]
    KeyTooLarge { index: usize },
    /// The first put value longer than `MAX_VALUE_SIZE` bytes.
    #[error("kv.value_too_large: value {index} is longer than {MAX_VALUE_SIZE} bytes")]
    ValueTooLarge { index: usize },
    /// The put payload `sum(len(k) + 2) + sum(len(v))` is over `MAX_PUT_PAYLOAD_SIZE`.
    #[error("kv.payload_too_large: payload of {size} bytes is over {MAX_PUT_PAYLOAD_SIZE}")]
    PayloadTooLarge { size: u64 },
    /// The put would take `usage` over the quota. `remaining = quota - usage(before)` (0 when
    /// already over), `payload` as for [`KvError::PayloadTooLarge`].
    #[error("kv.storage_quota_exceeded: payload of {payload} bytes, {remaining} bytes remaining")]
    StorageQuotaExceeded { remaining: u64, payload: u64 },
    /// A store failure that persisted after retries, or a stored record that does not decode.
    /// Nothing was committed.
    #[error("kv.internal")]
    Internal,
}

/// The code of a [`KvError`], which is all a receiver may rely on.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum KvErrorCode {
    ActorNotFound,
    NotHolder,
    KeysValuesMismatch,
    TooManyKeys,
    KeyTooLarge,
    ValueTooLarge,
    PayloadTooLarge,
    StorageQuotaExceeded,
    Internal,
}

impl KvErrorCode {
    /// Every code, in the check order of §1.4.
    pub const ALL: [KvErrorCode; 9] = [
        KvErrorCode::ActorNotFound,
        KvErrorCode::NotHolder,
        KvErrorCode::KeysValuesMismatch,
        KvErrorCode::TooManyKeys,
        KvErrorCode::KeyTooLarge,
        KvErrorCode::ValueTooLarge,
        KvErrorCode::PayloadTooLarge,
        KvErrorCode::StorageQuotaExceeded,
        KvErrorCode::Internal,
    ];

    /// The code as written after `kv.` on the wire, e.g. `"not_holder"`.
    pub fn as_str(self) -> &'static str {
        match self {
            KvErrorCode::ActorNotFound => "actor_not_found",
            KvErrorCode::NotHolder => "not_holder",
            KvErrorCode::KeysValuesMismatch => "keys_values_mismatch",
            KvErrorCode::TooManyKeys => "too_many_keys",
            KvErrorCode::KeyTooLarge => "key_too_large",
            KvErrorCode::ValueTooLarge => "value_too_large",
            KvErrorCode::PayloadTooLarge => "payload_too_large",
            KvErrorCode::StorageQuotaExceeded => "storage_quota_exceeded",
            KvErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for KvErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl KvError {
    /// The error's code.
    pub fn kind(&self) -> KvErrorCode {
        match self {
            KvError::ActorNotFound => KvErrorCode::ActorNotFound,
            KvError::NotHolder => KvErrorCode::NotHolder,
            KvError::KeysValuesMismatch => KvErrorCode::KeysValuesMismatch,
            KvError::TooManyKeys => KvErrorCode::TooManyKeys,
            KvError::KeyTooLarge { .. } => KvErrorCode::KeyTooLarge,
            KvError::ValueTooLarge { .. } => KvErrorCode::ValueTooLarge,
            KvError::PayloadTooLarge { .. } => KvErrorCode::PayloadTooLarge,
            KvError::StorageQuotaExceeded { .. } => KvErrorCode::StorageQuotaExceeded,
            KvError::Internal => KvErrorCode::Internal,
        }
    }

    /// The code as written after `kv.` on the wire, e.g. `"not_holder"`.
    pub fn code(&self) -> &'static str {
        self.kind().as_str()
    }

    /// The wire response carrying this error (its `Display` as the message).
    pub fn to_response(&self) -> KvResponseData {
        KvResponseData::KvErrorResponse(KvErrorResponse { message: self.to_string().into() })
    }

    /// The wire response carrying this error with an extra human-readable detail replacing the
    /// variant's own: `kv.<code>: <detail>`.
    pub fn to_response_with_detail(&self, detail: &str) -> KvResponseData {
        let message = format!("{CODE_PREFIX}{}: {detail}", self.code());
        KvResponseData::KvErrorResponse(KvErrorResponse { message: message.into() })
    }

    /// Classify a received error message by its code alone: `kv.<code>` optionally followed by
    /// `": "` and any detail. Anything else (another prefix, an unknown code, a malformed
    /// separator) is `None`.
    pub fn classify(message: &str) -> Option<KvErrorCode> {
        let rest = message.strip_prefix(CODE_PREFIX)?;
        let code = match rest.split_once(':') {
            Some((code, detail)) => {
                if !detail.starts_with(' ') {
                    return None;
                }
                code
            }
            None => rest,
        };
        KvErrorCode::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_error() -> Vec<KvError> {
        vec![
            KvError::ActorNotFound,
            KvError::NotHolder,
            KvError::KeysValuesMismatch,
            KvError::TooManyKeys,
            KvError::KeyTooLarge { index: 3 },
            KvError::ValueTooLarge { index: 0 },
            KvError::PayloadTooLarge { size: 999_425 },
            KvError::StorageQuotaExceeded { remaining: 7, payload: 9 },
            KvError::Internal,
        ]
    }

    #[test]
    fn codes_are_the_spec_table() {
        let codes: Vec<&str> = every_error().iter().map(KvError::code).collect();
        assert_eq!(
            codes,
            [
                "actor_not_found",
                "not_holder",
                "keys_values_mismatch",
                "too_many_keys",
                "key_too_large",
                "value_too_large",
                "payload_too_large",
                "storage_quota_exceeded",
                "internal"
            ]
        );
    }

    #[test]
    fn display_is_kv_code_then_optional_detail() {
        for e in every_error() {
            let s = e.to_string();
            let expected_head = format!("kv.{}", e.code());
            assert!(
                s == expected_head || s.starts_with(&format!("{expected_head}: ")),
                "{s:?} does not render as {expected_head}[: detail]"
            );
        }
        assert_eq!(
            KvError::StorageQuotaExceeded { remaining: 7, payload: 9 }.to_string(),
            "kv.storage_quota_exceeded: payload of 9 bytes, 7 bytes remaining"
        );
    }

    #[test]
    fn classification_round_trips_and_uses_the_code_alone() {
        for e in every_error() {
            assert_eq!(KvError::classify(&e.to_string()), Some(e.kind()), "{e:?}");
            let KvResponseData::KvErrorResponse(r) = e.to_response() else {
                panic!("not an error")
            };
            assert_eq!(KvError::classify(&r.message), Some(e.kind()));
            let KvResponseData::KvErrorResponse(r) = e.to_response_with_detail("why: because")
            else {
                panic!("not an error")
            };
            assert_eq!(KvError::classify(&r.message), Some(e.kind()));
        }
        assert_eq!(KvError::classify("kv.not_holder"), Some(KvErrorCode::NotHolder));
        assert_eq!(KvError::classify("kv.not_holder: stale epoch"), Some(KvErrorCode::NotHolder));
        for bad in [
            "",
            "kv.",
            "kv.not_holders",
            "kv.not_holder:x",
            "kv.Not_holder",
            "not_holder",
            "ws.not_holder",
            " kv.not_holder",
            "kv.not_holder ",
            "kv.unknown: x",
        ] {
            assert_eq!(KvError::classify(bad), None, "{bad:?}");
        }
    }
}
