use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn no_flag_is_a_dash() {
    assert_eq!(short_string(0), "-");
}

#[test]
fn flags_join_in_bit_order() {
    assert_eq!(short_string(1 << 8), "NR");
    assert_eq!(short_string((1 << 5) | (1 << 15)), "UF,URX");
    assert_eq!(short_string(1 << 1), "UH");
    assert_eq!(short_string(1 << 29), "UDO");
}

#[test]
fn unknown_bits_are_kept_visible() {
    assert_eq!(short_string(1 << 40), "0x10000000000");
}
