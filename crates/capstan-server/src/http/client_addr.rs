//! Which address a request came from, believing `X-Forwarded-For` only from trusted
//! proxies so a client cannot forge its address by sending the header itself.

use std::net::IpAddr;

use ipnet::IpNet;

/// The client's address: the peer itself unless the peer is a trusted proxy, in which
/// case the rightmost `X-Forwarded-For` entry that is not a trusted proxy.
///
/// Walking from the right matters: each proxy appends the address it saw, so only
/// entries added by our own proxies are trustworthy; anything to their left may be
/// whatever the client wrote. An entry that does not parse ends the walk there.
pub fn client_addr(peer: IpAddr, forwarded_for: &[&str], trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut candidate = peer;
    let entries = forwarded_for
        .iter()
        .flat_map(|header| header.split(','))
        .map(str::trim)
        .rev();
    for entry in entries {
        let Some(ip) = parse_entry(entry) else {
            break;
        };
        candidate = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    candidate
}

/// The client's address of a request from `peer` with `headers`; none without a peer
/// (a request that did not come through the listener).
pub fn of_request(
    peer: Option<IpAddr>,
    headers: &axum::http::HeaderMap,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    peer.map(|peer| client_addr(peer, &forwarded, trusted))
}

/// Accepts `1.2.3.4`, `1.2.3.4:5678`, `::1` and `[::1]:5678`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    if let Ok(addr) = entry.parse::<std::net::SocketAddr>() {
        return Some(addr.ip());
    }
    entry
        .strip_prefix('[')
        .and_then(|rest| rest.split(']').next())
        .and_then(|ip| ip.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let got = client_addr(ip("203.0.113.9"), &["198.51.100.1"], &nets(&["10.0.0.0/8"]));
        assert_eq!(got, ip("203.0.113.9"));
        let got = client_addr(ip("127.0.0.1"), &["198.51.100.1"], &[]);
        assert_eq!(got, ip("127.0.0.1"));
    }

    #[test]
    fn a_trusted_proxy_is_believed_up_to_the_first_untrusted_hop() {
        let trusted = nets(&["10.0.0.0/8"]);
        let got = client_addr(ip("10.0.0.2"), &["198.51.100.7"], &trusted);
        assert_eq!(got, ip("198.51.100.7"));
        // The client forged the leftmost entry; the proxy appended the real one.
        let got = client_addr(ip("10.0.0.2"), &["1.1.1.1, 198.51.100.7"], &trusted);
        assert_eq!(got, ip("198.51.100.7"));
        // Two of our proxies in a row.
        let got = client_addr(ip("10.0.0.2"), &["198.51.100.7, 10.0.0.3"], &trusted);
        assert_eq!(got, ip("198.51.100.7"));
        // Several headers count as one list.
        let got = client_addr(ip("10.0.0.2"), &["1.1.1.1", "198.51.100.7"], &trusted);
        assert_eq!(got, ip("198.51.100.7"));
    }

    #[test]
    fn garbage_and_ports_are_handled() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_addr(ip("10.0.0.2"), &["nonsense"], &trusted),
            ip("10.0.0.2")
        );
        assert_eq!(client_addr(ip("10.0.0.2"), &[], &trusted), ip("10.0.0.2"));
        assert_eq!(
            client_addr(ip("10.0.0.2"), &["198.51.100.7:4711"], &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_addr(ip("10.0.0.2"), &["[2001:db8::1]:443"], &trusted),
            ip("2001:db8::1")
        );
        // Only trusted hops: the leftmost is as far as we can see.
        assert_eq!(
            client_addr(ip("10.0.0.2"), &["10.0.0.9, 10.0.0.3"], &trusted),
            ip("10.0.0.9")
        );
    }
}
