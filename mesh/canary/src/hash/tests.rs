use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const KEY0: u64 = 0x0706_0504_0302_0100;
const KEY1: u64 = 0x0f0e_0d0c_0b0a_0908;

#[test]
fn matches_the_reference_vector() {
    // Appendix A of the SipHash paper: key 00..0f, message 00..0e.
    let msg: Vec<u8> = (0u8..15).collect();
    assert_eq!(siphash24(KEY0, KEY1, &msg), 0xa129_ca61_49be_45e5);
}

#[test]
fn empty_input_matches_the_reference_table() {
    // First entry of the reference implementation's vectors (64-bit output, empty message).
    assert_eq!(
        siphash24(KEY0, KEY1, b"").to_le_bytes(),
        [0x31, 0x0e, 0x0e, 0xdd, 0x47, 0xdb, 0x6f, 0x72]
    );
}

#[test]
#[allow(deprecated)]
#[cfg(not(target_arch = "wasm32"))]
fn agrees_with_std_siphasher_on_every_length() {
    use std::hash::Hasher;
    let data: Vec<u8> = (0u8..=200).collect();
    for len in 0..data.len() {
        let mut h = std::hash::SipHasher::new_with_keys(STICKY_K0, STICKY_K1);
        h.write(&data[..len]);
        assert_eq!(sticky_ticket(&data[..len]), h.finish(), "len {len}");
    }
}

#[test]
fn sticky_ticket_is_pinned() {
    // Documented behaviour other implementations can check against.
    assert_eq!(
        sticky_ticket(b"alice"),
        siphash24(STICKY_K0, STICKY_K1, b"alice")
    );
    assert_ne!(sticky_ticket(b"alice"), sticky_ticket(b"bob"));
}

#[test]
fn position_stays_in_range_and_scales() {
    assert_eq!(position(0, 100), 0);
    assert_eq!(position(u64::MAX, 100), 99);
    assert_eq!(position(u64::MAX / 2, 10), 4);
    assert_eq!(position(u64::MAX, 1), 0);
    // Scaling every weight keeps the fraction.
    let t = 0x8000_0000_0000_0000;
    assert_eq!(position(t, 100), 50);
    assert_eq!(position(t, 10), 5);
}
