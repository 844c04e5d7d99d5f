//! Complete live listing of a prefix by paging (`spec/preload.md` §1.6), as pure helpers the
//! runner uses: it sends [`first_page`], and while a page comes back full
//! ([`page_is_last`] is false) it sends [`next_page`] after the page's last key. Owns no state
//! and touches no store.
//!
//! One deviation from the letter of §1.6, forced by the key limit: after a last key of the
//! maximal raw length (`MAX_RAW_KEY_SIZE`), `last_key ++ [0x00]` is one byte too long and would be
//! rejected with `key_too_large`. No stored key extends a key of maximal length, so the keys after
//! `last_key` are exactly those `>= succ(last_key)`, and the next page starts there. When
//! `succ(last_key)` does not exist (`last_key = 0xFF×2046`), nothing can follow, and the next page
//! is a range that is empty by construction, which ends the listing at step 2.

use rivet_envoy_protocol::{KvListPrefixQuery, KvListQuery, KvListRangeQuery, KvListRequest};
use vbare::Bytes;

use crate::constants::MAX_RAW_KEY_SIZE;
use crate::store::strinc;

/// `succ(P)`: remove the trailing `0xFF` bytes and increment the last remaining byte. `None` when
/// nothing remains (`P` empty or all `0xFF`). The keys starting with `P` are exactly
/// `[P, succ(P))`, or all keys `>= P` when `succ(P)` does not exist.
pub fn succ(prefix: &[u8]) -> Option<Vec<u8>> {
    strinc(prefix)
}

/// Step 1: `KvListPrefixQuery { key: prefix }` with limit `n` (at least 1).
pub fn first_page(prefix: &[u8], n: u64) -> KvListRequest {
    KvListRequest {
        query: KvListQuery::KvListPrefixQuery(KvListPrefixQuery {
            key: Bytes::copy_from_slice(prefix),
        }),
        reverse: None,
        limit: Some(n.max(1)),
    }
}

/// Step 2: whether a page of `received` entries, asked with limit `n`, completes the listing.
pub fn page_is_last(received: usize, n: u64) -> bool {
    (received as u64) < n.max(1)
}

/// Step 3: the range query for the page after `last_key` (the last key of a full page), with
/// limit `n` (at least 1): from `last_key ++ [0x00]` to `succ(prefix)` exclusive, or to
/// `0xFF×MAX_RAW_KEY_SIZE` inclusive when `succ(prefix)` does not exist. See the module comment
/// for a `last_key` of maximal length.
pub fn next_page(prefix: &[u8], last_key: &[u8], n: u64) -> KvListRequest {
    let max_key = vec![0xFF; MAX_RAW_KEY_SIZE];
    let (end, exclusive) = match succ(prefix) {
        Some(end) => (end, true),
        None => (max_key.clone(), false),
    };
    let start = if last_key.len() < MAX_RAW_KEY_SIZE {
        let mut start = last_key.to_vec();
        start.push(0);
        Some(start)
    } else {
        strinc(last_key)
    };
    let query = match start {
        Some(start) => KvListRangeQuery { start: start.into(), end: end.into(), exclusive },
        // Nothing can follow `0xFF×MAX_RAW_KEY_SIZE`: an empty range ends the listing.
        None => {
            KvListRangeQuery { start: max_key.clone().into(), end: max_key.into(), exclusive: true }
        }
    };
    KvListRequest {
        query: KvListQuery::KvListRangeQuery(query),
        reverse: None,
        limit: Some(n.max(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range_of(req: &KvListRequest) -> (Vec<u8>, Vec<u8>, bool) {
        match &req.query {
            KvListQuery::KvListRangeQuery(q) => (q.start.to_vec(), q.end.to_vec(), q.exclusive),
            other => panic!("not a range query: {other:?}"),
        }
    }

    #[test]
    fn succ_follows_the_spec_text() {
        assert_eq!(succ(&[]), None);
        assert_eq!(succ(&[0xFF]), None);
        assert_eq!(succ(&[0xFF, 0xFF]), None);
        assert_eq!(succ(&[6]), Some(vec![7]));
        assert_eq!(succ(&[6, 0xFF]), Some(vec![7]));
        assert_eq!(succ(&[6, 0, 0xFF, 0xFF]), Some(vec![6, 1]));
        assert_eq!(succ(&[0xFE, 0xFF]), Some(vec![0xFF]));
    }

    #[test]
    fn next_page_ends_at_succ_or_at_the_largest_key() {
        assert_eq!(range_of(&next_page(&[6], &[6, 1], 10)), (vec![6, 1, 0], vec![7], true));
        let (start, end, exclusive) = range_of(&next_page(&[0xFF], &[0xFF, 3], 10));
        assert_eq!(start, vec![0xFF, 3, 0]);
        assert_eq!(end, vec![0xFF; 2046]);
        assert!(!exclusive);
        let (start, end, exclusive) = range_of(&next_page(&[], &[], 10));
        assert_eq!((start, end.len(), exclusive), (vec![0], 2046, false));
    }

    #[test]
    fn next_page_after_a_maximal_key_stays_within_the_key_limit() {
        let mut last = vec![0xFF; 2046];
        last[1] = 0x01;
        let (start, _, _) = range_of(&next_page(&[0xFF], &last, 10));
        assert_eq!(start, vec![0xFF, 0x02]);
        let (start, end, exclusive) = range_of(&next_page(&[0xFF], &[0xFF; 2046], 10));
        assert!(start.len() <= 2046 && end.len() <= 2046);
        assert!(start == end && exclusive, "the page after 0xFF×2046 must be empty");
    }

    #[test]
    fn page_size_is_at_least_one() {
        assert_eq!(first_page(&[1], 0).limit, Some(1));
        assert_eq!(next_page(&[1], &[1], 0).limit, Some(1));
        assert!(page_is_last(0, 0));
        assert!(!page_is_last(1, 0));
        assert!(page_is_last(4, 5));
        assert!(!page_is_last(5, 5));
    }
}
