//! The simulator as a library, as the client's tests and the demo use it in-process:
//! the blocking handle from synchronous code, the async handle on a tokio runtime.

use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use wxcard_sim::{
    BlockingSim, Card, CardState, Endpoint, EndpointSet, FaultMode, Faults, PayCodeCheck,
    SimConfig, Simulator,
};

const ACTIVE: &str = "812345678901234567";
const INACTIVE: &str = "812345678901234570";

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .max_idle_connections(0)
        .build()
        .into()
}

fn get(base: &str, path: &str) -> Result<Value, ureq::Error> {
    let mut response = agent()
        .get(format!("{base}api/weixin/wxcard/{path}"))
        .call()?;
    let text = response.body_mut().read_to_string()?;
    Ok(serde_json::from_str(&text).expect("JSON"))
}

fn activate(base: &str, wx_code: &str) -> Value {
    let mut response = agent()
        .post(format!("{base}api/weixin/wxcard/activemember"))
        .header("content-type", "application/json")
        .send(format!(r#"{{"wxCode":"{wx_code}"}}"#))
        .expect("an answer");
    serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
}

fn blocking() -> BlockingSim {
    Simulator::spawn_in_thread(SimConfig::default()).expect("the simulator starts")
}

#[test]
fn blocking_handle_controls_faults_and_reads_counters() {
    let sim = blocking();
    let base = sim.base_url();
    assert_eq!(base, format!("http://{}/", sim.api_addr()));
    assert_ne!(sim.api_addr(), sim.admin_addr());
    assert_eq!(
        get(&base, &format!("getmembercard?wxCode={ACTIVE}")).unwrap()["status"],
        200
    );

    sim.set_fault(FaultMode::Refuse).unwrap();
    assert!(TcpStream::connect(sim.api_addr()).is_err());
    assert_eq!(sim.faults().mode, FaultMode::Refuse);
    // The admin port keeps working while the API port is down.
    assert!(TcpStream::connect(sim.admin_addr()).is_ok());
    sim.clear_faults().unwrap();
    assert!(TcpStream::connect(sim.api_addr()).is_ok());

    assert_eq!(activate(&base, INACTIVE)["status"], 200);
    assert_eq!(activate(&base, INACTIVE)["message"], "already active");
    let counters = sim.counters();
    let count = counters.write(Endpoint::ActiveMember, INACTIVE);
    assert_eq!(
        (count.receipts, count.applications, count.duplicates()),
        (2, 1, 1)
    );
    assert!(counters.applied_twice().is_empty());
    assert_eq!(counters.requests[&Endpoint::ActiveMember], 2);
    assert_eq!(sim.card(INACTIVE).unwrap().state, CardState::Active);

    sim.set_latency(Duration::from_millis(50)).unwrap();
    sim.set_fault(FaultMode::StringStatus).unwrap();
    assert_eq!(
        sim.faults(),
        Faults {
            latency: Duration::from_millis(50),
            mode: FaultMode::StringStatus,
            endpoints: EndpointSet::ALL,
        }
    );
    assert_eq!(
        get(&base, &format!("getmembercard?wxCode={ACTIVE}")).unwrap()["status"],
        "200"
    );

    // A fault on one endpoint leaves the others alone.
    sim.set_faults(Faults {
        mode: FaultMode::Http500,
        endpoints: EndpointSet::only(&[Endpoint::ActiveMember]),
        ..Faults::default()
    })
    .unwrap();
    assert_eq!(
        get(&base, &format!("getmembercard?wxCode={ACTIVE}")).unwrap()["status"],
        200
    );
    let response = agent()
        .post(format!("{base}api/weixin/wxcard/activemember"))
        .header("content-type", "application/json")
        .send(format!(r#"{{"wxCode":"{INACTIVE}"}}"#))
        .unwrap();
    assert_eq!(response.status().as_u16(), 500);

    sim.force_status(Endpoint::GetMemberCard, 500, 1);
    sim.set_faults(Faults::default()).unwrap();
    assert_eq!(
        get(&base, &format!("getmembercard?wxCode={ACTIVE}")).unwrap()["status"],
        500
    );
    assert_eq!(
        get(&base, &format!("getmembercard?wxCode={ACTIVE}")).unwrap()["status"],
        200
    );

    let mut card = Card::new("700000000000000001", "tpl", "C9");
    card.state = CardState::Lost;
    sim.put_card(card);
    assert_eq!(
        get(&base, "getmembercard?wxCode=700000000000000001").unwrap()["status"],
        603
    );

    let code = get(&base, &format!("getpaycode?wxCode={ACTIVE}")).unwrap()["data"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(matches!(
        sim.check_paycode(&code),
        PayCodeCheck::Valid { ref wx_code, .. } if wx_code == ACTIVE
    ));

    sim.reset().unwrap();
    assert_eq!(sim.card(INACTIVE).unwrap().state, CardState::Inactive);
    assert!(sim.card("700000000000000001").is_none());
    assert_eq!(sim.check_paycode(&code), PayCodeCheck::Unknown);
    assert_eq!(sim.counters(), Default::default());

    let api = sim.api_addr();
    sim.shutdown();
    assert!(TcpStream::connect(api).is_err());
}

#[test]
fn handles_can_be_shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<wxcard_sim::SimHandle>();
    send_sync::<BlockingSim>();
    let sim = blocking();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| activate(&sim.base_url(), INACTIVE));
        }
    });
    let count = sim.counters().write(Endpoint::ActiveMember, INACTIVE);
    assert_eq!((count.receipts, count.applications), (4, 1));
}

#[test]
fn dropping_the_blocking_handle_stops_it() {
    let sim = blocking();
    let (api, admin) = (sim.api_addr(), sim.admin_addr());
    drop(sim);
    assert!(TcpStream::connect(api).is_err());
    assert!(TcpStream::connect(admin).is_err());
}

#[test]
fn a_fixed_port_is_reused_after_refuse() {
    // Find a free port, then ask for it explicitly.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = SimConfig {
        api_addr: port,
        paycode_ttl: Duration::ZERO,
        ..SimConfig::default()
    };
    let sim = Simulator::spawn_in_thread(config).unwrap();
    assert_eq!(sim.api_addr(), port);
    sim.set_fault(FaultMode::Refuse).unwrap();
    sim.set_fault(FaultMode::None).unwrap();
    let code = get(&sim.base_url(), &format!("getpaycode?wxCode={ACTIVE}")).unwrap()["data"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(matches!(
        sim.check_paycode(&code),
        PayCodeCheck::Expired { .. }
    ));
    // Binding a port that is in use is a clear error.
    let taken = SimConfig {
        api_addr: port,
        ..SimConfig::default()
    };
    let err = Simulator::spawn_in_thread(taken).unwrap_err();
    assert!(
        err.to_string().contains("cannot listen for the API"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_handle_on_the_callers_runtime() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let base = sim.base_url();
    let status = tokio::task::spawn_blocking({
        let base = base.clone();
        move || get(&base, &format!("getmembercard?wxCode={ACTIVE}")).unwrap()["status"].clone()
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
    sim.set_fault(FaultMode::Refuse).await.unwrap();
    let api = sim.api_addr();
    assert!(tokio::net::TcpStream::connect(api).await.is_err());
    sim.set_fault(FaultMode::None).await.unwrap();
    assert!(tokio::net::TcpStream::connect(api).await.is_ok());
    let clone = sim.clone();
    sim.shutdown().await;
    assert!(tokio::net::TcpStream::connect(api).await.is_err());
    assert!(matches!(
        clone.set_fault(FaultMode::Http500).await,
        Err(wxcard_sim::SimError::Stopped)
    ));
}
