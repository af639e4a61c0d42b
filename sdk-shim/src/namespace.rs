//! Shared-data namespaces: one per plugin instance, so that two plugins in one VM (Istio sets
//! no `vm_id`, so every plugin of a proxy shares one) never share buckets, budgets or guards.
//!
//! A namespace is 16 hex digits and a `/`, the FNV-1a hash of the plugin's identity: Envoy's
//! `plugin_name` and `plugin_root_id` (Istio makes the name `<namespace>.<WasmPlugin name>`),
//! or a `namespace` its configuration names. It does not depend on the rest of the
//! configuration, so an update of a plugin keeps its state. Capabilities put their own name
//! and layout version after it (`<ns>/<capability>.2/...`): state of another layout lives under
//! other keys and is never read.

use crate::Properties;

/// Envoy's name of the plugin (`config.name`), readable at configuration time.
pub const PLUGIN_NAME: [&str; 1] = ["plugin_name"];
/// Envoy's root id of the plugin.
pub const PLUGIN_ROOT_ID: [&str; 1] = ["plugin_root_id"];

/// The prefix of every shared-data key of one plugin instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Namespace([u8; Namespace::LEN]);

// === impl Namespace ===

impl Namespace {
    /// Bytes of the prefix: 16 hex digits and `/`.
    pub const LEN: usize = 17;

    /// The namespace of the plugin being configured: `configured` when set, else its name and
    /// root id (two property reads, once per configuration; missing ones count as empty).
    pub fn of_plugin<H: Properties + ?Sized>(host: &H, configured: Option<&str>) -> Self {
        match configured {
            Some(name) => Self::from_identity(&[b"namespace", name.as_bytes()]),
            None => {
                let read = |p: &[&str]| host.property(p).ok().flatten().unwrap_or_default();
                let name = read(&PLUGIN_NAME);
                let root = read(&PLUGIN_ROOT_ID);
                Self::from_identity(&[b"plugin", &name, &root])
            }
        }
    }

    /// The namespace of an identity given as parts (each length-prefixed, so parts never run
    /// into each other).
    pub fn from_identity(parts: &[&[u8]]) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for b in bytes {
                h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        for p in parts {
            feed(&(p.len() as u64).to_le_bytes());
            feed(p);
        }
        let mut out = [b'/'; Self::LEN];
        for (i, d) in out.iter_mut().take(16).enumerate() {
            let nibble = (h >> (60 - 4 * i)) & 0xf;
            *d = b"0123456789abcdef"
                .get(nibble as usize)
                .copied()
                .unwrap_or(b'0');
        }
        Self(out)
    }

    /// The prefix as text, e.g. `9c1185a5c5e9fc54/`.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("0000000000000000/")
    }

    pub fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }

    /// `<namespace><rest>`.
    pub fn key(&self, rest: &str) -> String {
        let mut k = String::with_capacity(Self::LEN + rest.len());
        k.push_str(self.as_str());
        k.push_str(rest);
        k
    }
}

/// Checks a configured `namespace`: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeHost;

    #[test]
    fn plugins_differ_by_name_or_root_id_and_a_configured_name_wins() {
        let host = |name: &str, root: &str| {
            FakeHost::new()
                .property(&PLUGIN_NAME, name)
                .property(&PLUGIN_ROOT_ID, root)
        };
        let a = Namespace::of_plugin(&host("default.rl-a", "rl"), None);
        let b = Namespace::of_plugin(&host("default.rl-b", "rl"), None);
        let c = Namespace::of_plugin(&host("default.rl-a", "suite"), None);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, Namespace::of_plugin(&host("default.rl-a", "rl"), None));
        // Parts never run into each other.
        assert_ne!(
            Namespace::of_plugin(&host("ab", "c"), None),
            Namespace::of_plugin(&host("a", "bc"), None)
        );
        let shared = Namespace::of_plugin(&host("x", "y"), Some("team-budget"));
        assert_eq!(
            shared,
            Namespace::of_plugin(&host("z", "w"), Some("team-budget"))
        );
        assert_ne!(shared, a);
        let s = a.as_str();
        assert_eq!(s.len(), Namespace::LEN);
        assert!(s.ends_with('/'));
        assert!(s[..16].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a.key("cap.2/secret"), format!("{s}cap.2/secret"));
    }

    #[test]
    fn configured_names_are_checked() {
        assert!(valid_name("team-budget.v1_a"));
        assert!(!valid_name(""));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(&"a".repeat(65)));
    }
}
