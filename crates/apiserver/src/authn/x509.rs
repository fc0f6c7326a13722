//! x509 client-certificate authentication: a verified leaf's subject CN is the user, each O a
//! group (upstream's `CommonNameUserConversion`), read with a small DER reader. Start at
//! [`X509Authenticator`] and [`subject_identity`].
//!
//! The TLS layer has already verified the chain against `--client-ca-file` (and refused a
//! foreign-CA or expired certificate in the handshake); this module only reads the subject of
//! the leaf it was given.

use async_trait::async_trait;

use super::{Answer, Authenticator, CertIdentity, Credentials, UserInfo};

/// Maps a connection's verified client certificate to a user: CN = name, O = groups. A
/// certificate with an empty CN authenticates nobody (upstream answers "not mine", too).
pub struct X509Authenticator;

#[async_trait]
impl Authenticator for X509Authenticator {
    async fn authenticate(&self, creds: &Credentials<'_>) -> Answer {
        match creds.client_cert {
            Some(c) if !c.common_name.is_empty() => Answer::User(UserInfo {
                name: c.common_name.clone(),
                groups: c.organizations.clone(),
                ..UserInfo::default()
            }),
            _ => Answer::NotMine,
        }
    }
}

/// Why a certificate's subject could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed certificate: {0}")]
pub struct BadCertificate(&'static str);

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_OID: u8 = 0x06;
const TAG_VERSION: u8 = 0xA0;
/// id-at-commonName (2.5.4.3) and id-at-organizationName (2.5.4.10), DER-encoded.
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
const OID_O: &[u8] = &[0x55, 0x04, 0x0A];

/// One DER element: `(tag, content, rest)`.
fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), BadCertificate> {
    let (&tag, rest) = input.split_first().ok_or(BadCertificate("truncated"))?;
    let (&first, rest) = rest.split_first().ok_or(BadCertificate("truncated"))?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(BadCertificate("bad length"));
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(BadCertificate("truncated"));
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

fn expect(input: &[u8], want: u8) -> Result<(&[u8], &[u8]), BadCertificate> {
    let (tag, content, rest) = tlv(input)?;
    if tag != want {
        return Err(BadCertificate("unexpected element"));
    }
    Ok((content, rest))
}

/// The subject's CN and O values of a DER certificate (Go's `pkix.Name` semantics: the last
/// CN wins, every O in order).
pub fn subject_identity(der: &[u8]) -> Result<CertIdentity, BadCertificate> {
    let (cert, _) = expect(der, TAG_SEQUENCE)?;
    let (mut tbs, _) = expect(cert, TAG_SEQUENCE)?;
    if tbs.first() == Some(&TAG_VERSION) {
        tbs = tlv(tbs)?.2;
    }
    // serialNumber, signature, issuer, validity; then the subject.
    for _ in 0..4 {
        tbs = tlv(tbs)?.2;
    }
    let (mut rdns, _) = expect(tbs, TAG_SEQUENCE)?;
    let mut id = CertIdentity::default();
    while !rdns.is_empty() {
        let (mut set, rest) = expect(rdns, TAG_SET)?;
        rdns = rest;
        while !set.is_empty() {
            let (atv, rest) = expect(set, TAG_SEQUENCE)?;
            set = rest;
            let (oid, value) = expect(atv, TAG_OID)?;
            let (tag, text, _) = tlv(value)?;
            let Some(text) = string_value(tag, text) else {
                continue;
            };
            if oid == OID_CN {
                id.common_name = text;
            } else if oid == OID_O {
                id.organizations.push(text);
            }
        }
    }
    Ok(id)
}

/// UTF8String, PrintableString, IA5String and T61String (read as Latin-1); other string types
/// are skipped.
fn string_value(tag: u8, bytes: &[u8]) -> Option<String> {
    match tag {
        0x0C | 0x13 | 0x16 => String::from_utf8(bytes.to_vec()).ok(),
        0x14 => Some(bytes.iter().map(|&b| char::from(b)).collect()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: Option<&str>, orgs: &[&str]) -> Vec<u8> {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        // rcgen keeps one value per attribute type: a second O goes in as a custom type with
        // O's OID (2.5.4.10), which encodes the same.
        for (i, o) in orgs.iter().enumerate() {
            let ty = match i {
                0 => rcgen::DnType::OrganizationName,
                _ => rcgen::DnType::CustomDnType(vec![2, 5, 4, 10]),
            };
            p.distinguished_name.push(ty, *o);
        }
        if let Some(cn) = cn {
            p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_cn_and_every_o() {
        let id =
            subject_identity(&cert(Some("system:node:n1"), &["system:nodes", "zone-a"])).unwrap();
        assert_eq!(id.common_name, "system:node:n1");
        assert_eq!(id.organizations, vec!["system:nodes", "zone-a"]);
    }

    #[test]
    fn garbage_and_truncation_are_errors() {
        assert!(subject_identity(b"not a certificate").is_err());
        let der = cert(Some("alice"), &[]);
        assert!(subject_identity(&der[..der.len() / 2]).is_err());
        assert!(subject_identity(&[]).is_err());
    }

    #[tokio::test]
    async fn empty_cn_authenticates_nobody() {
        let id = subject_identity(&cert(None, &["system:masters"])).unwrap();
        let creds = Credentials {
            bearer: None,
            client_cert: Some(&id),
            now: std::time::SystemTime::UNIX_EPOCH,
        };
        assert_eq!(
            X509Authenticator.authenticate(&creds).await,
            Answer::NotMine
        );
        let id = subject_identity(&cert(Some("alice"), &["devs"])).unwrap();
        let creds = Credentials {
            client_cert: Some(&id),
            ..creds
        };
        let Answer::User(u) = X509Authenticator.authenticate(&creds).await else {
            panic!("alice not authenticated");
        };
        assert_eq!(
            (u.name.as_str(), u.groups),
            ("alice", vec!["devs".to_string()])
        );
    }
}
