//! The runner's KV request table (`spec/protocol.md` §7.2, §4.1): unique request ids, which
//! instance issued each request and why, whether it waits for a connection or is in flight on
//! one, and its deadline.
//!
//! Owns: [`KvTable`], [`KvRequest`], [`Purpose`], [`RequestState`]. Must not touch: frames,
//! timers or instances (the runner client sends, times out and routes results).
//!
//! Choices where the spec is silent:
//! - Ids count up from 0 for the whole process (wrapping after `u32::MAX`, far beyond any run), so
//!   they are unique within the process and a stale response can never be mistaken for another.
//! - The deadline is `KV_REQUEST_TIMEOUT` after the request was made while it waits for a
//!   connection, and is reset to `KV_REQUEST_TIMEOUT` after it is sent: a request queued for a
//!   while is not closed on a moment after it finally went out.
//! - Queued requests go out in id order (the order they were made), after the events re-sent at
//!   Init.

use std::collections::BTreeMap;

use crate::fact::ConnId;
use crate::keys::ActorId;
use crate::protocol::KvRequestData;

/// Why an instance made a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// A live read or the put of the startup program.
    Startup,
    /// An application action.
    App,
}

/// Where a request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestState {
    /// Waiting for a ready connection.
    Queued,
    /// Sent on this connection, unanswered.
    InFlight { conn: ConnId },
}

/// One unresolved request.
#[derive(Clone, Debug, PartialEq)]
pub struct KvRequest {
    /// The issuing instance `(A, g)`.
    pub actor: ActorId,
    pub generation: u32,
    pub purpose: Purpose,
    pub data: KvRequestData,
    pub state: RequestState,
    /// Local time after which it fails.
    pub deadline_ms: u64,
}

/// Every unresolved request, by id.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KvTable {
    next_id: u32,
    requests: BTreeMap<u32, KvRequest>,
}

impl KvTable {
    /// Add a queued request of `(actor, generation)`, failing at `deadline_ms`; returns its id.
    pub fn add(
        &mut self,
        actor: &str,
        generation: u32,
        purpose: Purpose,
        data: KvRequestData,
        deadline_ms: u64,
    ) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.requests.insert(
            id,
            KvRequest {
                actor: actor.to_owned(),
                generation,
                purpose,
                data,
                state: RequestState::Queued,
                deadline_ms,
            },
        );
        id
    }

    /// The request `id`.
    pub fn get(&self, id: u32) -> Option<&KvRequest> {
        self.requests.get(&id)
    }

    /// Mark `id` as sent on `conn`, failing at `deadline_ms`.
    pub fn mark_sent(&mut self, id: u32, conn: ConnId, deadline_ms: u64) {
        if let Some(request) = self.requests.get_mut(&id) {
            request.state = RequestState::InFlight { conn };
            request.deadline_ms = deadline_ms;
        }
    }

    /// Remove `id` (it resolved).
    pub fn remove(&mut self, id: u32) -> Option<KvRequest> {
        self.requests.remove(&id)
    }

    /// Ids of the queued requests, ascending.
    pub fn queued(&self) -> Vec<u32> {
        self.ids_where(|r| r.state == RequestState::Queued)
    }

    /// Ids of the requests in flight, ascending.
    pub fn in_flight(&self) -> Vec<u32> {
        self.ids_where(|r| matches!(r.state, RequestState::InFlight { .. }))
    }

    /// Number of unresolved requests.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// Whether no request is unresolved.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    fn ids_where(&self, keep: impl Fn(&KvRequest) -> bool) -> Vec<u32> {
        self.requests.iter().filter(|(_, r)| keep(r)).map(|(id, _)| *id).collect()
    }
}

/// The schema name of a KV request, for facts.
pub fn request_kind(data: &KvRequestData) -> &'static str {
    match data {
        KvRequestData::KvGetRequest(_) => "KvGetRequest",
        KvRequestData::KvListRequest(_) => "KvListRequest",
        KvRequestData::KvPutRequest(_) => "KvPutRequest",
        KvRequestData::KvDeleteRequest(_) => "KvDeleteRequest",
        KvRequestData::KvDeleteRangeRequest(_) => "KvDeleteRangeRequest",
        KvRequestData::KvDropRequest => "KvDropRequest",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_states_move_from_queued_to_in_flight() {
        let mut table = KvTable::default();
        let a = table.add("a", 0, Purpose::App, KvRequestData::KvDropRequest, 10);
        let b = table.add("a", 0, Purpose::Startup, KvRequestData::KvDropRequest, 10);
        assert_ne!(a, b);
        assert_eq!(table.queued(), vec![a, b]);
        table.mark_sent(b, ConnId(7), 99);
        assert_eq!(table.in_flight(), vec![b]);
        assert_eq!(table.get(b).map(|r| r.deadline_ms), Some(99));
        assert!(table.remove(a).is_some());
        let c = table.add("a", 0, Purpose::App, KvRequestData::KvDropRequest, 10);
        assert!(c != a && c != b, "ids are never reused");
    }
}
