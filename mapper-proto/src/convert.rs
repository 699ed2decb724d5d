//! The identity model to and from its messages: [`Peer`] ⇄ [`pb::Peer`], [`Workload`] ⇄
//! [`pb::Workload`], [`Release`] ⇄ [`pb::HelmRelease`]. An empty `kind` on the wire is an unknown
//! kind; a workload's release rides beside it ([`pb::Peer::with_release`], [`pb::Peer::release`]),
//! never in the [`Workload`] read back; an unresolved end's reason travels as its label
//! (`no_pod_at_time`, …), and a label this build does not know reads as
//! [`UnresolvedReason::Other`], so an older CLI still reads a newer server's map.

use mapper_model::{Peer, Release, UnresolvedReason, Workload};

use crate::addr;
use crate::v1 as pb;

impl From<&Workload> for pb::Workload {
    fn from(w: &Workload) -> Self {
        pb::Workload {
            name: w.name.to_string(),
            namespace: w.namespace.to_string(),
            kind: w.kind().unwrap_or_default().to_owned(),
            release: None,
            labels: Vec::new(),
        }
    }
}

impl From<&Release> for pb::HelmRelease {
    fn from(r: &Release) -> Self {
        pb::HelmRelease { name: r.name.to_string(), namespace: r.namespace.to_string() }
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

    /// This peer with the Helm release its workload belongs to (kept only for a workload).
    pub fn with_release(mut self, release: Option<&Release>) -> Self {
        if let Some(pb::peer::Peer::Workload(w)) = &mut self.peer {
            w.release = release.map(pb::HelmRelease::from);
        }
        self
    }

    /// This peer with its workload's labels of the keys asked for (kept only for a workload),
    /// sorted by key.
    pub fn with_labels<'a>(mut self, labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        if let Some(pb::peer::Peer::Workload(w)) = &mut self.peer {
            w.labels =
                labels.into_iter().map(|(k, v)| pb::LabelPair { key: k.to_owned(), value: v.to_owned() }).collect();
            w.labels.sort_by(|a, b| a.key.cmp(&b.key));
        }
        self
    }

    /// The value of label `key` of this peer's workload, as the server sent it: `None` for
    /// any other peer, or when the workload's pods carry no such label (or it was not asked).
    pub fn label(&self, key: &str) -> Option<&str> {
        match &self.peer {
            Some(pb::peer::Peer::Workload(w)) => w.labels.iter().find(|l| l.key == key).map(|l| l.value.as_str()),
            _ => None,
        }
    }

    /// The Helm release of this peer's workload: `None` for any other peer, a workload in no
    /// release, or a release with no name.
    pub fn release(&self) -> Option<Release> {
        match &self.peer {
            Some(pb::peer::Peer::Workload(w)) => {
                let r = w.release.as_ref().filter(|r| !r.name.is_empty())?;
                Some(Release::new(r.name.as_str(), r.namespace.as_str()))
            }
            _ => None,
        }
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
    fn releases_ride_on_workloads_only_and_survive_the_encoding() {
        let release = Release::new("storefront", "platform");
        let workload = Peer::Workload(Workload::new("api", "shop", "Deployment"));
        let wire = pb::Peer::from(&workload).with_release(Some(&release));
        let bytes = prost::Message::encode_to_vec(&wire);
        let back = <pb::Peer as prost::Message>::decode(bytes.as_slice()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.release(), Some(release.clone()));
        assert_eq!(Peer::try_from(&back), Ok(workload.clone()), "the workload itself is unchanged");
        assert_eq!(pb::Peer::from(&workload).release(), None, "none unless given");
        assert_eq!(pb::Peer::from(&workload).with_release(None).release(), None);
        assert_eq!(pb::Peer::from(&Peer::ApiServer).with_release(Some(&release)).release(), None);
        let unnamed = pb::Peer::from(&workload).with_release(Some(&Release::new("", "platform")));
        assert_eq!(unnamed.release(), None, "a release with no name is none");
    }

    /// What a CLI built before releases existed decodes: the same workload, the release skipped.
    #[test]
    fn a_message_without_the_release_field_reads_the_same_workload() {
        #[derive(Clone, PartialEq, prost::Message)]
        struct OldWorkload {
            #[prost(string, tag = "1")]
            name: String,
            #[prost(string, tag = "2")]
            namespace: String,
            #[prost(string, tag = "3")]
            kind: String,
        }
        let new = pb::Workload::from(&Workload::new("api", "shop", "Deployment"));
        let with_release = pb::Workload { release: Some((&Release::new("storefront", "platform")).into()), ..new };
        let old = <OldWorkload as prost::Message>::decode(prost::Message::encode_to_vec(&with_release).as_slice())
            .unwrap_or_else(|e| panic!("an older reader decodes it: {e}"));
        assert_eq!((old.name.as_str(), old.namespace.as_str(), old.kind.as_str()), ("api", "shop", "Deployment"));
        let from_old = <pb::Workload as prost::Message>::decode(prost::Message::encode_to_vec(&old).as_slice())
            .unwrap_or_else(|e| panic!("a newer reader decodes an older sender's: {e}"));
        assert_eq!(from_old.release, None);
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
