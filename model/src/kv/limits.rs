//! The stateless limits of `spec/preload.md` §1.3, checked in the order of §1.4
//! (`KeysValuesMismatch`, `TooManyKeys`, `KeyTooLarge`, `ValueTooLarge`, `PayloadTooLarge`), as a
//! pure function of the request. It owns no state and reads no store: the fence comes before it
//! and the storage quota, which needs the usage read, after it (both in `ops`).

use rivet_envoy_protocol::{KvListQuery, KvRequestData};

use crate::constants::{
    KEY_OVERHEAD, MAX_KEYS, MAX_PUT_PAYLOAD_SIZE, MAX_RAW_KEY_SIZE, MAX_VALUE_SIZE,
};

use super::KvError;

/// Check every stateless limit of §1.3; return the first failure in the order of §1.4.
pub fn validate(req: &KvRequestData) -> Result<(), KvError> {
    match req {
        KvRequestData::KvGetRequest(r) => {
            check_key_count(r.keys.len())?;
            check_keys(r.keys.iter().map(|k| k.as_ref()))
        }
        KvRequestData::KvDeleteRequest(r) => {
            check_key_count(r.keys.len())?;
            check_keys(r.keys.iter().map(|k| k.as_ref()))
        }
        KvRequestData::KvPutRequest(r) => {
            if r.keys.len() != r.values.len() {
                return Err(KvError::KeysValuesMismatch);
            }
            check_key_count(r.keys.len())?;
            check_keys(r.keys.iter().map(|k| k.as_ref()))?;
            if let Some(index) = r.values.iter().position(|v| v.len() > MAX_VALUE_SIZE) {
                return Err(KvError::ValueTooLarge { index });
            }
            let size = put_payload_size(
                r.keys.iter().map(|k| k.as_ref()),
                r.values.iter().map(|v| v.as_ref()),
            );
            if size > MAX_PUT_PAYLOAD_SIZE as u64 {
                return Err(KvError::PayloadTooLarge { size });
            }
            Ok(())
        }
        KvRequestData::KvListRequest(r) => match &r.query {
            KvListQuery::KvListAllQuery => Ok(()),
            KvListQuery::KvListRangeQuery(q) => check_keys([q.start.as_ref(), q.end.as_ref()]),
            KvListQuery::KvListPrefixQuery(q) => check_keys([q.key.as_ref()]),
        },
        KvRequestData::KvDeleteRangeRequest(r) => check_keys([r.start.as_ref(), r.end.as_ref()]),
        KvRequestData::KvDropRequest => Ok(()),
    }
}

/// The put payload of §1.3: `sum(len(k) + KEY_OVERHEAD) + sum(len(v))` over the request, every
/// occurrence of a duplicated key counted.
pub fn put_payload_size<'a>(
    keys: impl IntoIterator<Item = &'a [u8]>,
    values: impl IntoIterator<Item = &'a [u8]>,
) -> u64 {
    let keys: u64 = keys.into_iter().map(|k| (k.len() + KEY_OVERHEAD) as u64).sum();
    let values: u64 = values.into_iter().map(|v| v.len() as u64).sum();
    keys + values
}

fn check_key_count(n: usize) -> Result<(), KvError> {
    if n > MAX_KEYS {
        return Err(KvError::TooManyKeys);
    }
    Ok(())
}

fn check_keys<'a>(keys: impl IntoIterator<Item = &'a [u8]>) -> Result<(), KvError> {
    match keys.into_iter().position(|k| k.len() > MAX_RAW_KEY_SIZE) {
        Some(index) => Err(KvError::KeyTooLarge { index }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use rivet_envoy_protocol::{
        KvDeleteRangeRequest, KvGetRequest, KvListPrefixQuery, KvListRangeQuery, KvListRequest,
        KvPutRequest,
    };
    use vbare::Bytes;

    use super::*;

    fn b(n: usize, byte: u8) -> Bytes {
        Bytes::from(vec![byte; n])
    }

    fn put(keys: Vec<Bytes>, values: Vec<Bytes>) -> KvRequestData {
        KvRequestData::KvPutRequest(KvPutRequest { keys, values })
    }

    #[test]
    fn list_delete_range_and_drop_have_no_key_count_limit() {
        let range = KvRequestData::KvDeleteRangeRequest(KvDeleteRangeRequest {
            start: b(0, 0),
            end: b(2046, 0xFF),
        });
        assert_eq!(validate(&range), Ok(()));
        assert_eq!(validate(&KvRequestData::KvDropRequest), Ok(()));
        let list = KvRequestData::KvListRequest(KvListRequest {
            query: KvListQuery::KvListAllQuery,
            reverse: None,
            limit: Some(u64::MAX),
        });
        assert_eq!(validate(&list), Ok(()));
    }

    #[test]
    fn range_start_is_checked_before_end() {
        let both = KvRequestData::KvListRequest(KvListRequest {
            query: KvListQuery::KvListRangeQuery(KvListRangeQuery {
                start: b(2047, 1),
                end: b(2047, 2),
                exclusive: true,
            }),
            reverse: None,
            limit: None,
        });
        assert_eq!(validate(&both), Err(KvError::KeyTooLarge { index: 0 }));
        let end_only = KvRequestData::KvDeleteRangeRequest(KvDeleteRangeRequest {
            start: b(2046, 1),
            end: b(2047, 2),
        });
        assert_eq!(validate(&end_only), Err(KvError::KeyTooLarge { index: 1 }));
        let prefix = KvRequestData::KvListRequest(KvListRequest {
            query: KvListQuery::KvListPrefixQuery(KvListPrefixQuery { key: b(2047, 0) }),
            reverse: None,
            limit: None,
        });
        assert_eq!(validate(&prefix), Err(KvError::KeyTooLarge { index: 0 }));
    }

    #[test]
    fn first_offending_key_and_value_in_request_order() {
        let get = KvRequestData::KvGetRequest(KvGetRequest {
            keys: vec![b(1, 0), b(2047, 0), b(3000, 0)],
        });
        assert_eq!(validate(&get), Err(KvError::KeyTooLarge { index: 1 }));
        let p = put(vec![b(1, 0), b(2, 0), b(3, 0)], vec![b(0, 0), b(131_073, 0), b(131_074, 0)]);
        assert_eq!(validate(&p), Err(KvError::ValueTooLarge { index: 1 }));
    }

    #[test]
    fn payload_counts_every_occurrence() {
        // Independent arithmetic: two occurrences of a 3-byte key, values of 4 and 5 bytes.
        let keys = [&[1u8, 2, 3][..], &[1, 2, 3]];
        let values = [&[0u8; 4][..], &[0; 5]];
        assert_eq!(put_payload_size(keys, values), (3 + 2) * 2 + 4 + 5);
    }

    #[test]
    fn mismatch_comes_first() {
        let keys: Vec<Bytes> = (0..200).map(|_| b(3000, 0)).collect();
        assert_eq!(validate(&put(keys, vec![])), Err(KvError::KeysValuesMismatch));
    }
}
