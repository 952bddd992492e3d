//! Who a rate limit counts: the identity derived from the address the
//! platform reports.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::Engine as _;

use crate::relay::counter::Bucket;

/// Bytes of a caller's keyed hash (`store::keys`).
const CALLER_ID_LEN: usize = 16;

/// One rate-limit bucket's owner. `Copy` and cheap to hash: the decision on
/// the request path never formats or allocates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Client {
    /// An IPv4 address (an IPv4-mapped IPv6 address counts as its IPv4 one).
    V4(Ipv4Addr),
    /// An IPv6 network: the address with every bit past the prefix cleared,
    /// and the prefix length.
    V6(Ipv6Addr, u8),
    /// A proven caller (`relay::caller`), by the keyed hash of its subject:
    /// on upstreams with `rate_limit.per = "caller"`.
    Caller([u8; CALLER_ID_LEN]),
    /// Every request the platform gave no address for. They share one
    /// bucket, limited like a single client: an address-less request cannot
    /// be used to escape the limit, and the platforms tokenrelay runs on
    /// always set the address, so in production this bucket stays empty
    /// (the relay warns once per instance when it is used).
    Unknown,
    /// Every client beyond [`MAX_CLIENTS`](super::MAX_CLIENTS) new ones in a
    /// window on one instance (a spray over a /48's 65,536 /64s, a botnet):
    /// they share one bucket, limited like a single client, so that the
    /// memory and the store keys of one window stay bounded.
    Crowd,
}

impl Client {
    /// The bucket of `ip`, grouping IPv6 addresses by their first
    /// `ipv6_prefix` bits (at most 128).
    pub(super) fn of(ip: Option<IpAddr>, ipv6_prefix: u8) -> Self {
        match ip.map(|ip| ip.to_canonical()) {
            Some(IpAddr::V4(v4)) => Client::V4(v4),
            Some(IpAddr::V6(v6)) => {
                let prefix = ipv6_prefix.min(128);
                let mask = u128::MAX.checked_shl(u32::from(128 - prefix)).unwrap_or(0);
                Client::V6(Ipv6Addr::from(u128::from(v6) & mask), prefix)
            }
            None => Client::Unknown,
        }
    }

    /// The bucket of the caller whose keyed hash (URL-safe base64, as
    /// `store::keys::session::subject` gives it) is `subject`.
    pub(super) fn caller(subject: &str) -> Option<Self> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(subject).ok()?;
        bytes.try_into().ok().map(Client::Caller)
    }

    /// The bucket's name for its shared counter key (which hashes it). Only
    /// built when counts are synced, never per request.
    pub(super) fn name(self) -> String {
        match self {
            Client::V4(a) => a.to_string(),
            Client::V6(net, prefix) => format!("{net}/{prefix}"),
            Client::Caller(id) => format!("caller:{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id)),
            Client::Unknown => "unknown".to_owned(),
            Client::Crowd => "crowd".to_owned(),
        }
    }
}

/// Kinds of [`Bucket`] a client is counted in (`0` is no client's).
const V4: u8 = 1;
const V6: u8 = 2;
const CALLER: u8 = 3;
const UNKNOWN: u8 = 4;
const CROWD: u8 = 5;

impl From<Client> for Bucket {
    fn from(client: Client) -> Self {
        let (kind, detail, bits) = match client {
            Client::V4(a) => (V4, 32, u128::from(u32::from(a))),
            Client::V6(net, prefix) => (V6, prefix, u128::from(net)),
            Client::Caller(id) => (CALLER, 0, u128::from_be_bytes(id)),
            Client::Unknown => (UNKNOWN, 0, 0),
            Client::Crowd => (CROWD, 0, 0),
        };
        Bucket { kind, detail, bits }
    }
}

impl Client {
    /// The client a rate limit's bucket counts: the inverse of `Bucket::from`.
    pub(super) fn counted_in(bucket: Bucket) -> Self {
        match bucket.kind {
            V4 => Client::V4(Ipv4Addr::from(u32::try_from(bucket.bits).unwrap_or_default())),
            V6 => Client::V6(Ipv6Addr::from(bucket.bits), bucket.detail),
            CALLER => Client::Caller(bucket.bits.to_be_bytes()),
            CROWD => Client::Crowd,
            _ => Client::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(ip: &str, prefix: u8) -> Client {
        Client::of(Some(ip.parse().unwrap()), prefix)
    }

    #[test]
    fn ipv6_addresses_in_one_slash_64_share_a_bucket() {
        assert_eq!(of("2001:db8:1:2:aaaa::1", 64), of("2001:db8:1:2:ffff:1:2:3", 64));
        assert_ne!(of("2001:db8:1:2::1", 64), of("2001:db8:1:3::1", 64), "the next /64 is another client");
        assert_eq!(of("2001:db8:1:2::1", 64), Client::V6("2001:db8:1:2::".parse().unwrap(), 64));
    }

    #[test]
    fn ipv6_prefix_is_configurable() {
        assert_eq!(of("2001:db8:1:2::1", 48), of("2001:db8:1:ffff::1", 48));
        assert_ne!(of("2001:db8:1::1", 128), of("2001:db8:1::2", 128), "/128 counts single addresses");
    }

    #[test]
    fn ipv4_counts_each_address_and_mapped_ipv6_is_ipv4() {
        assert_ne!(of("203.0.113.7", 64), of("203.0.113.8", 64));
        assert_eq!(of("::ffff:203.0.113.7", 64), of("203.0.113.7", 64));
    }

    #[test]
    fn address_less_requests_share_one_bucket_apart_from_any_address() {
        assert_eq!(Client::of(None, 64), Client::Unknown);
        assert_ne!(Client::Unknown.name(), of("0.0.0.0", 64).name());
        assert_ne!(Client::Unknown.name(), of("::", 64).name());
    }

    #[test]
    fn callers_are_buckets_of_their_own() {
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 16]);
        let caller = Client::caller(&id).unwrap();
        assert_eq!(caller.name(), format!("caller:{id}"));
        assert_ne!(Client::caller(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([8u8; 16])), Some(caller));
        assert_eq!(Client::caller("not base64!"), None);
        assert_eq!(Client::caller("AAAA"), None, "not a keyed hash's length");
    }

    #[test]
    fn every_client_is_counted_in_a_bucket_of_its_own() {
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 16]);
        let clients =
            [of("203.0.113.7", 64), of("2001:db8::1", 64), of("2001:db8::1", 48), Client::caller(&id).unwrap()];
        for client in clients.into_iter().chain([Client::Unknown, Client::Crowd]) {
            assert_eq!(Client::counted_in(Bucket::from(client)), client);
            assert_ne!(Bucket::from(client), Bucket::default(), "the only bucket of a budget is no client's");
        }
    }

    #[test]
    fn names_say_the_network() {
        assert_eq!(of("2001:db8::1", 64).name(), "2001:db8::/64");
        assert_eq!(of("203.0.113.7", 64).name(), "203.0.113.7");
    }
}
