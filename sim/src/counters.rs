//! Counters that let tests prove exactly-once delivery.
//!
//! For every write endpoint the simulator counts, per key, how many well-formed requests it
//! received (`receipts`) and how many of them changed state (`applications`). A client that
//! retries after a lost answer shows `receipts > 1`; a server that applied a write twice
//! would show `applications > 1`, which a correct simulator never does, and a write the
//! client believes acknowledged must show `applications == 1`.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::wire::Endpoint;

/// Receipts and applications of one key of one write endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteCount {
    /// Well-formed requests that reached the endpoint's logic for this key.
    pub receipts: u64,
    /// Of those, the ones that changed state (at most one per key).
    pub applications: u64,
}

impl WriteCount {
    /// Receipts beyond the first: resends the simulator recognised.
    pub fn duplicates(&self) -> u64 {
        self.receipts.saturating_sub(1)
    }
}

/// A snapshot of every counter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// activemember, keyed by wxCode.
    pub activemember: BTreeMap<String, WriteCount>,
    /// createmembercard, keyed by wxCode.
    pub createmembercard: BTreeMap<String, WriteCount>,
    /// savecardid, keyed by order id.
    pub savecardid: BTreeMap<i64, WriteCount>,
    /// Every request per endpoint that reached the simulator, faulted or not.
    pub requests: BTreeMap<Endpoint, u64>,
    /// Requests per endpoint answered by a fault instead of the endpoint's logic
    /// (http500, not_json, a forced status) or whose answer a fault spoiled (truncated,
    /// no_status, oversized).
    pub faulted: BTreeMap<Endpoint, u64>,
}

impl Counters {
    /// The count for one key of a write endpoint (`key` is a wxCode or an order id).
    pub fn write(&self, endpoint: Endpoint, key: &str) -> WriteCount {
        match endpoint {
            Endpoint::ActiveMember => self.activemember.get(key).copied(),
            Endpoint::CreateMemberCard => self.createmembercard.get(key).copied(),
            Endpoint::SaveCardId => key
                .parse::<i64>()
                .ok()
                .and_then(|id| self.savecardid.get(&id).copied()),
            _ => None,
        }
        .unwrap_or_default()
    }

    /// Every (endpoint, key) that was applied more than once. Always empty unless the
    /// simulator itself is broken; tests assert it.
    pub fn applied_twice(&self) -> Vec<(Endpoint, String)> {
        let mut out = Vec::new();
        let mut scan = |e: Endpoint, it: &mut dyn Iterator<Item = (String, WriteCount)>| {
            out.extend(it.filter(|(_, c)| c.applications > 1).map(|(k, _)| (e, k)));
        };
        scan(
            Endpoint::ActiveMember,
            &mut self.activemember.iter().map(|(k, c)| (k.clone(), *c)),
        );
        scan(
            Endpoint::CreateMemberCard,
            &mut self.createmembercard.iter().map(|(k, c)| (k.clone(), *c)),
        );
        scan(
            Endpoint::SaveCardId,
            &mut self.savecardid.iter().map(|(k, c)| (k.to_string(), *c)),
        );
        out
    }

    pub(crate) fn receipt(&mut self, endpoint: Endpoint, key: &str, applied: bool) {
        let entry = match endpoint {
            Endpoint::ActiveMember => self.activemember.entry(key.to_owned()).or_default(),
            Endpoint::CreateMemberCard => self.createmembercard.entry(key.to_owned()).or_default(),
            _ => return,
        };
        entry.receipts += 1;
        entry.applications += u64::from(applied);
    }

    pub(crate) fn order_receipt(&mut self, id: i64, applied: bool) {
        let entry = self.savecardid.entry(id).or_default();
        entry.receipts += 1;
        entry.applications += u64::from(applied);
    }

    /// The admin API form (see docs/simulator.md).
    pub fn to_json(&self) -> Value {
        fn writes<K: ToString>(m: &BTreeMap<K, WriteCount>) -> Value {
            let obj: Map<String, Value> = m
                .iter()
                .map(|(k, c)| {
                    let v = json!({"receipts": c.receipts, "applications": c.applications});
                    (k.to_string(), v)
                })
                .collect();
            Value::Object(obj)
        }
        fn per_endpoint(m: &BTreeMap<Endpoint, u64>) -> Value {
            Value::Object(m.iter().map(|(e, n)| (e.to_string(), json!(n))).collect())
        }
        json!({
            "activemember": writes(&self.activemember),
            "createmembercard": writes(&self.createmembercard),
            "savecardid": writes(&self.savecardid),
            "requests": per_endpoint(&self.requests),
            "faulted": per_endpoint(&self.faulted),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_key() {
        let mut c = Counters::default();
        c.receipt(Endpoint::ActiveMember, "1", true);
        c.receipt(Endpoint::ActiveMember, "1", false);
        c.order_receipt(9, true);
        let a = c.write(Endpoint::ActiveMember, "1");
        assert_eq!((a.receipts, a.applications, a.duplicates()), (2, 1, 1));
        assert_eq!(c.write(Endpoint::SaveCardId, "9").applications, 1);
        assert_eq!(
            c.write(Endpoint::CreateMemberCard, "1"),
            WriteCount::default()
        );
        assert!(c.applied_twice().is_empty());
        c.order_receipt(9, true);
        assert_eq!(
            c.applied_twice(),
            vec![(Endpoint::SaveCardId, "9".to_owned())]
        );
        let j = c.to_json();
        assert_eq!(j["savecardid"]["9"]["receipts"].as_u64(), Some(2));
    }
}
