//! Faults the simulator can be told to show, switched at run time.
//!
//! One [`FaultMode`] at a time (refuse, HTTP 500, truncated JSON, string status, hang) plus
//! an added latency, and per endpoint a business status forced on the next N requests.
//! The mode and latency live in a `watch` channel: the API listener watches it to stop and
//! restart listening, and hung requests wait on it to be released.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde_json::{Value, json};

use super::wire::Endpoint;

/// How every API request is answered until the mode is changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum FaultMode {
    /// Normal answers.
    #[default]
    None,
    /// The API port stops listening (connect is refused) and open connections are closed;
    /// clearing the mode listens again on the same port.
    Refuse,
    /// HTTP 500 with an HTML body; the request is not applied.
    Http500,
    /// The request is applied, then the JSON answer is cut in the middle (Content-Length
    /// announces the whole body) and the connection closed.
    Truncated,
    /// The request is applied and answered with `"status":"200"` (a string).
    StringStatus,
    /// Requests are accepted and wait unanswered until the mode changes; they are then
    /// applied and answered (the client has usually given up by then).
    Hang,
    /// The request is applied and answered without the `status` field.
    NoStatus,
    /// HTTP 200 with an HTML page (like a captive portal's) instead of JSON; not applied.
    NotJson,
    /// The request is applied and answered with a valid JSON envelope whose `message` makes
    /// the body [`OVERSIZED_BODY_BYTES`] long, streamed with its Content-Length.
    Oversized,
    /// HTTP 401 (the token was revoked or is wrong); the request is not applied.
    Unauthorized,
}

/// The body length of the `oversized` fault: 16 MiB.
pub const OVERSIZED_BODY_BYTES: u64 = 16 << 20;

impl FaultMode {
    pub const ALL: [FaultMode; 10] = [
        FaultMode::None,
        FaultMode::Refuse,
        FaultMode::Http500,
        FaultMode::Truncated,
        FaultMode::StringStatus,
        FaultMode::Hang,
        FaultMode::NoStatus,
        FaultMode::NotJson,
        FaultMode::Oversized,
        FaultMode::Unauthorized,
    ];

    /// The name used by the admin API and the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultMode::None => "none",
            FaultMode::Refuse => "refuse",
            FaultMode::Http500 => "http500",
            FaultMode::Truncated => "truncated",
            FaultMode::StringStatus => "string_status",
            FaultMode::Hang => "hang",
            FaultMode::NoStatus => "no_status",
            FaultMode::NotJson => "not_json",
            FaultMode::Oversized => "oversized",
            FaultMode::Unauthorized => "unauthorized",
        }
    }
}

impl fmt::Display for FaultMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FaultMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        FaultMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown fault mode {s:?} (none, refuse, http500, truncated, string_status, \
                     hang, no_status, not_json, oversized, unauthorized)"
                )
            })
    }
}

/// The largest latency the admin API accepts: one hour.
pub const MAX_LATENCY_MS: u64 = 3_600_000;

/// A set of endpoints, for faults that affect only some of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EndpointSet(u8);

impl EndpointSet {
    /// Every endpoint (the default).
    pub const ALL: EndpointSet = EndpointSet(0b1_1111);

    fn bit(e: Endpoint) -> u8 {
        1 << Endpoint::ALL.iter().position(|x| *x == e).unwrap_or(0)
    }

    /// Just these endpoints.
    pub fn only(endpoints: &[Endpoint]) -> EndpointSet {
        EndpointSet(endpoints.iter().fold(0, |acc, e| acc | Self::bit(*e)))
    }

    pub fn contains(self, e: Endpoint) -> bool {
        self.0 & Self::bit(e) != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Endpoint> {
        Endpoint::ALL.into_iter().filter(move |e| self.contains(*e))
    }
}

impl Default for EndpointSet {
    fn default() -> Self {
        EndpointSet::ALL
    }
}

/// The mode and latency in force, and the endpoints they affect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Added before every affected API answer (and before a hang starts).
    pub latency: Duration,
    pub mode: FaultMode,
    /// The endpoints the latency and mode affect (default: all). `refuse` closes the whole
    /// port whatever this says.
    pub endpoints: EndpointSet,
}

