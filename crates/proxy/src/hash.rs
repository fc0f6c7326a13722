//! Chain and set names with upstream kube-proxy's hashes, for nftables and iptables.
//! Start at [`nft_service_base`] and [`ipt_service_chain`].

use crate::model::{Endpoint, ServicePortName};
use sha2::{Digest, Sha256};

fn b32_sha256(input: &str) -> String {
    let digest = Sha256::digest(input.as_bytes());
    data_encoding::BASE32.encode(&digest)
}

/// `<HASH8>-<name>`: the first 8 characters of base32(sha256(name)) then the name
/// (nftables proxier.go `hashAndTruncate`; names here never reach the length limit).
fn hash_and_name(name: &str) -> String {
    let hash = b32_sha256(name);
    let mut out = String::with_capacity(name.len() + 9);
    out.push_str(&hash[..8]);
    out.push('-');
    out.push_str(name);
    out
}

/// `ns/svc/proto/portName` (nftables proxier.go `servicePortChainNameBase`, unhashed).
fn nft_plain(name: &ServicePortName) -> String {
    format!(
        "{}/{}/{}/{}",
        name.service.namespace,
        name.service.name,
        name.protocol.lower(),
        name.port
    )
}

/// `<HASH8>-ns/svc/proto/portName`, the base of `service-`, `local-`, `external-` chains.
pub fn nft_service_base(name: &ServicePortName) -> String {
    hash_and_name(&nft_plain(name))
}

/// `<HASH8>-ns/svc/proto/portName__<ip>/<port>`, the base of `endpoint-` chains and
/// `affinity-` sets (nftables proxier.go `servicePortEndpointChainNameBase`).
pub fn nft_endpoint_base(name: &ServicePortName, ep: &Endpoint) -> String {
    hash_and_name(&format!("{}__{}/{}", nft_plain(name), ep.ip, ep.port))
}

/// First 16 characters of base32(sha256(`ns/svc[:port]` + proto)) (iptables proxier.go
/// `portProtoHash`).
fn ipt_hash(name: &ServicePortName, extra: &str) -> String {
    let mut input = name.to_string();
    input.push_str(name.protocol.lower());
    input.push_str(extra);
    let mut h = b32_sha256(&input);
    h.truncate(16);
    h
}

/// `KUBE-SVC-<HASH16>`.
pub fn ipt_service_chain(name: &ServicePortName) -> String {
    format!("KUBE-SVC-{}", ipt_hash(name, ""))
}

/// `KUBE-SVL-<HASH16>` (Local internal traffic policy chain).
pub fn ipt_local_chain(name: &ServicePortName) -> String {
    format!("KUBE-SVL-{}", ipt_hash(name, ""))
}

/// `KUBE-EXT-<HASH16>` (external destinations: NodePort, external and load-balancer IPs).
pub fn ipt_external_chain(name: &ServicePortName) -> String {
    format!("KUBE-EXT-{}", ipt_hash(name, ""))
}

/// `KUBE-FW-<HASH16>` (`loadBalancerSourceRanges` firewall).
pub fn ipt_firewall_chain(name: &ServicePortName) -> String {
    format!("KUBE-FW-{}", ipt_hash(name, ""))
}

/// `KUBE-SEP-<HASH16>` of `ns/svc[:port]` + proto + `IP:port`
/// (iptables proxier.go `servicePortEndpointChainName`).
pub fn ipt_endpoint_chain(name: &ServicePortName, ep: &Endpoint) -> String {
    format!("KUBE-SEP-{}", ipt_hash(name, &ep.addr_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    fn ep(ip: &str, port: u16) -> Endpoint {
        Endpoint {
            ip: ip.parse().expect("ip"),
            port,
            ready: true,
            serving: true,
            terminating: false,
            node_name: None,
            zone: None,
            zone_hints: None,
        }
    }

    /// Sample hashes from upstream's TestOverallNFTablesRules (verified in the reference).
    #[test]
    fn nft_hashes_match_upstream() {
        let svc1 = ServicePortName::new("ns1", "svc1", "p80", Protocol::Tcp);
        let svc4 = ServicePortName::new("ns4", "svc4", "p80", Protocol::Tcp);
        assert_eq!(nft_service_base(&svc1), "ULMVA6XW-ns1/svc1/tcp/p80");
        assert_eq!(nft_service_base(&svc4), "LAUZTJTB-ns4/svc4/tcp/p80");
        assert_eq!(
            nft_endpoint_base(&svc4, &ep("10.180.0.4", 80)),
            "UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80"
        );
        assert_eq!(
            nft_endpoint_base(&svc4, &ep("10.180.0.5", 80)),
            "5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80"
        );
        assert_eq!(
            nft_endpoint_base(&svc1, &ep("10.180.0.1", 80)),
            "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
        );
    }

    /// Sample hashes from upstream's TestOverallIPTablesRules (verified in the reference).
    #[test]
    fn iptables_hashes_match_upstream() {
        let svc1 = ServicePortName::new("ns1", "svc1", "p80", Protocol::Tcp);
        let svc4 = ServicePortName::new("ns4", "svc4", "p80", Protocol::Tcp);
        assert_eq!(ipt_service_chain(&svc1), "KUBE-SVC-XPGD46QRK7WJZT7O");
        assert_eq!(ipt_service_chain(&svc4), "KUBE-SVC-4SW47YFZTEDKD3PK");
        assert_eq!(
            ipt_endpoint_chain(&svc4, &ep("10.180.0.4", 80)),
            "KUBE-SEP-UKSFD7AGPMPPLUHC"
        );
        assert_eq!(
            ipt_endpoint_chain(&svc4, &ep("10.180.0.5", 80)),
            "KUBE-SEP-C6EBXVWJJZMIWKLZ"
        );
    }
}
