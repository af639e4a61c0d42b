//! Durations as written in configs: `500ms`, `1s`, `2m`, `1h`.

use std::time::Duration;

/// Parses a positive integer followed by `ms`, `s`, `m` or `h`. The error is a reason, to be
/// wrapped with the field name.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits_end);
    if num.is_empty() {
        return Err(format!(
            "invalid duration {s:?}: expected a number then ms, s, m or h"
        ));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: number too large"))?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => {
            return Err(format!(
                "invalid duration {s:?}: unit must be ms, s, m or h"
            ))
        }
    };
    let millis = n
        .checked_mul(millis_per_unit)
        .filter(|m| *m <= 366 * 24 * 3_600_000)
        .ok_or_else(|| format!("invalid duration {s:?}: longer than a year"))?;
    Ok(Duration::from_millis(millis))
}

#[cfg(test)]
mod tests;
