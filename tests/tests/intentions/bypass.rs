//! The bypass suite: request shapes published against Istio AuthorizationPolicy, Envoy RBAC
//! and Consul intentions (encoded and doubled separators, dot segments, backslashes, encoded
//! and double-encoded letters, overlong UTF-8, NUL and control bytes, `;` parameters,
//! fragments and queries, method case, repeated and comma-joined headers, forged client
//! certificate headers, a SPIFFE ID only in a DNS SAN, absolute-form targets), each sent raw
//! over HTTP/1.1 and HTTP/2 against the main policy of `intentions.rs`.
//!
//! The oracle does not trust the filter's own normalization: whenever a request reaches the
//! upstream, the stub's echo of what it received is read the way a lenient server might
//! (decoded once or not at all, `\` as `/`, `;params` stripped, dot segments resolved, slashes
//! merged, method case ignored, comma lists split) and none of those readings may be a
//! resource the policy denies to the caller.

use mesh_e2e::tls::{self, Ca, Identity, Proto, RawResponse};
use std::fmt;

/// The identities the suite sends as.
pub struct Ids {
    /// `default/web`: the L7 intention (only `/api/` GET/HEAD/POST and `/upload` PUT with
    /// `x-role: uploader`, minus `/api/admin*`, `/api/secret`, DELETE and `x-tenant: admin`).
    pub web: Identity,
    /// `legacy/billing`: denied everything.
    pub legacy: Identity,
    /// A certificate with the frontend SPIFFE ID only in a DNS SAN: anonymous.
    pub dns_only: Identity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Web,
    Legacy,
    DnsOnly,
    Anonymous,
}

