//! The connect request (`spec/protocol.md` §2.2): `GET /envoys/connect?…` with the runner's
//! identity and capacity as query parameters, upgraded to a WebSocket with sub-protocol `rivet`.
//!
//! Owns: building the path and query the runner sends ([`ConnectRequest::to_path_and_query`],
//! parameters in the order `protocol_version, namespace, envoy_key, version, pool_name[, slots]`,
//! values form-urlencoded), and parsing it on the edge with every rule of §2.2 that needs no engine
//! state ([`ConnectRequest::parse`]). Whether the namespace exists and the pool is configured are
//! the edge's questions (`ws.namespace_not_found`, `ws.no_runner_config`).
//!
//! Choices where the spec is silent:
//! - The path must be exactly `/envoys/connect` (no trailing slash).
//! - Query components are decoded as `application/x-www-form-urlencoded` (`+` is a space, `%XX` a
//!   byte, a `%` not followed by two hex digits stays literal), then must be valid UTF-8: a value
//!   that is not is an error, never silently replaced.
//! - Unknown parameters are ignored, even repeated. A known parameter given twice is an error,
//!   even with equal values.
//! - Integers are plain decimal digits (leading zeros allowed; no sign, no spaces).
//! - `namespace` must be non-empty (whether it exists is engine state); `pool_name` is 1..=128
//!   chars of any kind; `envoy_key` follows [`crate::wire::ids`] (3..=128 identifier chars).
//! - Rules are checked in the order of the table of §2.2, so the first broken one is reported.
//!
//! Must not touch: the WebSocket handshake itself (the simulator's transport does it).

use std::collections::BTreeMap;

use crate::constants::{DEFAULT_SLOTS, PROTOCOL_VERSION};
use crate::keys::RunnerId;
use crate::wire::close::CloseReason;
use crate::wire::ids::{
    check_identifier, IdentifierError, ENVOY_KEY_MAX_CHARS, ENVOY_KEY_MIN_CHARS,
};

/// The path of the connect request.
pub const CONNECT_PATH: &str = "/envoys/connect";
/// The WebSocket sub-protocol the runner offers and the edge must select.
pub const SUB_PROTOCOL: &str = "rivet";
/// Prefix of the sub-protocol that carries the runner's token: `rivet_token.<token>`.
pub const TOKEN_SUB_PROTOCOL_PREFIX: &str = "rivet_token.";
/// Fewest characters of a pool name (§2.2).
pub const POOL_NAME_MIN_CHARS: usize = 1;
/// Most characters of a pool name (§2.2).
pub const POOL_NAME_MAX_CHARS: usize = 128;

/// Query parameter names.
const PROTOCOL_VERSION_PARAM: &str = "protocol_version";
const NAMESPACE_PARAM: &str = "namespace";
const POOL_NAME_PARAM: &str = "pool_name";
const ENVOY_KEY_PARAM: &str = "envoy_key";
const VERSION_PARAM: &str = "version";
const SLOTS_PARAM: &str = "slots";
const KNOWN_PARAMS: [&str; 6] = [
    PROTOCOL_VERSION_PARAM,
    NAMESPACE_PARAM,
    POOL_NAME_PARAM,
    ENVOY_KEY_PARAM,
    VERSION_PARAM,
    SLOTS_PARAM,
];

/// A runner's connect request.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ConnectRequest {
    /// Wire version; must be `PROTOCOL_VERSION` (8).
    pub protocol_version: u16,
    pub namespace: String,
    pub pool_name: String,
    /// The runner process's identity within the namespace.
    pub envoy_key: String,
    /// The runner's deployment version.
    pub version: u32,
    /// Capacity; `None` means `DEFAULT_SLOTS` (the published client sends none).
    pub slots: Option<u32>,
}

