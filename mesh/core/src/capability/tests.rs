use super::*;
use sdk_shim::testing::FakeHost;
use sdk_shim::HeaderMap;
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTS: AtomicUsize = AtomicUsize::new(0);

/// Reads two request headers; counts how often its header-read figure is asked for.
struct TwoHeaders;

#[derive(Debug, Default)]
struct Reader;

impl HttpFilter for Reader {
    fn on_request_headers<H: StreamHost>(&mut self, host: &H, _: bool) -> Action {
        let _ = host.header(HeaderMap::Request, ":method");
        let _ = host.header(HeaderMap::Request, ":path");
        Action::Continue
    }
}

impl Capability for TwoHeaders {
    const NAME: &'static str = "two";
    const DECISION_KEY: Option<&'static str> = None;
    type Compiled = ();
    type Bound = ();
    type Filter = Reader;
    fn compile(_: &[u8]) -> Result<(), ConfigError> {
        Ok(())
    }
    fn bind<H: ConfigHost>(_: &H, (): ()) -> Result<(), SetupError> {
        Ok(())
    }
    fn filter(_: Option<&Arc<()>>) -> Reader {
        Reader
    }
    fn request_header_reads((): &()) -> usize {
        COUNTS.fetch_add(1, Ordering::Relaxed);
        2
    }
}

#[test]
fn the_header_plan_is_made_per_configuration_and_two_reads_take_the_whole_map() {
    let mut root = CapabilityRoot::<TwoHeaders>::default();
    assert!(root.on_configure(&FakeHost::new(), b"{}"));
    let asked = COUNTS.load(Ordering::Relaxed);
    for _ in 0..3 {
        let req = FakeHost::new().request("GET", "h", "/");
        root.new_http().on_request_headers(&req, true);
        assert_eq!(req.host_call_log(), ["headers Request"]);
    }
    // Working it out may walk every rule: never per request.
    assert_eq!(COUNTS.load(Ordering::Relaxed), asked);
}
