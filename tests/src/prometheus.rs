//! Envoy's `/stats/prometheus` text output, parsed by `mfctl`'s own reader (the one its
//! rollouts read Envoy's admin endpoint with), so the tests and the tool agree.

pub use mesh_cli::rollout::admin::{parse, Sample};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_with_escapes() {
        let s = parse("# TYPE x counter\nx{a=\"1\",b=\"q\\\"u,o}te\"} 3\ny 4.5\nz{} 0\n");
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].name, "x");
        assert_eq!(s[0].label("a"), Some("1"));
        assert_eq!(s[0].label("b"), Some("q\"u,o}te"));
        assert_eq!(s[0].value, 3.0);
        assert_eq!(s[1].value, 4.5);
        assert!(s[2].labels.is_empty());
    }
}