/// What is wrong with the value of one query parameter.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParamProblem {
    /// The percent-decoded bytes are not UTF-8.
    #[error("is not valid UTF-8 after percent-decoding")]
    InvalidUtf8,
    /// Not a plain decimal integer.
    #[error("{value:?} is not a decimal integer")]
    NotAnInteger { value: String },
    /// A decimal integer larger than the type allows.
    #[error("{value} is out of range (at most {max})")]
    OutOfRange { value: String, max: u64 },
    /// `protocol_version` names a version other than 8.
    #[error("must be {expected}, got {found}")]
    UnsupportedVersion { found: u16, expected: u16 },
    /// An empty value where one is required.
    #[error("is empty")]
    Empty,
    /// More characters than allowed.
    #[error("has {len} chars, more than the maximum of {max}")]
    TooLong { len: usize, max: usize },
    /// Not an identifier of the required length.
    #[error("is not a valid identifier: {0}")]
    Identifier(IdentifierError),
    /// `slots` is 0.
    #[error("must be at least 1, got 0")]
    ZeroSlots,
}

/// An invalid connect request (closed with `ws.invalid_request#<detail>`, see
/// [`ConnectError::close_reason`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The path is not `/envoys/connect`.
    #[error("wrong path {path:?}, expected \"/envoys/connect\"")]
    WrongPath { path: String },
    /// A required parameter is absent.
    #[error("missing query parameter `{param}`")]
    Missing { param: &'static str },
    /// A known parameter appears more than once.
    #[error("query parameter `{param}` is given more than once")]
    Duplicated { param: &'static str },
    /// A parameter's value breaks its rule.
    #[error("query parameter `{param}` {problem}")]
    Invalid { param: &'static str, problem: ParamProblem },
}

impl ConnectError {
    /// The close reason of an invalid request: `ws.invalid_request#<this error>`.
    pub fn close_reason(&self) -> CloseReason {
        CloseReason::InvalidRequest { detail: self.to_string() }
    }
}

impl ConnectRequest {
    /// A request at `PROTOCOL_VERSION` without `slots`, as the published client sends it.
    pub fn new(
        namespace: impl Into<String>,
        pool_name: impl Into<String>,
        envoy_key: impl Into<String>,
        version: u32,
    ) -> Self {
        ConnectRequest {
            protocol_version: PROTOCOL_VERSION,
            namespace: namespace.into(),
            pool_name: pool_name.into(),
            envoy_key: envoy_key.into(),
            version,
            slots: None,
        }
    }

    /// The same request with an explicit `slots`.
    pub fn with_slots(mut self, slots: u32) -> Self {
        self.slots = Some(slots);
        self
    }

    /// The runner identity `R = (namespace, envoy_key)`.
    pub fn runner_id(&self) -> RunnerId {
        RunnerId::new(self.namespace.clone(), self.envoy_key.clone())
    }

    /// The capacity: `slots`, or `DEFAULT_SLOTS` when absent.
    pub fn slots_or_default(&self) -> u32 {
        self.slots.unwrap_or(DEFAULT_SLOTS)
    }

    /// `/envoys/connect?protocol_version=8&namespace=…&envoy_key=…&version=…&pool_name=…`, plus
    /// `&slots=N` when set, every value form-urlencoded.
    pub fn to_path_and_query(&self) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair(PROTOCOL_VERSION_PARAM, &self.protocol_version.to_string())
            .append_pair(NAMESPACE_PARAM, &self.namespace)
            .append_pair(ENVOY_KEY_PARAM, &self.envoy_key)
            .append_pair(VERSION_PARAM, &self.version.to_string())
            .append_pair(POOL_NAME_PARAM, &self.pool_name);
        if let Some(slots) = self.slots {
            query.append_pair(SLOTS_PARAM, &slots.to_string());
        }
        format!("{CONNECT_PATH}?{}", query.finish())
    }

    /// Parses and validates the path and query of a connect request (see the module comment for
    /// the exact rules).
    pub fn parse(path_and_query: &str) -> Result<ConnectRequest, ConnectError> {
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        if path != CONNECT_PATH {
            return Err(ConnectError::WrongPath { path: path.to_owned() });
        }
        let params = known_params(query)?;

        let protocol_version = {
            let param = PROTOCOL_VERSION_PARAM;
            let value = required(&params, param)?;
            let found = parse_decimal(value, u64::from(u16::MAX))
                .map_err(|problem| ConnectError::Invalid { param, problem })?;
            let found = u16::try_from(found).unwrap_or(u16::MAX);
            if found != PROTOCOL_VERSION {
                return Err(ConnectError::Invalid {
                    param,
                    problem: ParamProblem::UnsupportedVersion { found, expected: PROTOCOL_VERSION },
                });
            }
            found
        };

        let namespace = required(&params, NAMESPACE_PARAM)?;
        if namespace.is_empty() {
            return Err(ConnectError::Invalid {
                param: NAMESPACE_PARAM,
                problem: ParamProblem::Empty,
            });
        }

        let pool_name = required(&params, POOL_NAME_PARAM)?;
        let pool_name_chars = pool_name.chars().count();
        if pool_name_chars < POOL_NAME_MIN_CHARS {
            return Err(ConnectError::Invalid {
                param: POOL_NAME_PARAM,
                problem: ParamProblem::Empty,
            });
        }
        if pool_name_chars > POOL_NAME_MAX_CHARS {
            return Err(ConnectError::Invalid {
                param: POOL_NAME_PARAM,
                problem: ParamProblem::TooLong { len: pool_name_chars, max: POOL_NAME_MAX_CHARS },
            });
        }

        let envoy_key = required(&params, ENVOY_KEY_PARAM)?;
        check_identifier(envoy_key, ENVOY_KEY_MIN_CHARS, ENVOY_KEY_MAX_CHARS).map_err(|error| {
            ConnectError::Invalid {
                param: ENVOY_KEY_PARAM,
                problem: ParamProblem::Identifier(error),
            }
        })?;

        let version = parse_u32(required(&params, VERSION_PARAM)?, VERSION_PARAM)?;

        let slots = match params.get(SLOTS_PARAM) {
            None => None,
            Some(value) => match parse_u32(value, SLOTS_PARAM)? {
                0 => {
                    return Err(ConnectError::Invalid {
                        param: SLOTS_PARAM,
                        problem: ParamProblem::ZeroSlots,
                    })
                }
                slots => Some(slots),
            },
        };

        Ok(ConnectRequest {
            protocol_version,
            namespace: namespace.to_owned(),
            pool_name: pool_name.to_owned(),
            envoy_key: envoy_key.to_owned(),
            version,
            slots,
        })
    }
}

/// The sub-protocols a runner offers: `rivet`, plus `rivet_token.<token>` when it has a token.
pub fn offered_sub_protocols(token: Option<&str>) -> Vec<String> {
    let mut offered = vec![SUB_PROTOCOL.to_owned()];
    if let Some(token) = token {
        offered.push(format!("{TOKEN_SUB_PROTOCOL_PREFIX}{token}"));
    }
    offered
}

/// What a `Sec-WebSocket-Protocol` request header offers, as the edge reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OfferedSubProtocols {
    /// `rivet` is offered: the edge selects it. If not, the published client would refuse the
    /// handshake anyway.
    pub rivet: bool,
    /// The token of the first `rivet_token.<token>` entry.
    pub token: Option<String>,
}

