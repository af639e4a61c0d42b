//! Routing one request: pick the service by `:authority`, apply overrides, then sticky or
//! random placement, steer around a tripped guard, and write the route header.

use crate::canary::{Canary, Service, Sticky};
use crate::cookie::{cookie_values, set_cookie};
use crate::guard::{self, Observation};
use crate::hash::sticky_ticket;
use crate::split::remix;
use mesh_core::request::{RequestHead, NO_HEADERS};
use sdk_shim::{Clock, HeaderMap, HttpHeaders, Random, SharedStore};

/// Why a subset was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Override number `n` matched.
    Override(usize),
    /// Weighted split of a random ticket.
    Weighted,
    /// Weighted split of the sticky header's or cookie's ticket.
    Sticky,
    /// The split chose the guarded subset after its guard tripped; sent elsewhere.
    Rerouted,
}

/// The decision on one request, kept until its response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub service: usize,
    pub subset: usize,
    pub reason: Reason,
    /// A `set-cookie` value to add to the response (a new sticky cookie).
    pub set_cookie: Option<String>,
}

// === impl Canary: requests ===

impl Canary {
    /// Decides the subset of the request `host` presents and writes it to the route header,
    /// replacing whatever the client sent. A request for no configured service gets no
    /// decision, and any client-sent route header is removed, so it never picks a route.
    pub fn route<H: HttpHeaders + Random + Clock + SharedStore>(
        &self,
        host: &H,
    ) -> Option<Decision> {
        let decision = self.decide(host);
        match &decision {
            Some(d) => {
                let name = self.subset_name(d);
                let _ = host.set_header(HeaderMap::Request, &self.route_header, name.as_bytes());
            }
            None => {
                let _ = host.remove_header(HeaderMap::Request, &self.route_header);
            }
        }
        decision
    }

    /// Decides without writing anything.
    pub fn decide<H: HttpHeaders + Random + Clock + SharedStore>(
        &self,
        host: &H,
    ) -> Option<Decision> {
        let index = host
            .header_with(HeaderMap::Request, ":authority", |a| {
                a.and_then(|a| self.hosts.find(a))
            })
            .ok()
            .flatten()?;
        let service = self.services.get(index)?;
        Some(service.decide(index, host))
    }

    /// The name of the decided subset.
    pub fn subset_name(&self, d: &Decision) -> &str {
        self.services
            .get(d.service)
            .and_then(|s| s.subsets.get(d.subset))
            .map_or("", String::as_str)
    }

    /// Response phase: adds the sticky cookie, exposes the subset if configured, and counts
    /// the response for the service's guard when it went to the guarded subset. Returns what
    /// the guard did with it, if it counted.
    pub fn respond<H: HttpHeaders + Clock + SharedStore>(
        &self,
        host: &H,
        d: &Decision,
    ) -> Option<Observation> {
        if let Some(cookie) = &d.set_cookie {
            let _ = host.add_header(HeaderMap::Response, "set-cookie", cookie.as_bytes());
        }
        if self.expose_subset {
            let name = self.subset_name(d);
            let _ = host.set_header(HeaderMap::Response, &self.route_header, name.as_bytes());
        }
        let service = self.services.get(d.service)?;
        let g = service.guard.as_ref().filter(|g| g.subset == d.subset)?;
        if g.seen_tripped() {
            return None;
        }
        let status = host.header(HeaderMap::Response, ":status").ok().flatten();
        let obs = guard::observe(
            host,
            g.key(),
            &g.policy,
            host.now_nanos(),
            is_failure(status.as_deref()),
        );
        let obs = obs.ok()?;
        if matches!(obs, Observation::Tripped | Observation::AlreadyTripped) {
            g.mark_tripped();
        }
        Some(obs)
    }
}

/// 5xx, or no readable status at all, is a failure.
fn is_failure(status: Option<&[u8]>) -> bool {
    let code = status
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok());
    !matches!(code, Some(100..=499))
}

// A random ticket from the host; the clock stands in if the host has no entropy.
fn random_ticket<H: Random + Clock>(host: &H) -> u64 {
    let mut buf = [0u8; 8];
    match host.fill_random(&mut buf) {
        Ok(()) => u64::from_le_bytes(buf),
        Err(_) => remix(host.now_nanos()),
    }
}

// === impl Service: requests ===

impl Service {
    fn decide<H: HttpHeaders + Random + Clock + SharedStore>(
        &self,
        index: usize,
        host: &H,
    ) -> Decision {
        // One whole-map read only when a verdict depends on every header pair.
        let head = if self.needs_pairs() {
            RequestHead::read(host, true).ok()
        } else if !self.overrides.is_empty() {
            RequestHead::read(host, false).ok()
        } else {
            None
        };
        let decision = |subset, reason, set_cookie| Decision {
            service: index,
            subset,
            reason,
            set_cookie,
        };

        // The cookie is read (and issued if missing or invalid) even when an override wins,
        // so the user's later requests stay put.
        let mut set_cookie_value = None;
        let mut ticket = None;
        if let Sticky::Cookie(c) = &self.sticky {
            let headers = head.as_ref().map_or(&NO_HEADERS, |h| &h.headers);
            let found = headers
                .values("cookie")
                .flat_map(|v| cookie_values(v, c.name.as_bytes()))
                .find_map(|v| c.codec.decode(v));
            ticket = Some(found.unwrap_or_else(|| {
                let t = random_ticket(host);
                set_cookie_value = Some(set_cookie(
                    &c.name,
                    &c.codec.encode(t),
                    c.max_age_s,
                    c.secure,
                ));
                t
            }));
        }

        if let Some(h) = &head {
            let path = h.path_lossy();
            let input = h.input(&path);
            if let Some((n, o)) = self
                .overrides
                .iter()
                .enumerate()
                .find(|(_, o)| o.matcher.matches(&input))
            {
                return decision(o.subset, Reason::Override(n), set_cookie_value);
            }
        }

        let (ticket, sticky) = match (&self.sticky, ticket) {
            (Sticky::Cookie(_), Some(t)) => (t, true),
            (Sticky::Header(name), _) => {
                let value = match &head {
                    Some(h) if !h.headers.is_empty() => h.headers.get(name).map(<[u8]>::to_vec),
                    _ => host.header(HeaderMap::Request, name).ok().flatten(),
                };
                match value.filter(|v| !v.is_empty()) {
                    Some(v) => (sticky_ticket(&v), true),
                    None => (random_ticket(host), false),
                }
            }
            _ => (random_ticket(host), false),
        };
        let reason = if sticky {
            Reason::Sticky
        } else {
            Reason::Weighted
        };
        let subset = self.split.pick(ticket);
        if let Some(g) = self.guard.as_ref().filter(|g| g.subset == subset) {
            if g.tripped(host) {
                if let Some(other) = self.split.pick_excluding(remix(ticket), subset) {
                    return decision(other, Reason::Rerouted, set_cookie_value);
                }
            }
        }
        decision(subset, reason, set_cookie_value)
    }
}

#[cfg(test)]
mod tests;
