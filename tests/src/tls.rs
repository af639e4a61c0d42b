//! Test-time mTLS: a CA and workload certificates with SPIFFE IDs (made with rcgen), and raw
//! HTTP/1.1 and HTTP/2 clients over rustls that send request bytes exactly as given: no path
//! normalization, no header validation, so bypass attempts reach Envoy unaltered.

use anyhow::{bail, Context};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A subject alternative name of a certificate to issue.
#[derive(Debug, Clone)]
pub enum San {
    Uri(String),
    Dns(String),
    Ip(std::net::IpAddr),
}

/// A certificate authority made at test time.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    pem: String,
}

/// A certificate and its key.
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ca")
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity")
    }
}

// === impl Ca ===

impl Ca {
    pub fn new(common_name: &str) -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            der: cert.der().clone(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    pub fn pem(&self) -> &str {
        &self.pem
    }

    fn issue(
        &self,
        common_name: &str,
        sans: &[San],
        eku: ExtendedKeyUsagePurpose,
    ) -> anyhow::Result<Identity> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.subject_alt_names = sans
            .iter()
            .map(|s| {
                Ok(match s {
                    San::Uri(u) => SanType::URI(u.as_str().try_into()?),
                    San::Dns(d) => SanType::DnsName(d.as_str().try_into()?),
                    San::Ip(ip) => SanType::IpAddress(*ip),
                })
            })
            .collect::<Result<_, rcgen::Error>>()?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![eku];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        })
    }

    /// A workload (client) certificate with these SANs.
    pub fn client(&self, common_name: &str, sans: &[San]) -> anyhow::Result<Identity> {
        self.issue(common_name, sans, ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// A client certificate whose only SAN is the URI `spiffe_id`.
    pub fn workload(&self, spiffe_id: &str) -> anyhow::Result<Identity> {
        self.client(spiffe_id, &[San::Uri(spiffe_id.to_owned())])
    }

    /// A server certificate for `localhost` and 127.0.0.1 (and `spiffe_id`, as a mesh
    /// workload's certificate names it).
    pub fn server(&self, spiffe_id: Option<&str>) -> anyhow::Result<Identity> {
        let mut sans = vec![
            San::Dns("localhost".to_owned()),
            San::Ip(std::net::IpAddr::from([127, 0, 0, 1])),
        ];
        sans.extend(spiffe_id.map(|id| San::Uri(id.to_owned())));
        self.issue("localhost", &sans, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// Writes `ca.pem`, `server.pem` and `server-key.pem` (a fresh server certificate) into
    /// `dir`, the layout of `envoy-config/intentions/certs/`.
    pub fn write_server_files(&self, dir: &Path) -> anyhow::Result<()> {
        self.write_server_files_as(dir, None)
    }

    /// [`Ca::write_server_files`] with a server certificate that also carries `spiffe_id`.
    pub fn write_server_files_as(&self, dir: &Path, spiffe_id: Option<&str>) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        let server = self.server(spiffe_id)?;
        std::fs::write(dir.join("ca.pem"), &self.pem)?;
        std::fs::write(dir.join("server.pem"), &server.cert_pem)?;
        std::fs::write(dir.join("server-key.pem"), &server.key_pem)?;
        Ok(())
    }
}

// === client side ===

/// Which protocol to offer in ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    H1,
    H2,
}

/// A TLS client configuration trusting `ca`, presenting `identity` if given.
pub fn client_config(
    ca: &Ca,
    identity: Option<&Identity>,
    proto: Proto,
) -> anyhow::Result<Arc<ClientConfig>> {
    let id = identity.map(|id| {
        (
            id.der.clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key_der.clone())),
        )
    });
    build_config(ca.der.clone(), id, proto)
}

/// The same from PEM files: the CA to trust, and a certificate and key to present.
pub fn client_config_from_pem(
    ca_pem: &[u8],
    identity: Option<(&[u8], &[u8])>,
    proto: Proto,
) -> anyhow::Result<Arc<ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    let ca = CertificateDer::from_pem_slice(ca_pem).context("ca pem")?;
    let id = identity
        .map(|(cert, key)| -> anyhow::Result<_> {
            Ok((
                CertificateDer::from_pem_slice(cert).context("certificate pem")?,
                PrivateKeyDer::from_pem_slice(key).context("key pem")?,
            ))
        })
        .transpose()?;
    build_config(ca, id, proto)
}

