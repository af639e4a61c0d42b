use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn parses_each_unit() {
    assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(parse_duration("1s").unwrap(), Duration::from_secs(1));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
    assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
}

#[test]
fn rejects_bad_input() {
    for bad in [
        "",
        "s",
        "1",
        "1.5s",
        "-1s",
        "1d",
        "1 s",
        "1S",
        "99999999999999999999h",
        "10000h",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad} should fail");
    }
    assert!(parse_duration("1x").unwrap_err().contains("unit must be"));
}
