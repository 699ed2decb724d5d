//! mapper's wire protocol, generated from `proto/mapper/v1/mapper.proto`:
//! `Ingest` (agents report batches of flows) and `Query` (the CLI reads edges); [`addr`], how
//! the messages carry IP addresses; and [`convert`], the conversions between the identity model
//! (`mapper-model`) and its messages. No other logic lives here.

#![allow(missing_debug_implementations, clippy::unwrap_used, unreachable_pub)]
#![forbid(unsafe_code)]

/// `mapper.v1`.
pub mod v1 {
    tonic::include_proto!("mapper.v1");
}

pub mod convert;

/// IP addresses in the messages: 4 bytes (IPv4) or 16 (IPv6), empty for "unknown". An
/// IPv4-mapped IPv6 address is read as the IPv4 address it maps.
pub mod addr {
    use std::net::{IpAddr, Ipv6Addr};

    /// An address to the wire.
    pub fn to_bytes(ip: IpAddr) -> Vec<u8> {
        match ip {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        }
    }

    /// An address from the wire; `Ok(None)` when empty, an error naming the length otherwise.
    pub fn from_bytes(b: &[u8]) -> Result<Option<IpAddr>, String> {
        if b.is_empty() {
            return Ok(None);
        }
        if let Ok(v4) = <[u8; 4]>::try_from(b) {
            return Ok(Some(IpAddr::from(v4)));
        }
        if let Ok(v6) = <[u8; 16]>::try_from(b) {
            return Ok(Some(Ipv6Addr::from(v6).to_canonical()));
        }
        Err(format!("{} bytes is not an IPv4 (4) or IPv6 (16) address", b.len()))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn round_trips_and_reads_v4_mapped_as_v4() {
            for ip in ["10.0.0.9", "fd00::1"] {
                let ip: IpAddr = ip.parse().expect("ip");
                assert_eq!(from_bytes(&to_bytes(ip)), Ok(Some(ip)));
            }
            let mut b = vec![0u8; 16];
            b[10] = 0xff;
            b[11] = 0xff;
            b[12..].copy_from_slice(&[10, 0, 0, 9]);
            assert_eq!(from_bytes(&b), Ok(Some("10.0.0.9".parse().expect("ip"))));
            assert_eq!(from_bytes(&[]), Ok(None));
            assert_eq!(from_bytes(&[1, 2, 3]), Err("3 bytes is not an IPv4 (4) or IPv6 (16) address".to_owned()));
        }
    }
}
