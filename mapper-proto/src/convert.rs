//! The identity model to and from its messages: [`Peer`] ⇄ [`pb::Peer`], [`Workload`] ⇄
//! [`pb::Workload`]. An empty `kind` on the wire is an unknown kind; an unresolved end's reason
//! travels as its label (`no_pod_at_time`, …), and a label this build does not know reads as
//! [`UnresolvedReason::Other`], so an older CLI still reads a newer server's map.

use mapper_model::{Peer, UnresolvedReason, Workload};

use crate::addr;
use crate::v1 as pb;

impl From<&Workload> for pb::Workload {
    fn from(w: &Workload) -> Self {
        pb::Workload {
            name: w.name.to_string(),
            namespace: w.namespace.to_string(),
            kind: w.kind().unwrap_or_default().to_owned(),
        }
    }
}

impl From<&pb::Workload> for Workload {
    fn from(w: &pb::Workload) -> Self {
        Workload::new(w.name.as_str(), w.namespace.as_str(), w.kind.as_str())
    }
}

/// The peer on the wire, with no DNS names (see [`pb::Peer::with_dns_names`]).
impl From<&Peer> for pb::Peer {
    fn from(p: &Peer) -> Self {
        use pb::peer::Peer as P;
        let peer = match p {
            Peer::Workload(w) => P::Workload(w.into()),
            Peer::Service { name, namespace } => {
                P::Service(pb::ServiceRef { name: name.to_string(), namespace: namespace.to_string() })
            }
            Peer::ApiServer => P::ApiServer(pb::ApiServer {}),
            Peer::External { ip } => P::External(pb::External { ip: addr::to_bytes(*ip), dns_names: Vec::new() }),
            Peer::Unresolved { ip, reason } => {
                P::Unresolved(pb::Unresolved { ip: addr::to_bytes(*ip), reason: reason.as_str().to_owned() })
            }
            Peer::Node { name } => P::Node(pb::Node { name: name.to_string() }),
        };
        pb::Peer { peer: Some(peer) }
    }
}

impl pb::Peer {
    /// This peer with the DNS names clients resolved to it (kept only for an outside address).
    pub fn with_dns_names(mut self, names: Vec<String>) -> Self {
        if let Some(pb::peer::Peer::External(e)) = &mut self.peer {
            e.dns_names = names;
        }
        self
    }

    /// The DNS names clients resolved to this peer (an outside address's; empty otherwise).
    pub fn dns_names(&self) -> &[String] {
        match &self.peer {
            Some(pb::peer::Peer::External(e)) => &e.dns_names,
            _ => &[],
        }
    }
}

/// Why a [`pb::Peer`] is no [`Peer`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// The message has no peer.
    #[error("missing")]
    Missing,
    /// An address field does not hold an address.
    #[error("{field}: {problem}")]
    Address {
        /// `external.ip` or `unresolved.ip`.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

impl TryFrom<&pb::Peer> for Peer {
    type Error = PeerError;

    fn try_from(p: &pb::Peer) -> Result<Self, PeerError> {
        use pb::peer::Peer as P;
        let ip = |field: &'static str, bytes: &[u8]| match addr::from_bytes(bytes) {
            Ok(Some(ip)) => Ok(ip),
            Ok(None) => Err(PeerError::Address { field, problem: "missing".to_owned() }),
            Err(problem) => Err(PeerError::Address { field, problem }),
        };
        Ok(match p.peer.as_ref().ok_or(PeerError::Missing)? {
            P::Workload(w) => Peer::Workload(w.into()),
            P::Service(s) => Peer::Service { name: s.name.as_str().into(), namespace: s.namespace.as_str().into() },
            P::ApiServer(_) => Peer::ApiServer,
            P::External(e) => Peer::External { ip: ip("external.ip", &e.ip)? },
            P::Unresolved(u) => {
                Peer::Unresolved { ip: ip("unresolved.ip", &u.ip)?, reason: UnresolvedReason::from_label(&u.reason) }
            }
            P::Node(n) => Peer::Node { name: n.name.as_str().into() },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    #[test]
    fn every_peer_round_trips() {
        let ip: IpAddr = "10.244.1.7".parse().unwrap_or_else(|e| panic!("{e}"));
        let peers = [
            Peer::Workload(Workload::new("ledger", "team3", "StatefulSet")),
            Peer::Workload(Workload::without_kind("ledger", "team3")),
            Peer::Service { name: "s".into(), namespace: "n".into() },
            Peer::ApiServer,
            Peer::External { ip },
            Peer::Unresolved { ip, reason: UnresolvedReason::UnknownClusterIp },
            Peer::Node { name: "node-1".into() },
        ];
        for peer in peers {
            let wire = pb::Peer::from(&peer);
            assert_eq!(Peer::try_from(&wire), Ok(peer.clone()), "{peer:?}");
        }
    }

    #[test]
    fn dns_names_ride_on_outside_addresses_only_and_bad_messages_are_named() {
        let ip: IpAddr = "203.0.113.9".parse().unwrap_or_else(|e| panic!("{e}"));
        let names = vec!["api.example.com".to_owned()];
        assert_eq!(pb::Peer::from(&Peer::External { ip }).with_dns_names(names.clone()).dns_names(), names);
        assert!(pb::Peer::from(&Peer::ApiServer).with_dns_names(names).dns_names().is_empty());
        assert_eq!(Peer::try_from(&pb::Peer { peer: None }), Err(PeerError::Missing));
        let bad =
            pb::Peer { peer: Some(pb::peer::Peer::External(pb::External { ip: vec![1, 2, 3], dns_names: vec![] })) };
        assert_eq!(
            Peer::try_from(&bad).map_err(|e| e.to_string()),
            Err("external.ip: 3 bytes is not an IPv4 (4) or IPv6 (16) address".to_owned())
        );
        let newer = pb::Peer {
            peer: Some(pb::peer::Peer::Unresolved(pb::Unresolved {
                ip: vec![10, 0, 0, 1],
                reason: "brand_new".into(),
            })),
        };
        assert!(matches!(Peer::try_from(&newer), Ok(Peer::Unresolved { reason: UnresolvedReason::Other, .. })));
    }
}