impl OfferedSubProtocols {
    /// Reads a comma-separated `Sec-WebSocket-Protocol` header value.
    pub fn parse(header: &str) -> OfferedSubProtocols {
        let mut offered = OfferedSubProtocols::default();
        for entry in header.split(',').map(str::trim) {
            if entry == SUB_PROTOCOL {
                offered.rivet = true;
            } else if let Some(token) = entry.strip_prefix(TOKEN_SUB_PROTOCOL_PREFIX) {
                if offered.token.is_none() {
                    offered.token = Some(token.to_owned());
                }
            }
        }
        offered
    }
}

/// Decodes the query into the known parameters, refusing duplicates and non-UTF-8 values.
fn known_params(query: &str) -> Result<BTreeMap<&'static str, String>, ConnectError> {
    let mut params = BTreeMap::new();
    for segment in query.split('&').filter(|segment| !segment.is_empty()) {
        let (raw_name, raw_value) = segment.split_once('=').unwrap_or((segment, ""));
        // A name that does not decode to UTF-8 cannot be a known (ASCII) name: ignore it.
        let Ok(name) = form_decode(raw_name) else { continue };
        let Some(param) = KNOWN_PARAMS.iter().copied().find(|known| *known == name) else {
            continue;
        };
        if params.contains_key(param) {
            return Err(ConnectError::Duplicated { param });
        }
        let value =
            form_decode(raw_value).map_err(|problem| ConnectError::Invalid { param, problem })?;
        params.insert(param, value);
    }
    Ok(params)
}

