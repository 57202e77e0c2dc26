//! IP networks (CIDR blocks) for an account's caller allow-list.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

/// A network: an address and a prefix length, the host bits cleared. A bare address is the
/// network of that one host (`/32`, `/128`), and is written back bare, so lists stored before
/// CIDRs were taken read the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an IP address or CIDR block: {0}")]
pub struct CidrError(pub String);

impl Cidr {
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, CidrError> {
        let bits = max_prefix(addr);
        if prefix > bits {
            return Err(CidrError(format!("{addr}/{prefix}")));
        }
        Ok(Cidr { addr: mask(addr, prefix), prefix })
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in this network. An IPv4 address seen as IPv6 (`::ffff:a.b.c.d`, as a
    /// dual-stack socket reports it) counts as that IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CidrError(s.to_owned());
        let s = s.trim();
        match s.split_once('/') {
            None => {
                let addr: IpAddr = s.parse().map_err(|_| bad())?;
                Cidr::new(addr, max_prefix(addr))
            }
            Some((a, p)) => {
                let addr: IpAddr = a.parse().map_err(|_| bad())?;
                // Digits only: `u8::from_str` would also take `+8`.
                if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                Cidr::new(addr, p.parse().map_err(|_| bad())?).map_err(|_| bad())
            }
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix == max_prefix(self.addr) {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

impl From<IpAddr> for Cidr {
    fn from(addr: IpAddr) -> Self {
        Cidr { addr, prefix: max_prefix(addr) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_block_holds_exactly_its_addresses() {
        let net: Cidr = "203.0.113.0/24".parse().unwrap();
        assert!(net.contains(ip("203.0.113.0")) && net.contains(ip("203.0.113.255")));
        assert!(!net.contains(ip("203.0.114.0")) && !net.contains(ip("203.0.112.255")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("203.0.113.1")) && !net.contains(ip("2001:db8::1")));
    }

    #[test]
    fn a_bare_address_is_one_host_and_is_written_back_bare() {
        let host: Cidr = "10.0.0.1".parse().unwrap();
        assert!(host.contains(ip("10.0.0.1")) && !host.contains(ip("10.0.0.2")));
        assert_eq!(host.to_string(), "10.0.0.1");
        assert_eq!("::1".parse::<Cidr>().unwrap().to_string(), "::1");
    }

    #[test]
    fn host_bits_are_cleared_and_the_block_written_canonically() {
        assert_eq!("10.1.2.3/8".parse::<Cidr>().unwrap().to_string(), "10.0.0.0/8");
        assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().to_string(), "0.0.0.0/0");
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("8.8.8.8")));
    }

    #[test]
    fn an_ipv4_caller_on_a_dual_stack_socket_matches_its_ipv4_block() {
        let net: Cidr = "192.0.2.0/24".parse().unwrap();
        assert!(net.contains(ip("::ffff:192.0.2.7")));
    }

    #[test]
    fn malformed_blocks_are_refused() {
        for bad in ["", "10.0.0.0/33", "::/129", "10.0.0/8", "10.0.0.0/", "10.0.0.0/+8", "host/8", "1.2.3.4/8/8"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}