impl Faults {
    /// The mode and latency that apply to a request of `endpoint`.
    pub fn for_endpoint(&self, endpoint: Endpoint) -> (FaultMode, Duration) {
        if self.endpoints.contains(endpoint) {
            (self.mode, self.latency)
        } else {
            (FaultMode::None, Duration::ZERO)
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "mode": self.mode.as_str(),
            "latencyMs": u64::try_from(self.latency.as_millis()).unwrap_or(u64::MAX),
            "endpoints": self.endpoints.iter().map(Endpoint::as_str).collect::<Vec<_>>(),
        })
    }

    /// Parses the admin form `{"mode": "...", "latencyMs": N, "endpoints": [...]}`; all
    /// optional (none, 0, every endpoint).
    pub fn from_json(v: &Value) -> Result<Faults, String> {
        let obj = v.as_object().ok_or("faults must be a JSON object")?;
        if let Some(k) = obj
            .keys()
            .find(|k| !["mode", "latencyMs", "endpoints"].contains(&k.as_str()))
        {
            return Err(format!("unknown field `{k}` (mode, latencyMs, endpoints)"));
        }
        let mode = match obj.get("mode") {
            None => FaultMode::None,
            Some(m) => m.as_str().ok_or("`mode` must be a string")?.parse()?,
        };
        let latency = match obj.get("latencyMs") {
            None => Duration::ZERO,
            Some(ms) => Duration::from_millis(
                ms.as_u64()
                    .filter(|ms| *ms <= MAX_LATENCY_MS)
                    .ok_or("`latencyMs` must be an integer from 0 to 3600000 (one hour)")?,
            ),
        };
        let endpoints = match obj.get("endpoints") {
            None => EndpointSet::ALL,
            Some(list) => {
                let names = list
                    .as_array()
                    .filter(|l| !l.is_empty())
                    .ok_or("`endpoints` must be a non-empty array of endpoint names")?;
                let mut chosen = Vec::with_capacity(names.len());
                for name in names {
                    let name = name.as_str().ok_or("`endpoints` must hold strings")?;
                    chosen.push(name.parse::<Endpoint>()?);
                }
                EndpointSet::only(&chosen)
            }
        };
        Ok(Faults {
            latency,
            mode,
            endpoints,
        })
    }
}

/// Business statuses forced on the next requests of an endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forced {
    rules: BTreeMap<Endpoint, (u16, u32)>,
}

impl Forced {
    /// Forces `status` on the next `count` requests of `endpoint` (replacing an earlier
    /// rule for it; a count of 0 removes the rule).
    pub fn set(&mut self, endpoint: Endpoint, status: u16, count: u32) {
        if count == 0 {
            self.rules.remove(&endpoint);
        } else {
            self.rules.insert(endpoint, (status, count));
        }
    }

    /// Takes one forced status for a request of `endpoint`, if a rule is left.
    pub fn take(&mut self, endpoint: Endpoint) -> Option<u16> {
        let (status, left) = self.rules.get_mut(&endpoint)?;
        let status = *status;
        *left -= 1;
        if *left == 0 {
            self.rules.remove(&endpoint);
        }
        Some(status)
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    pub fn to_json(&self) -> Value {
        Value::Array(
            self.rules
                .iter()
                .map(|(e, (s, n))| json!({"endpoint": e.as_str(), "status": s, "remaining": n}))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_statuses_run_out() {
        let mut f = Forced::default();
        f.set(Endpoint::ActiveMember, 605, 2);
        assert_eq!(f.take(Endpoint::GetPayCode), None);
        assert_eq!(f.take(Endpoint::ActiveMember), Some(605));
        assert_eq!(f.take(Endpoint::ActiveMember), Some(605));
        assert_eq!(f.take(Endpoint::ActiveMember), None);
        f.set(Endpoint::ActiveMember, 605, 1);
        f.set(Endpoint::ActiveMember, 605, 0);
        assert_eq!(f.take(Endpoint::ActiveMember), None);
    }

    #[test]
    fn modes_round_trip_and_json() {
        for m in FaultMode::ALL {
            assert_eq!(m.as_str().parse::<FaultMode>(), Ok(m));
        }
        let f = Faults::from_json(&json!({"mode": "hang", "latencyMs": 250})).unwrap();
        assert_eq!(f.mode, FaultMode::Hang);
        assert_eq!(f.latency, Duration::from_millis(250));
        assert_eq!(Faults::from_json(&f.to_json()), Ok(f));
        assert!(Faults::from_json(&json!({"mode": "explode"})).is_err());
        assert!(Faults::from_json(&json!({"latency": 5})).is_err());
        assert!(Faults::from_json(&json!({"latencyMs": -5})).is_err());
        assert!(Faults::from_json(&json!({"latencyMs": 3_600_001})).is_err());
        assert!(Faults::from_json(&json!({"endpoints": []})).is_err());
        assert!(Faults::from_json(&json!({"endpoints": ["nope"]})).is_err());
        let some =
            Faults::from_json(&json!({"mode": "http500", "endpoints": ["activemember"]})).unwrap();
        assert_eq!(Faults::from_json(&some.to_json()), Ok(some));
        assert_eq!(
            some.for_endpoint(Endpoint::ActiveMember),
            (FaultMode::Http500, Duration::ZERO)
        );
        assert_eq!(
            some.for_endpoint(Endpoint::GetMemberCard),
            (FaultMode::None, Duration::ZERO)
        );
        assert_eq!(
            EndpointSet::ALL.iter().count(),
            5,
            "ALL holds every endpoint"
        );
    }
}
