//! Path normalization (mesh-intentions).
//!
//! Properties, for any raw `:path`:
//! - the result is a fixed point (normalizing it again gives it back unchanged) in canonical
//!   form: origin form, printable ASCII, no `;` or `\`, no empty, `.` or `..` segment but a
//!   trailing one, every `%` an uppercase escape of a byte that is not unreserved;
//! - it never lets a request escape a deny: when the path an upstream would read (escapes
//!   decoded, then slashes merged and dot segments resolved, or the other way round) lies
//!   under `/admin`, the normalized path is refused or lies under `/admin` too, and the
//!   policy `deny /admin, allow the rest` denies or refuses it.

use mesh_core::MatchInput;
use mesh_intentions::{normalize_path, Action, IntentionsConfig, Peer};
use std::sync::OnceLock;

fn unhex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Decodes every valid `%XX` once, as a server does.
fn decode_once(p: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        if p[i] == b'%' && i + 2 < p.len() {
            if let (Some(h), Some(l)) = (unhex(p[i + 1]), unhex(p[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(p[i]);
        i += 1;
    }
    out
}

/// Merges slashes and resolves `.` and `..` (never above `/`), as RFC 3986 readers do.
fn resolve(p: &[u8]) -> Vec<u8> {
    let mut kept: Vec<&[u8]> = Vec::new();
    for seg in p.split(|b| *b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                kept.pop();
            }
            s => kept.push(s),
        }
    }
    let mut out = Vec::new();
    for s in kept {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    out
}

fn under_admin(p: &[u8]) -> bool {
    p == b"/admin" || p.starts_with(b"/admin/")
}

fn policy() -> &'static mesh_intentions::Policy {
    static POLICY: OnceLock<mesh_intentions::Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        IntentionsConfig::parse(
            br#"{"trust_domain":"mesh.local","destination":"api","default_action":"deny",
                 "intentions":[{"source":"web","permissions":[
                   {"action":"deny","http":{"path_prefix":"/admin"}},
                   {"action":"allow","http":{"path_prefix":"/"}}]}]}"#,
        )
        .expect("the fixed policy compiles")
    })
}

fn check_canonical(n: &str) {
    let b = n.as_bytes();
    assert_eq!(b.first(), Some(&b'/'), "{n:?} is not in origin form");
    assert!(
        b.iter()
            .all(|c| (0x21..=0x7e).contains(c) && !matches!(c, b';' | b'\\' | b'?' | b'#')),
        "{n:?} has a byte outside the canonical set"
    );
    let segs: Vec<&str> = n[1..].split('/').collect();
    let last = segs.len() - 1;
    for (i, s) in segs.iter().enumerate() {
        assert!(
            !(s.is_empty() && i != last) && *s != "." && *s != "..",
            "{n:?} has an empty or dot segment"
        );
    }
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let (h, l) = (b.get(i + 1).copied(), b.get(i + 2).copied());
            let ok =
                |c: Option<u8>| c.is_some_and(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c));
            assert!(ok(h) && ok(l), "{n:?}: escape at {i} is not %XX uppercase");
            let byte = unhex(h.unwrap_or(0)).unwrap_or(0) << 4 | unhex(l.unwrap_or(0)).unwrap_or(0);
            assert!(
                !(byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')),
                "{n:?}: escape of an unreserved byte left encoded"
            );
            i += 3;
        } else {
            i += 1;
        }
    }
}

pub fn normalize(data: &[u8]) {
    let Ok(n) = normalize_path(data) else {
        return;
    };
    check_canonical(&n);
    assert_eq!(
        normalize_path(n.as_bytes()).as_deref(),
        Ok(&*n),
        "not idempotent for {data:?}"
    );

    let end = data
        .iter()
        .position(|b| *b == b'?' || *b == b'#')
        .unwrap_or(data.len());
    let raw = &data[..end];
    let readings = [resolve(&decode_once(raw)), decode_once(&resolve(raw))];
    if readings.iter().any(|r| under_admin(r)) {
        assert!(
            under_admin(n.as_bytes()) || under_admin(n.trim_end_matches('/').as_bytes()),
            "{data:?} reads as /admin upstream but normalizes to {n:?}"
        );
        let web = Peer::from_uri_san("spiffe://mesh.local/ns/default/sa/web", "mesh.local");
        let p = policy();
        let input = MatchInput {
            method: b"GET",
            path: &n,
            headers: &mesh_core::request::NO_HEADERS,
        };
        let d = p.select(&web).decide(&input);
        assert_eq!(d.action, Action::Deny, "{data:?} ({n:?}) escaped the deny");
    }
}
