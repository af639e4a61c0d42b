//! Envoy response flags: the `response.flags` bit vector as the short codes Istio reports.

use std::borrow::Cow;

/// Short codes by bit position, in the order of Envoy's core response flags.
const CODES: [&str; 30] = [
    "LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "RLSE", "DC",
    "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC", "OM", "DF", "DO", "DR",
    "UDO",
];

/// `-` when no flag is set (as in Envoy's access log), else the codes joined by `,` in bit
/// order. Bits this Envoy version does not define show as `0x<bit>` rather than vanish.
pub fn short_string(bits: u64) -> Cow<'static, str> {
    if bits == 0 {
        return Cow::Borrowed("-");
    }
    let mut out = String::new();
    for bit in 0..64u32 {
        if bits & (1u64 << bit) == 0 {
            continue;
        }
        if !out.is_empty() {
            out.push(',');
        }
        match CODES.get(bit as usize) {
            Some(code) => out.push_str(code),
            None => out.push_str(&format!("0x{:x}", 1u64 << bit)),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests;