fn required<'a>(
    params: &'a BTreeMap<&'static str, String>,
    param: &'static str,
) -> Result<&'a str, ConnectError> {
    params.get(param).map(String::as_str).ok_or(ConnectError::Missing { param })
}

fn parse_u32(value: &str, param: &'static str) -> Result<u32, ConnectError> {
    let parsed = parse_decimal(value, u64::from(u32::MAX))
        .map_err(|problem| ConnectError::Invalid { param, problem })?;
    u32::try_from(parsed).map_err(|_| ConnectError::Invalid {
        param,
        problem: ParamProblem::OutOfRange { value: value.to_owned(), max: u64::from(u32::MAX) },
    })
}

/// A plain decimal integer `<= max`.
fn parse_decimal(value: &str, max: u64) -> Result<u64, ParamProblem> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParamProblem::NotAnInteger { value: value.to_owned() });
    }
    match value.parse::<u64>() {
        Ok(parsed) if parsed <= max => Ok(parsed),
        _ => Err(ParamProblem::OutOfRange { value: value.to_owned(), max }),
    }
}

/// `application/x-www-form-urlencoded` decoding of one name or value, strict about UTF-8.
fn form_decode(component: &str) -> Result<String, ParamProblem> {
    let input = component.as_bytes();
    let mut bytes = Vec::with_capacity(input.len());
    let mut at = 0;
    while let Some(&byte) = input.get(at) {
        match byte {
            b'+' => {
                bytes.push(b' ');
                at += 1;
            }
            b'%' => match (input.get(at + 1).and_then(hex), input.get(at + 2).and_then(hex)) {
                (Some(high), Some(low)) => {
                    bytes.push(high << 4 | low);
                    at += 3;
                }
                _ => {
                    bytes.push(b'%');
                    at += 1;
                }
            },
            other => {
                bytes.push(other);
                at += 1;
            }
        }
    }
    String::from_utf8(bytes).map_err(|_| ParamProblem::InvalidUtf8)
}

