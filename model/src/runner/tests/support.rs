//! Test support: a live KV that answers requests from an in-memory keyspace exactly as
//! `spec/preload.md` §1.2 describes them (written here from the spec, not with the runner's
//! code), and a driver loop for [`StartupDriver`].

use crate::constants::{KV_METADATA_VERSION, LIST_DEFAULT_LIMIT};
use crate::fact::StartupRecord;
use crate::preload::Snapshot;
use crate::protocol::{
    KvErrorResponse, KvGetResponse, KvListQuery, KvListResponse, KvMetadata, KvRequestData,
    KvResponseData,
};
use crate::records::KvEntryRecord;
use crate::runner::startup::{DriverStep, LiveResult, StartupDriver, StartupFailure};

/// A live keyspace answering KV requests.
#[derive(Clone, Debug)]
pub struct LiveKv {
    pub snapshot: Snapshot,
    /// Every request answered, in order.
    pub requests: Vec<KvRequestData>,
    /// Reject puts with this error message instead of applying them.
    pub reject_puts: Option<String>,
}

impl LiveKv {
    pub fn new(snapshot: Snapshot) -> Self {
        LiveKv { snapshot, requests: Vec::new(), reject_puts: None }
    }

    /// Number of read requests (get and list) answered.
    pub fn reads(&self) -> usize {
        self.requests
            .iter()
            .filter(|r| {
                matches!(r, KvRequestData::KvGetRequest(_) | KvRequestData::KvListRequest(_))
            })
            .count()
    }

    pub fn answer(&mut self, request: &KvRequestData) -> KvResponseData {
        self.requests.push(request.clone());
        let meta =
            || KvMetadata { version: KV_METADATA_VERSION.as_bytes().to_vec().into(), update_ts: 0 };
        match request {
            KvRequestData::KvGetRequest(get) => {
                let mut keys: Vec<Vec<u8>> = Vec::new();
                for k in &get.keys {
                    if self.snapshot.get(k).is_some() && !keys.contains(&k.to_vec()) {
                        keys.push(k.to_vec());
                    }
                }
                let values = keys
                    .iter()
                    .filter_map(|k| self.snapshot.get(k))
                    .map(|r| r.value.clone().into())
                    .collect();
                let metadata = keys.iter().map(|_| meta()).collect();
                KvResponseData::KvGetResponse(KvGetResponse {
                    keys: keys.into_iter().map(Into::into).collect(),
                    values,
                    metadata,
                })
            }
            KvRequestData::KvListRequest(list) => {
                let selected: Vec<(Vec<u8>, Vec<u8>)> = self
                    .snapshot
                    .iter()
                    .filter(|(k, _)| match &list.query {
                        KvListQuery::KvListAllQuery => true,
                        KvListQuery::KvListPrefixQuery(q) => k.starts_with(&q.key),
                        KvListQuery::KvListRangeQuery(q) => {
                            k.as_slice() >= q.start.as_ref()
                                && if q.exclusive {
                                    k.as_slice() < q.end.as_ref()
                                } else {
                                    k.as_slice() <= q.end.as_ref()
                                }
                        }
                    })
                    .map(|(k, r)| (k.clone(), r.value.clone()))
                    .collect();
                let mut selected = selected;
                if list.reverse == Some(true) {
                    selected.reverse();
                }
                let limit = list.limit.unwrap_or(LIST_DEFAULT_LIMIT) as usize;
                selected.truncate(limit);
                let metadata = selected.iter().map(|_| meta()).collect();
                let (keys, values): (Vec<_>, Vec<_>) =
                    selected.into_iter().map(|(k, v)| (k.into(), v.into())).unzip();
                KvResponseData::KvListResponse(KvListResponse { keys, values, metadata })
            }
            KvRequestData::KvPutRequest(put) => {
                if let Some(message) = &self.reject_puts {
                    return KvResponseData::KvErrorResponse(KvErrorResponse {
                        message: message.clone().into(),
                    });
                }
                for (k, v) in put.keys.iter().zip(&put.values) {
                    self.snapshot.insert(k.to_vec(), record(v));
                }
                KvResponseData::KvPutResponse
            }
            KvRequestData::KvDeleteRequest(delete) => {
                for k in &delete.keys {
                    self.snapshot.remove(k);
                }
                KvResponseData::KvDeleteResponse
            }
            KvRequestData::KvDeleteRangeRequest(range) => {
                let doomed: Vec<Vec<u8>> = self
                    .snapshot
                    .iter()
                    .map(|(k, _)| k.clone())
                    .filter(|k| {
                        k.as_slice() >= range.start.as_ref() && k.as_slice() < range.end.as_ref()
                    })
                    .collect();
                for k in doomed {
                    self.snapshot.remove(&k);
                }
                KvResponseData::KvDeleteResponse
            }
            KvRequestData::KvDropRequest => {
                self.snapshot.clear();
                KvResponseData::KvDropResponse
            }
        }
    }
}

/// A stored record with the default metadata.
pub fn record(value: &[u8]) -> KvEntryRecord {
    KvEntryRecord {
        value: value.to_vec(),
        version: KV_METADATA_VERSION.as_bytes().to_vec(),
        update_ts: 1,
    }
}

/// A keyspace holding `entries`.
pub fn snapshot(entries: &[(&[u8], &[u8])]) -> Snapshot {
    Snapshot::from_entries(entries.iter().map(|(k, v)| (k.to_vec(), record(v))))
}

/// The result of driving one startup to its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrivenStartup {
    pub outcome: Result<StartupRecord, StartupFailure>,
    pub live_reads: u32,
}

/// Drive `driver` against `live`; before answering the `n`-th live request, `unknown(n)` may say
/// that its connection ended (the request is then not run and the driver hears `Unknown`).
pub fn drive(
    driver: &mut StartupDriver,
    live: &mut LiveKv,
    mut unknown: impl FnMut(usize) -> bool,
) -> DrivenStartup {
    let mut step = driver.start();
    let mut n = 0;
    loop {
        match step {
            DriverStep::Live(request) => {
                n += 1;
                assert!(n < 100_000, "startup does not end");
                let is_read = matches!(
                    request,
                    KvRequestData::KvGetRequest(_) | KvRequestData::KvListRequest(_)
                );
                if is_read && unknown(n) {
                    step = driver.on_result(LiveResult::Unknown);
                } else {
                    let response = live.answer(&request);
                    step = driver.on_result(LiveResult::Response(response));
                }
            }
            DriverStep::Done { record, live_reads, .. } => {
                return DrivenStartup { outcome: Ok(record), live_reads }
            }
            DriverStep::Failed(failure) => {
                return DrivenStartup { outcome: Err(failure), live_reads: driver.live_reads() }
            }
        }
    }
}
