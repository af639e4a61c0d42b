use super::*;
use crate::testing::FakeHost;

#[test]
fn decisions_stay_in_memory_and_other_properties_reach_the_host() {
    let host = FakeHost::new().property(&["source", "address"], "10.0.0.1:5");
    let decisions = Decisions::default();
    let h = InMemoryDecisions {
        host: &host,
        decisions: &decisions,
        write_through: false,
    };
    decision::publish(&h, decision::CANARY, "v2").unwrap();
    assert_eq!(decision::read(&h, decision::CANARY).as_deref(), Some("v2"));
    assert_eq!(
        host.property_value(&[decision::CANARY]),
        None,
        "no host write"
    );
    assert_eq!(
        h.property(&["source", "address"]).unwrap().unwrap(),
        b"10.0.0.1:5"
    );
    h.set_property(&["other"], b"x").unwrap();
    assert_eq!(host.property_value(&["other"]).unwrap(), b"x");
    decisions.clear();
    assert_eq!(decision::read(&h, decision::CANARY), None);
}

#[test]
fn write_through_also_reaches_the_host_but_reads_stay_in_memory() {
    let host = FakeHost::new();
    let decisions = Decisions::default();
    let h = InMemoryDecisions {
        host: &host,
        decisions: &decisions,
        write_through: true,
    };
    decision::publish(&h, decision::RATELIMIT, "allowed").unwrap();
    assert_eq!(
        host.property_value(&[decision::RATELIMIT]).unwrap(),
        b"allowed"
    );
    let calls = host.host_calls();
    assert_eq!(
        decision::read(&h, decision::RATELIMIT).as_deref(),
        Some("allowed")
    );
    assert_eq!(host.host_calls(), calls, "a read is served from memory");
}