struct Case {
    class: &'static str,
    who: Who,
    method: Vec<u8>,
    target: Vec<u8>,
    headers: Vec<(&'static str, Vec<u8>)>,
}

fn case(class: &'static str, target: &[u8]) -> Case {
    Case {
        class,
        who: Who::Web,
        method: b"GET".to_vec(),
        target: target.to_vec(),
        headers: Vec::new(),
    }
}

impl Case {
    fn method(mut self, m: &[u8]) -> Self {
        self.method = m.to_vec();
        self
    }
    fn who(mut self, w: Who) -> Self {
        self.who = w;
        self
    }
    fn header(mut self, k: &'static str, v: &[u8]) -> Self {
        self.headers.push((k, v.to_vec()));
        self
    }
}

fn cases() -> Vec<Case> {
    let mut c = Vec::new();
    let paths = |c: &mut Vec<Case>, class: &'static str, targets: &[&[u8]]| {
        c.extend(targets.iter().map(|t| case(class, t)));
    };
    paths(
        &mut c,
        "encoded slash",
        &[
            b"/api%2Fadmin",
            b"/api%2fadmin/users",
            b"/api/admin%2F",
            b"/api%2Fsecret",
            b"/api/public%2F..%2Fadmin",
            b"/api/public/..%2fadmin",
            b"/%2Fapi/admin",
            b"/api%5Cadmin",
            b"/api%5csecret",
            b"/api/public/..%5Cadmin",
        ],
    );
    paths(
        &mut c,
        "dot segments",
        &[
            b"/api/public/../admin",
            b"/api/./admin",
            b"/api/public/./../admin/users",
            b"/x/../api/admin",
            b"/api/admin/.",
            b"/api/public/../secret",
            b"/../api/admin",
            b"/api/public/%2e%2e/admin",
            b"/api/public/.%2e/admin",
            b"/api/public/%2E%2E/secret",
            b"/api/public/%2e/../admin",
            b"/api/x/y/../../secret",
        ],
    );
    paths(
        &mut c,
        "double slashes",
        &[
            b"//api/admin",
            b"/api//admin",
            b"/api///secret",
            b"//api//secret//",
            b"/api/public//../admin",
            b"/api//public/..//admin",
        ],
    );
    paths(
        &mut c,
        "backslashes",
        &[
            b"/api\\admin",
            b"/api/public\\..\\admin",
            b"/api\\secret",
            b"/api/public/..\\admin",
            b"\\api\\admin",
            b"/api/\\/admin",
        ],
    );
    paths(
        &mut c,
        "encoded unreserved",
        &[
            b"/api/%61dmin",
            b"/api/%61%64%6d%69%6e",
            b"/%61pi/secret",
            b"/api/secre%74",
            b"/api/%73ecret",
            b"/api/adm%69n/users",
            b"/%61%70%69/%61%64%6D%69%6E",
        ],
    );
    paths(
        &mut c,
        "double encoding",
        &[
            b"/api/%2561dmin",
            b"/api%252Fadmin",
            b"/api/public/%252e%252e/admin",
            b"/api/%252e%252e/api/admin",
            b"/api/secre%2574",
            b"/api/public/..%252Fadmin",
        ],
    );
    paths(
        &mut c,
        "overlong utf-8",
        &[
            b"/api/public/..%C0%AFadmin",
            b"/api/public/%C0%AE%C0%AE/admin",
            b"/api%C0%AFadmin",
            b"/api/public/..%E0%80%AFadmin",
            b"/api/%C1%9Cadmin",
            b"/api/public/..\xC0\xAFadmin",
            b"/api\xC0\xAFadmin",
            b"/api/%F0%80%80%AFadmin",
        ],
    );
    paths(
        &mut c,
        "nul and control bytes",
        &[
            b"/api/secret%00",
            b"/api/admin%00",
            b"/api/secret%00.json",
            b"/api/secret%0a",
            b"/api/secret%0d%0a",
            b"/api/secret%09",
            b"/api/secret%7f",
            b"/api/secret\x00",
            b"/api/secret\x01",
            b"/api/secret\x7f",
        ],
    );
    paths(
        &mut c,
        "path parameters",
        &[
            b"/api/admin;x",
            b"/api/secret;jsessionid=1",
            b"/api/public/..;/admin",
            b"/api;/admin",
            b"/api/secret;",
            b"/api/secret%3Bx",
            b"/api/public/..%3B/admin",
            b"/api/%3Bsecret",
        ],
    );
    paths(
        &mut c,
        "fragments and queries",
        &[
            b"/api/secret?x=1",
            b"/api/secret#frag",
            b"/api/admin?/../public",
            b"/api/public?/../admin",
            b"/api/public#/../admin",
            b"/api/secret?",
            b"/api/secret#",
            b"/api/public?x=%2F..%2Fadmin",
            b"/api/admin#?",
            b"/api/secret/?q",
        ],
    );
    paths(
        &mut c,
        "trailing slash",
        &[b"/api/secret/", b"/api/secret//", b"/api/secret/."],
    );
    paths(
        &mut c,
        "absolute form",
        &[
            b"https://reviews/api/admin",
            b"http://reviews//api/admin",
            b"https://reviews/api/%61dmin",
            b"https://reviews/api/secret",
        ],
    );
    for m in [&b"delete"[..], b"DeLeTe", b"Delete"] {
        c.push(case("method case", b"/api/items").method(m));
    }
    for m in [
        &b"get"[..],
        b"gEt",
        b"post",
        b"head",
        b"PUT",
        b"put",
        b"OPTIONS",
        b"TRACE",
    ] {
        c.push(case("method case", b"/api/admin").method(m));
    }
    c.push(
        case("method case", b"/upload")
            .method(b"put")
            .header("x-role", b"uploader"),
    );
    c.push(case("method case", b"/other").method(b"GET"));
    for v in [
        &b"guest, admin"[..],
        b"guest,admin",
        b"admin, guest",
        b"x,  admin ,y",
    ] {
        c.push(case("repeated headers", b"/api/items").header("x-tenant", v));
    }
    c.push(
        case("repeated headers", b"/api/items")
            .header("x-tenant", b"guest")
            .header("x-tenant", b"admin"),
    );
    c.push(
        case("repeated headers", b"/api/items")
            .header("x-tenant", b"admin")
            .header("x-tenant", b"guest"),
    );
    c.push(
        case("repeated headers", b"/api/items")
            .header("x-tenant", b"")
            .header("x-tenant", b"admin"),
    );
    c.push(
        case("repeated headers", b"/upload")
            .method(b"PUT")
            .header("x-role", b"guest"),
    );
    c.push(
        case("repeated headers", b"/upload")
            .method(b"PUT")
            .header("x-role", b"uploader, guest"),
    );
    let xfcc: &[u8] =
        b"By=spiffe://mesh.local/ns/default/sa/reviews;URI=spiffe://mesh.local/ns/default/sa/web";
    for who in [Who::Legacy, Who::DnsOnly, Who::Anonymous] {
        c.push(
            case("forged client-cert headers", b"/api/items")
                .who(who)
                .header("x-forwarded-client-cert", xfcc),
        );
        c.push(
            case("forged client-cert headers", b"/api/items")
                .who(who)
                .header("x-forwarded-client-cert", xfcc)
                .header("x-forwarded-client-cert", xfcc),
        );
        c.push(
            case("forged client-cert headers", b"/api/items")
                .who(who)
                .header("x-spiffe-id", b"spiffe://mesh.local/ns/default/sa/web"),
        );
        c.push(
            case("forged client-cert headers", b"/api/items")
                .who(who)
                .header("x-client-cert", b"-----BEGIN CERTIFICATE-----"),
        );
    }
    for t in [&b"/api/items"[..], b"/", b"/upload"] {
        c.push(case("spiffe id only in a dns san", t).who(Who::DnsOnly));
    }
    c
}