fn build_config(
    ca: CertificateDer<'static>,
    identity: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
    proto: Proto,
) -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    roots.add(ca)?;
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder.with_client_auth_cert(vec![cert], key)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![match proto {
        Proto::H1 => b"http/1.1".to_vec(),
        Proto::H2 => b"h2".to_vec(),
    }];
    Ok(Arc::new(config))
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

fn connect(config: &Arc<ClientConfig>, port: u16) -> anyhow::Result<Tls> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).context("tcp connect")?;
    tcp.set_read_timeout(Some(Duration::from_secs(15)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(15)))?;
    let conn = ClientConnection::new(config.clone(), ServerName::try_from("localhost")?)?;
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .context("tls handshake")?;
    }
    Ok(tls)
}

/// Whether `data` holds a whole HTTP/1.1 response (by content-length or the last chunk).
fn h1_complete(data: &[u8]) -> bool {
    let Some(end) = find(data, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(data.get(..end).unwrap_or_default()).to_ascii_lowercase();
    let body = data.get(end + 4..).unwrap_or_default();
    for line in head.split("\r\n") {
        if let Some(v) = line.strip_prefix("content-length:") {
            return v.trim().parse::<usize>().is_ok_and(|n| body.len() >= n);
        }
        if line.starts_with("transfer-encoding:") && line.contains("chunked") {
            return body.ends_with(b"0\r\n\r\n");
        }
    }
    false
}

/// Reads one response: until it is complete or the peer closes (a TLS close without
/// close_notify counts as the end). Envoy delays its close, so waiting for it would be slow.
fn read_all(r: &mut impl Read) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => {
                out.extend_from_slice(buf.get(..n).unwrap_or_default());
                if h1_complete(&out) {
                    return Ok(out);
                }
            }
            Err(e) if e.kind() == ErrorKind::UnexpectedEof && !out.is_empty() => return Ok(out),
            Err(e) if e.kind() == ErrorKind::ConnectionReset && !out.is_empty() => return Ok(out),
            Err(e) => return Err(e.into()),
        }
    }
}

/// A response as the raw clients saw it.
#[derive(Debug, Clone, Default)]
pub struct RawResponse {
    /// 0 when the stream was reset or the connection closed without a response.
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// HTTP/2: the stream was reset or the connection sent GOAWAY before a response.
    pub reset: Option<String>,
}