fn hex(digit: &u8) -> Option<u8> {
    char::from(*digit).to_digit(16).and_then(|value| u8::try_from(value).ok())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::strategies;

    fn valid() -> ConnectRequest {
        ConnectRequest::new("default", "main-pool", "runner-01", 3)
    }

    /// A query string built by hand (not by `to_path_and_query`), with `overrides` replacing or
    /// (with `None`) removing parameters of a valid request.
    fn query(overrides: &[(&str, Option<&str>)]) -> String {
        let mut pairs: Vec<(String, String)> = [
            ("protocol_version", "8"),
            ("namespace", "default"),
            ("envoy_key", "runner-01"),
            ("version", "3"),
            ("pool_name", "main-pool"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (name, value) in overrides {
            pairs.retain(|(k, _)| k != name);
            if let Some(value) = value {
                pairs.push((name.to_string(), value.to_string()));
            }
        }
        let joined: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("/envoys/connect?{}", joined.join("&"))
    }

    fn invalid(param: &'static str, problem: ParamProblem) -> Result<ConnectRequest, ConnectError> {
        Err(ConnectError::Invalid { param, problem })
    }

    #[test]
    fn path_and_query_is_exactly_the_spec_form() {
        assert_eq!(
            valid().to_path_and_query(),
            "/envoys/connect?protocol_version=8&namespace=default&envoy_key=runner-01&version=3&pool_name=main-pool"
        );
        assert_eq!(
            valid().with_slots(7).to_path_and_query(),
            "/envoys/connect?protocol_version=8&namespace=default&envoy_key=runner-01&version=3&pool_name=main-pool&slots=7"
        );
    }

    #[test]
    fn hand_written_query_parses() {
        assert_eq!(ConnectRequest::parse(&query(&[])), Ok(valid()));
        assert_eq!(
            ConnectRequest::parse(&query(&[("slots", Some("1"))])),
            Ok(valid().with_slots(1))
        );
        assert_eq!(valid().slots_or_default(), DEFAULT_SLOTS);
        assert_eq!(valid().with_slots(4).slots_or_default(), 4);
        assert_eq!(valid().runner_id(), RunnerId::new("default", "runner-01"));
    }

    #[test]
    fn percent_encoded_characters_are_decoded() {
        let request = ConnectRequest::new("ns with space/é&=?#+%", "pool ü 池", "runner_01", 0);
        let text = request.to_path_and_query();
        // Reserved characters never appear raw in the query.
        assert!(text.contains("namespace=ns+with+space%2F%C3%A9%26%3D%3F%23%2B%25&"), "{text}");
        assert_eq!(ConnectRequest::parse(&text), Ok(request));
        // `%20` and `+` both decode to a space; a stray `%` stays literal.
        assert_eq!(
            ConnectRequest::parse(&query(&[("namespace", Some("a%20b+c%zz%4"))]))
                .map(|r| r.namespace),
            Ok("a b c%zz%4".to_owned())
        );
        // Parameter names may be percent-encoded too.
        assert_eq!(
            ConnectRequest::parse(&query(&[("namespace", None), ("name%73pace", Some("x"))]))
                .map(|r| r.namespace),
            Ok("x".to_owned())
        );
    }

    #[test]
    fn wrong_path_is_an_error() {
        for path in ["/envoys/connect/", "/runners/connect", "/", "", "envoys/connect"] {
            let text = query(&[]).replacen("/envoys/connect", path, 1);
            assert_eq!(
                ConnectRequest::parse(&text),
                Err(ConnectError::WrongPath { path: path.to_owned() }),
                "{text}"
            );
        }
        assert_eq!(
            ConnectRequest::parse("/envoys/connect"),
            Err(ConnectError::Missing { param: "protocol_version" })
        );
    }

    #[test]
    fn missing_parameters_are_named() {
        for param in ["protocol_version", "namespace", "pool_name", "envoy_key", "version"] {
            assert_eq!(
                ConnectRequest::parse(&query(&[(param, None)])),
                Err(ConnectError::Missing { param }),
                "{param}"
            );
        }
    }

    #[test]
    fn protocol_version_must_be_8() {
        assert_eq!(
            ConnectRequest::parse(&query(&[("protocol_version", Some("7"))])),
            invalid("protocol_version", ParamProblem::UnsupportedVersion { found: 7, expected: 8 })
        );
        assert_eq!(
            ConnectRequest::parse(&query(&[("protocol_version", Some("9"))])),
            invalid("protocol_version", ParamProblem::UnsupportedVersion { found: 9, expected: 8 })
        );
        assert_eq!(
            ConnectRequest::parse(&query(&[("protocol_version", Some("65536"))])),
            invalid(
                "protocol_version",
                ParamProblem::OutOfRange { value: "65536".to_owned(), max: 65535 }
            )
        );
        for bad in ["", "v8", "+8", "-8", "8.0", " 8"] {
            assert_eq!(
                ConnectRequest::parse(&query(&[("protocol_version", Some(bad))])),
                invalid(
                    "protocol_version",
                    ParamProblem::NotAnInteger { value: bad.replace('+', " ") }
                ),
                "{bad:?}"
            );
        }
        // Leading zeros are still the number 8.
        assert_eq!(
            ConnectRequest::parse(&query(&[("protocol_version", Some("008"))])),
            Ok(valid())
        );
    }

    #[test]
    fn namespace_must_not_be_empty() {
        assert_eq!(
            ConnectRequest::parse(&query(&[("namespace", Some(""))])),
            invalid("namespace", ParamProblem::Empty)
        );
    }

    #[test]
    fn pool_name_is_1_to_128_chars() {
        assert_eq!(
            ConnectRequest::parse(&query(&[("pool_name", Some(""))])),
            invalid("pool_name", ParamProblem::Empty)
        );
        // 128 two-byte chars is 128 chars, not 256.
        let longest = "é".repeat(128);
        let encoded: String = form_urlencoded::byte_serialize(longest.as_bytes()).collect();
        assert_eq!(
            ConnectRequest::parse(&query(&[("pool_name", Some(&encoded))])).map(|r| r.pool_name),
            Ok(longest)
        );
        let too_long = "p".repeat(129);
        assert_eq!(
            ConnectRequest::parse(&query(&[("pool_name", Some(&too_long))])),
            invalid("pool_name", ParamProblem::TooLong { len: 129, max: 128 })
        );
    }

    #[test]
    fn envoy_key_is_3_to_128_identifier_chars() {
        let cases = [
            ("ab", IdentifierError::TooShort { len: 2, min: 3 }),
            ("", IdentifierError::TooShort { len: 0, min: 3 }),
            ("runner.01", IdentifierError::InvalidChar { ch: '.', position: 6 }),
            ("run%20ner", IdentifierError::InvalidChar { ch: ' ', position: 3 }),
        ];
        for (key, error) in cases {
            assert_eq!(
                ConnectRequest::parse(&query(&[("envoy_key", Some(key))])),
                invalid("envoy_key", ParamProblem::Identifier(error)),
                "{key:?}"
            );
        }
        let too_long = "k".repeat(129);
        assert_eq!(
            ConnectRequest::parse(&query(&[("envoy_key", Some(&too_long))])),
            invalid(
                "envoy_key",
                ParamProblem::Identifier(IdentifierError::TooLong { len: 129, max: 128 })
            )
        );
        for key in ["abc", &"k".repeat(128), "6f1c1f5e-3b2a-4c7d-9e8f-0a1b2c3d4e5f"] {
            assert_eq!(
                ConnectRequest::parse(&query(&[("envoy_key", Some(key))])).map(|r| r.envoy_key),
                Ok(key.to_owned())
            );
        }
    }

    #[test]
    fn version_is_a_u32() {
        assert_eq!(
            ConnectRequest::parse(&query(&[("version", Some("4294967295"))])).map(|r| r.version),
            Ok(u32::MAX)
        );
        assert_eq!(
            ConnectRequest::parse(&query(&[("version", Some("4294967296"))])),
            invalid(
                "version",
                ParamProblem::OutOfRange { value: "4294967296".to_owned(), max: 4294967295 }
            )
        );
        assert_eq!(
            ConnectRequest::parse(&query(&[("version", Some("-1"))])),
            invalid("version", ParamProblem::NotAnInteger { value: "-1".to_owned() })
        );
        assert_eq!(
            ConnectRequest::parse(&query(&[("version", Some("99999999999999999999999"))])),
            invalid(
                "version",
                ParamProblem::OutOfRange {
                    value: "99999999999999999999999".to_owned(),
                    max: 4294967295
                }
            )
        );
    }

    #[test]
    fn slots_is_a_u32_of_at_least_1() {
        assert_eq!(
            ConnectRequest::parse(&query(&[("slots", Some("0"))])),
            invalid("slots", ParamProblem::ZeroSlots)
        );
        assert_eq!(
            ConnectRequest::parse(&query(&[("slots", Some("x"))])),
            invalid("slots", ParamProblem::NotAnInteger { value: "x".to_owned() })
        );
        assert_eq!(
            ConnectRequest::parse(&query(&[("slots", Some(""))])),
            invalid("slots", ParamProblem::NotAnInteger { value: String::new() })
        );
        assert_eq!(
            ConnectRequest::parse(&query(&[("slots", Some("4294967295"))])).map(|r| r.slots),
            Ok(Some(u32::MAX))
        );
    }

    #[test]
    fn unknown_parameters_are_ignored() {
        let text = format!("{}&token=abc&token=def&x&=y&&debug=%FF", query(&[]));
        assert_eq!(ConnectRequest::parse(&text), Ok(valid()));
    }

    #[test]
    fn duplicated_parameters_are_errors() {
        for (param, value) in [("namespace", "default"), ("version", "4"), ("slots", "2")] {
            let text = format!("{}&{param}={value}", query(&[("slots", Some("2"))]));
            assert_eq!(
                ConnectRequest::parse(&text),
                Err(ConnectError::Duplicated { param }),
                "{param}"
            );
        }
        // An encoded name is the same parameter.
        let text = format!("{}&envoy%5Fkey=other", query(&[]));
        assert_eq!(
            ConnectRequest::parse(&text),
            Err(ConnectError::Duplicated { param: "envoy_key" })
        );
    }

    #[test]
    fn non_utf8_values_are_errors() {
        assert_eq!(
            ConnectRequest::parse(&query(&[("namespace", Some("a%FFb"))])),
            invalid("namespace", ParamProblem::InvalidUtf8)
        );
    }

    #[test]
    fn invalid_request_closes_with_its_detail() {
        let error = ConnectError::Missing { param: "envoy_key" };
        assert_eq!(
            error.close_reason().to_string(),
            "ws.invalid_request#missing query parameter `envoy_key`"
        );
    }

    #[test]
    fn sub_protocols() {
        assert_eq!(offered_sub_protocols(None), vec!["rivet".to_owned()]);
        assert_eq!(
            offered_sub_protocols(Some("s3cret")),
            vec!["rivet".to_owned(), "rivet_token.s3cret".to_owned()]
        );
        assert_eq!(
            OfferedSubProtocols::parse("rivet, rivet_token.abc,rivet_token.def"),
            OfferedSubProtocols { rivet: true, token: Some("abc".to_owned()) }
        );
        assert_eq!(
            OfferedSubProtocols::parse("rivet_token.abc"),
            OfferedSubProtocols { rivet: false, token: Some("abc".to_owned()) }
        );
        assert_eq!(OfferedSubProtocols::parse("rivets"), OfferedSubProtocols::default());
    }

    proptest! {
        #[test]
        fn generated_requests_round_trip(request in strategies::connect_request()) {
            prop_assert_eq!(ConnectRequest::parse(&request.to_path_and_query()), Ok(request));
        }

        #[test]
        fn form_decode_agrees_with_form_urlencoded(value in "(?s).{0,24}") {
            // Encoding by the crate, decoding by this module's strict decoder.
            let encoded: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
            prop_assert_eq!(form_decode(&encoded), Ok(value.clone()));
            // On raw (unencoded) input that decodes to UTF-8, both decoders agree.
            if let Ok(strict) = form_decode(&value) {
                let lossy: Vec<(String, String)> = form_urlencoded::parse(format!("k={value}").as_bytes())
                    .into_owned()
                    .collect();
                if !value.contains('&') && !value.contains('=') {
                    prop_assert_eq!(lossy, vec![("k".to_owned(), strict)]);
                }
            }
        }

        #[test]
        fn parsing_any_query_never_panics(text in "(?s)/envoys/connect\\?.{0,60}") {
            let _ = ConnectRequest::parse(&text);
        }
    }
}