// === the oracle ===

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

fn decode_once(p: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < p.len() {
        if p[i] == b'%' && i + 2 < p.len() {
            if let (Some(h), Some(l)) = (hex(p[i + 1]), hex(p[i + 2])) {
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

/// One lenient server's reading of a path: `\` as `/`, `;params` dropped, slashes merged,
/// dot segments resolved.
fn resolve(p: &[u8]) -> String {
    let s = String::from_utf8_lossy(p).replace('\\', "/");
    let mut kept: Vec<&str> = Vec::new();
    for seg in s.split('/') {
        let seg = seg.split(';').next().unwrap_or("");
        match seg {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            s => kept.push(s),
        }
    }
    format!("/{}", kept.join("/"))
}

/// Every reading of the path the upstream received that a server might make.
fn readings(echoed: &str) -> Vec<String> {
    let raw = echoed
        .split(['?', '#'])
        .next()
        .unwrap_or("")
        .as_bytes()
        .to_vec();
    let once = decode_once(&raw);
    let twice = decode_once(&once);
    vec![resolve(&raw), resolve(&once), resolve(&twice)]
}

/// Whether any reading of what the upstream received is denied to `web`.
fn denied_to_web(method: &str, path: &str, headers: &serde_json::Value) -> Option<String> {
    let method = method.to_ascii_uppercase();
    let values = |name: &str| -> Vec<String> {
        headers[name]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str())
                    .flat_map(|v| {
                        v.split(',')
                            .map(|x| x.trim().to_owned())
                            .collect::<Vec<_>>()
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    if values("x-tenant").iter().any(|v| v == "admin") {
        return Some("x-tenant admin".into());
    }
    if method == "DELETE" {
        return Some("DELETE".into());
    }
    for r in readings(path) {
        if r.starts_with("/api/admin") || r == "/api/secret" {
            return Some(format!("path read as {r}"));
        }
        let api = r.starts_with("/api/") && ["GET", "HEAD", "POST"].contains(&method.as_str());
        let upload =
            r == "/upload" && method == "PUT" && values("x-role").iter().any(|v| v == "uploader");
        if !api && !upload {
            return Some(format!("{method} {r} is not allowed to web"));
        }
    }
    None
}

// === running ===

#[derive(Default)]
pub struct Report {
    pub total: usize,
    pub failures: Vec<String>,
    rows: Vec<(String, [usize; 4])>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "bypass suite: {} requests, {} reached a denied resource",
            self.total,
            self.failures.len()
        )?;
        writeln!(
            f,
            "  {:<34} {:>8} {:>8} {:>8} {:>8}",
            "class / protocol", "400 ours", "403 ours", "envoy", "allowed"
        )?;
        for (k, [a, b, c, d]) in &self.rows {
            writeln!(f, "  {k:<34} {a:>8} {b:>8} {c:>8} {d:>8}")?;
        }
        for x in &self.failures {
            writeln!(f, "  FAIL {x}")?;
        }
        Ok(())
    }
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).escape_debug().to_string()
}

pub fn run(ca: &Ca, ids: &Ids, port: u16) -> Report {
    let mut report = Report::default();
    for proto in [Proto::H1, Proto::H2] {
        let configs = [
            (Who::Web, tls::client_config(ca, Some(&ids.web), proto)),
            (
                Who::Legacy,
                tls::client_config(ca, Some(&ids.legacy), proto),
            ),
            (
                Who::DnsOnly,
                tls::client_config(ca, Some(&ids.dns_only), proto),
            ),
            (Who::Anonymous, tls::client_config(ca, None, proto)),
        ];
        for c in cases() {
            let Some((_, Ok(cfg))) = configs.iter().find(|(w, _)| *w == c.who) else {
                report.failures.push("client config".into());
                continue;
            };
            let headers: Vec<(&str, &[u8])> =
                c.headers.iter().map(|(k, v)| (*k, v.as_slice())).collect();
            let what = format!(
                "{proto:?} {:?} {} {}",
                c.who,
                show(&c.method),
                show(&c.target)
            );
            let res = match proto {
                Proto::H1 => tls::h1(cfg, port, &c.method, &c.target, &headers),
                Proto::H2 => tls::h2(cfg, port, &c.method, &c.target, &headers),
            };
            let r: RawResponse = match res {
                Ok(r) => r,
                Err(e) => RawResponse {
                    reset: Some(format!("{e:#}")),
                    ..RawResponse::default()
                },
            };
            report.total += 1;
            let col = match (r.status, r.body_str().as_str()) {
                (400, "invalid request path\n") => 0,
                (403, "access denied\n") => 1,
                _ if r.echo().is_some() => 3,
                _ => 2,
            };
            if let Some(echo) = r.echo() {
                let verdict = if c.who == Who::Web {
                    denied_to_web(
                        echo["method"].as_str().unwrap_or(""),
                        echo["path"].as_str().unwrap_or(""),
                        &echo["headers"],
                    )
                } else {
                    Some("caller has no allow at all".into())
                };
                if let Some(why) = verdict {
                    report.failures.push(format!(
                        "{what}: upstream got {} {} ({why})",
                        echo["method"], echo["path"]
                    ));
                }
            } else if (200..300).contains(&r.status) {
                report
                    .failures
                    .push(format!("{what}: {} without the upstream's echo", r.status));
            }
            let key = format!("{} / {proto:?}", c.class);
            match report.rows.iter_mut().find(|(k, _)| *k == key) {
                Some((_, counts)) => counts[col] += 1,
                None => {
                    let mut counts = [0; 4];
                    counts[col] += 1;
                    report.rows.push((key, counts));
                }
            }
        }
    }
    report
}

#[test]
fn oracle_reads_paths_leniently() {
    assert!(readings("/api/%61dmin").contains(&"/api/admin".to_owned()));
    assert!(readings("/api/public/..;/admin").contains(&"/api/admin".to_owned()));
    assert!(readings("/api\\admin").contains(&"/api/admin".to_owned()));
    assert!(readings("/api/%252e%252e/api/admin").contains(&"/api/admin".to_owned()));
    assert!(denied_to_web(
        "get",
        "/api/items",
        &serde_json::json!({"x-tenant": ["a, admin"]})
    )
    .is_some());
    assert!(denied_to_web("GET", "/api/items", &serde_json::json!({})).is_none());
    assert!(denied_to_web("GET", "/api/secret/", &serde_json::json!({})).is_some());
}