impl RawResponse {
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The upstream stub's echo of what it received, when the request got through.
    pub fn echo(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .ok()
            .filter(|v: &serde_json::Value| v.get("upstream").is_some())
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_h1(raw: &[u8]) -> anyhow::Result<RawResponse> {
    let Some(end) = find(raw, b"\r\n\r\n") else {
        if raw.is_empty() {
            return Ok(RawResponse {
                reset: Some("connection closed without a response".into()),
                ..RawResponse::default()
            });
        }
        bail!("no end of headers in {:?}", String::from_utf8_lossy(raw));
    };
    let head = String::from_utf8_lossy(raw.get(..end).unwrap_or_default()).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw.get(end + 4..).unwrap_or_default().to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Ok(RawResponse {
        status,
        headers,
        body,
        reset: None,
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = find(data, b"\r\n") {
        let size = std::str::from_utf8(data.get(..eol).unwrap_or_default())
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(data.get(start..start + size).unwrap_or_default());
        data = data.get(start + size + 2..).unwrap_or_default();
    }
    out
}

/// Sends `request` (complete HTTP/1.1 request bytes, which should say `Connection: close`)
/// over a fresh TLS connection and reads the whole response.
pub fn h1_raw(
    config: &Arc<ClientConfig>,
    port: u16,
    request: &[u8],
) -> anyhow::Result<RawResponse> {
    let mut tls = connect(config, port)?;
    tls.write_all(request)?;
    tls.flush()?;
    parse_h1(&read_all(&mut tls)?)
}

/// Builds HTTP/1.1 request bytes with `method` and `target` written as given.
pub fn h1_request(method: &[u8], target: &[u8], headers: &[(&str, &[u8])]) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(method);
    r.push(b' ');
    r.extend_from_slice(target);
    r.extend_from_slice(b" HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n");
    for (k, v) in headers {
        r.extend_from_slice(k.as_bytes());
        r.extend_from_slice(b": ");
        r.extend_from_slice(v);
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(b"\r\n");
    r
}

/// `method target` over HTTP/1.1 with extra headers.
pub fn h1(
    config: &Arc<ClientConfig>,
    port: u16,
    method: &[u8],
    target: &[u8],
    headers: &[(&str, &[u8])],
) -> anyhow::Result<RawResponse> {
    h1_raw(config, port, &h1_request(method, target, headers))
}

// === raw HTTP/2 ===

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(0).to_be_bytes();
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(len.get(1..).unwrap_or_default());
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK integer with an `n`-bit prefix whose high bits are `first`.
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | u8::try_from(v).unwrap_or(0));
        return;
    }
    out.push(first | u8::try_from(max).unwrap_or(0));
    v -= max;
    while v >= 128 {
        out.push(u8::try_from(v % 128).unwrap_or(0) | 0x80);
        v /= 128;
    }
    out.push(u8::try_from(v).unwrap_or(0));
}

/// Literal header field without indexing, new name, no Huffman: bytes go out exactly.
fn hpack_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    hpack_int(out, 0, 7, name.len());
    out.extend_from_slice(name);
    hpack_int(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

/// HPACK Huffman codes of the digits (RFC 7541 appendix B), enough to read `:status`.
const DIGIT_CODES: [(u32, u32); 10] = [
    (0b00000, 5),
    (0b00001, 5),
    (0b00010, 5),
    (0b011001, 6),
    (0b011010, 6),
    (0b011011, 6),
    (0b011100, 6),
    (0b011101, 6),
    (0b011110, 6),
    (0b011111, 6),
];

fn huffman_digits(data: &[u8]) -> Option<u16> {
    let bits: Vec<u8> = data
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    let mut pos = 0;
    let mut value: u16 = 0;
    let mut digits = 0;
    while digits < 3 {
        let mut matched = false;
        for (d, (code, len)) in DIGIT_CODES.iter().enumerate() {
            let len = *len as usize;
            let Some(slice) = bits.get(pos..pos + len) else {
                continue;
            };
            let got = slice.iter().fold(0u32, |acc, b| acc << 1 | u32::from(*b));
            if got == *code {
                value = value * 10 + u16::try_from(d).ok()?;
                pos += len;
                digits += 1;
                matched = true;
                break;
            }
        }
        if !matched {
            return None;
        }
    }
    Some(value)
}

/// Reads `:status` from the first field of a response header block (fresh connection, so
/// no dynamic table entries).
fn status_of(block: &[u8]) -> Option<u16> {
    let first = *block.first()?;
    if first & 0x80 != 0 {
        return match first & 0x7F {
            8 => Some(200),
            9 => Some(204),
            10 => Some(206),
            11 => Some(304),
            12 => Some(400),
            13 => Some(404),
            14 => Some(500),
            _ => None,
        };
    }
    let index = if first & 0xC0 == 0x40 {
        first & 0x3F
    } else {
        first & 0x0F
    };
    if !(8..=14).contains(&index) {
        return None;
    }
    let len_byte = *block.get(1)?;
    let len = usize::from(len_byte & 0x7F);
    let value = block.get(2..2 + len)?;
    if len_byte & 0x80 != 0 {
        huffman_digits(value)
    } else {
        std::str::from_utf8(value).ok()?.parse().ok()
    }
}

fn read_exact_or_eof(r: &mut impl Read, buf: &mut [u8]) -> anyhow::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(buf.get_mut(got..).unwrap_or_default()) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
                ) =>
            {
                return Ok(false)
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// Sends one HTTP/2 request on a fresh TLS connection with the header fields written byte for
/// byte (pseudo-headers included, in the order given) and reads the response.
pub fn h2_raw(
    config: &Arc<ClientConfig>,
    port: u16,
    fields: &[(&[u8], &[u8])],
) -> anyhow::Result<RawResponse> {
    let mut tls = connect(config, port)?;
    if tls.conn.alpn_protocol() != Some(b"h2") {
        bail!("server did not negotiate h2");
    }
    let mut block = Vec::new();
    for (k, v) in fields {
        hpack_literal(&mut block, k, v);
    }
    let mut out = PREFACE.to_vec();
    out.extend(frame(4, 0, 0, &[]));
    out.extend(frame(1, 0x1 | 0x4, 1, &block));
    tls.write_all(&out)?;
    tls.flush()?;

    let mut resp = RawResponse::default();
    loop {
        let mut head = [0u8; 9];
        if !read_exact_or_eof(&mut tls, &mut head)? {
            if resp.status == 0 && resp.reset.is_none() {
                resp.reset = Some("connection closed".into());
            }
            return Ok(resp);
        }
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7FFF_FFFF;
        let mut payload = vec![0u8; len];
        if !read_exact_or_eof(&mut tls, &mut payload)? {
            resp.reset.get_or_insert_with(|| "connection closed".into());
            return Ok(resp);
        }
        let unpadded = |p: &[u8], extra: usize| -> Vec<u8> {
            if flags & 0x8 != 0 {
                let pad = usize::from(*p.first().unwrap_or(&0));
                p.get(1 + extra..p.len().saturating_sub(pad))
                    .unwrap_or_default()
                    .to_vec()
            } else {
                p.get(extra..).unwrap_or_default().to_vec()
            }
        };
        match (kind, stream) {
            (4, 0) if flags & 0x1 == 0 => {
                tls.write_all(&frame(4, 0x1, 0, &[]))?;
                tls.flush()?;
            }
            (1, 1) => {
                let extra = if flags & 0x20 != 0 { 5 } else { 0 };
                let block = unpadded(&payload, extra);
                if resp.status == 0 {
                    resp.status = status_of(&block).unwrap_or(0);
                }
                if flags & 0x1 != 0 {
                    return Ok(resp);
                }
            }
            (0, 1) => {
                resp.body.extend(unpadded(&payload, 0));
                if flags & 0x1 != 0 {
                    return Ok(resp);
                }
            }
            (3, 1) => {
                resp.reset = Some(format!("rst_stream {:?}", payload));
                return Ok(resp);
            }
            (7, _) => {
                resp.reset = Some(format!("goaway {:?}", payload.get(4..8)));
                return Ok(resp);
            }
            _ => {}
        }
    }
}

/// `method path` over HTTP/2 (`:scheme` https, `:authority` reviews) with extra fields.
pub fn h2(
    config: &Arc<ClientConfig>,
    port: u16,
    method: &[u8],
    path: &[u8],
    headers: &[(&str, &[u8])],
) -> anyhow::Result<RawResponse> {
    let mut fields: Vec<(&[u8], &[u8])> = vec![
        (b":method", method),
        (b":scheme", b"https"),
        (b":authority", b"reviews"),
        (b":path", path),
    ];
    fields.extend(headers.iter().map(|(k, v)| (k.as_bytes(), *v)));
    h2_raw(config, port, &fields)
}

/// Writes the demo PKI of `envoy-config/intentions/certs/` into `dir`: a CA, the server
/// certificate and client certificates for `default/frontend`, `default/web` and
/// `legacy/billing` in trust domain `mesh.local` (`cargo xtask demo-certs`).
pub fn write_demo_certs(dir: &Path) -> anyhow::Result<()> {
    let ca = Ca::new("mesh demo CA (do not trust)")?;
    ca.write_server_files(dir)?;
    for (file, ns, sa) in [
        ("frontend", "default", "frontend"),
        ("web", "default", "web"),
        ("legacy", "legacy", "billing"),
    ] {
        let id = ca.workload(&format!("spiffe://mesh.local/ns/{ns}/sa/{sa}"))?;
        std::fs::write(dir.join(format!("{file}.pem")), &id.cert_pem)?;
        std::fs::write(dir.join(format!("{file}-key.pem")), &id.key_pem)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpack_digits_decode() {
        // "403" = 011010 00000 011001 + EOS padding 1s.
        let bits = "0110100000001100111111";
        let mut bytes = Vec::new();
        for chunk in bits.as_bytes().chunks(8) {
            let mut b = 0u8;
            for (i, c) in chunk.iter().enumerate() {
                b |= (c - b'0') << (7 - i);
            }
            if chunk.len() < 8 {
                b |= (1 << (8 - chunk.len())) - 1;
            }
            bytes.push(b);
        }
        assert_eq!(huffman_digits(&bytes), Some(403));
        assert_eq!(status_of(&[0x88]), Some(200));
        assert_eq!(status_of(&[0x48, 0x03, b'4', b'0', b'3']), Some(403));
    }

    #[test]
    fn hpack_ints() {
        let mut v = Vec::new();
        hpack_int(&mut v, 0, 7, 10);
        hpack_int(&mut v, 0, 7, 300);
        assert_eq!(v, [10, 127, 173, 1]);
    }
}
