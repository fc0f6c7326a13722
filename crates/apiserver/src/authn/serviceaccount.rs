//! ServiceAccount tokens as upstream's bound tokens: [`TokenIssuer`] signs the claims a
//! TokenRequest asks for, [`Validator`] checks a token's signature, issuer, audience and times
//! (pure, `now` passed in), and [`ServiceAccountTokens`] (the authenticator) also checks that
//! the ServiceAccount and a bound Pod still exist with the uids in the token.
//! Start at [`Validator::validate`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use serde_json::Value;
use store::SharedStore;

use super::jwt::{self, Claims, KeyError, KubernetesClaims, Ref, SigningKey, VerifyingKey};
use super::{Answer, Authenticator, Credentials, UserInfo};
use crate::authz::rbac::service_account_user;

/// kubeadm's `--service-account-issuer`.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The group of every ServiceAccount, and the prefix of its namespace's group.
pub const SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
/// User extra keys upstream sets from a token (k8s.io/apiserver serviceaccount/util.go).
pub const EXTRA_CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";
pub const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
pub const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";
pub const EXTRA_NODE_NAME: &str = "authentication.kubernetes.io/node-name";
pub const EXTRA_NODE_UID: &str = "authentication.kubernetes.io/node-uid";

/// Why the ServiceAccount key flags could not be used (a start-up error).
#[derive(Debug, thiserror::Error)]
pub enum SaKeyError {
    #[error("reading {flag} {path}: {error}")]
    Read {
        flag: &'static str,
        path: String,
        error: std::io::Error,
    },
    #[error("{flag} {path}: {error}")]
    Key {
        flag: &'static str,
        path: String,
        error: KeyError,
    },
}

/// The ServiceAccount token flags, as kube-apiserver names them.
#[derive(Clone, Debug, Default)]
pub struct SaFlags {
    pub signing_key_file: Option<PathBuf>,
    pub key_files: Vec<PathBuf>,
    pub issuer: String,
    pub api_audiences: Vec<String>,
}

fn read(flag: &'static str, path: &PathBuf) -> Result<String, SaKeyError> {
    std::fs::read_to_string(path).map_err(|error| SaKeyError::Read {
        flag,
        path: path.display().to_string(),
        error,
    })
}

/// Load the keys: the signing key (if any) and every verifying key; the signing key's public
/// half always verifies (upstream requires it among `--service-account-key-file`, kubeadm
/// passes `sa.pub`; accepting it implicitly avoids a start-up trap).
pub fn load(flags: &SaFlags) -> Result<(Option<TokenIssuer>, Option<Validator>), SaKeyError> {
    let issuer = if flags.issuer.is_empty() {
        DEFAULT_ISSUER.to_string()
    } else {
        flags.issuer.clone()
    };
    let audiences = if flags.api_audiences.is_empty() {
        vec![issuer.clone()]
    } else {
        flags.api_audiences.clone()
    };
    let mut keys = Vec::new();
    for path in &flags.key_files {
        const FLAG: &str = "--service-account-key-file";
        let found =
            VerifyingKey::all_from_pem(&read(FLAG, path)?).map_err(|error| SaKeyError::Key {
                flag: FLAG,
                path: path.display().to_string(),
                error,
            })?;
        keys.extend(found);
    }
    let signer = match &flags.signing_key_file {
        Some(path) => {
            const FLAG: &str = "--service-account-signing-key-file";
            let key =
                SigningKey::from_pem(&read(FLAG, path)?).map_err(|error| SaKeyError::Key {
                    flag: FLAG,
                    path: path.display().to_string(),
                    error,
                })?;
            if !keys.contains(key.public()) {
                keys.push(key.public().clone());
            }
            Some(TokenIssuer {
                key,
                issuer: issuer.clone(),
                audiences: audiences.clone(),
            })
        }
        None => None,
    };
    let validator = (!keys.is_empty()).then_some(Validator {
        issuer,
        audiences,
        keys,
    });
    Ok((signer, validator))
}

/// What a valid token names: the ServiceAccount and what it is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSubject {
    pub namespace: String,
    pub service_account: Ref,
    pub pod: Option<Ref>,
    pub node: Option<Ref>,
    pub jti: String,
}

impl TokenSubject {
    /// The user upstream's ServiceAccountInfo.UserInfo makes of it.
    pub fn user(&self) -> UserInfo {
        let mut extra = BTreeMap::new();
        let mut put = |k: &str, v: &str| {
            if !v.is_empty() {
                extra.insert(k.to_string(), vec![v.to_string()]);
            }
        };
        if let Some(p) = &self.pod {
            put(EXTRA_POD_NAME, &p.name);
            put(EXTRA_POD_UID, &p.uid);
        }
        if let Some(n) = &self.node {
            put(EXTRA_NODE_NAME, &n.name);
            put(EXTRA_NODE_UID, &n.uid);
        }
        if !self.jti.is_empty() {
            put(EXTRA_CREDENTIAL_ID, &format!("JTI={}", self.jti));
        }
        UserInfo {
            name: service_account_user(&self.namespace, &self.service_account.name),
            uid: self.service_account.uid.clone(),
            groups: vec![
                SERVICE_ACCOUNTS_GROUP.to_string(),
                format!("{SERVICE_ACCOUNTS_GROUP}:{}", self.namespace),
            ],
            extra,
        }
    }
}

/// Checks a token's signature, issuer, audience and times (upstream's jwtTokenAuthenticator
/// and the bound-token claims validator, without the store look-ups).
#[derive(Clone, Debug)]
pub struct Validator {
    pub issuer: String,
    pub audiences: Vec<String>,
    keys: Vec<VerifyingKey>,
}

impl Validator {
    /// `Ok(None)`: not a token of this issuer (not a JWT, or another `iss`); `Err`: this
    /// issuer's token, refused.
    pub fn validate(&self, token: &str, now: i64) -> Result<Option<TokenSubject>, String> {
        match jwt::peek_claims(token) {
            Ok(c) if c.iss == self.issuer => {}
            _ => return Ok(None),
        }
        let claims = jwt::verify(token, &self.keys).map_err(|e| e.to_string())?;
        if claims.iss != self.issuer {
            return Err(format!("token issuer {:?} is invalid", claims.iss));
        }
        if !claims.aud.iter().any(|a| self.audiences.contains(a)) {
            return Err(format!(
                "token audiences {:?} is invalid for the target audiences {:?}",
                claims.aud, self.audiences
            ));
        }
        jwt::check_times(&claims, now).map_err(|e| e.to_string())?;
        let Some(k) = claims.kubernetes else {
            return Err("service account token claims missing kubernetes.io".into());
        };
        let expected_sub = service_account_user(&k.namespace, &k.serviceaccount.name);
        if k.namespace.is_empty() || k.serviceaccount.name.is_empty() || claims.sub != expected_sub
        {
            return Err(format!(
                "service account token subject {:?} is invalid",
                claims.sub
            ));
        }
        Ok(Some(TokenSubject {
            namespace: k.namespace,
            service_account: k.serviceaccount,
            pod: k.pod,
            node: k.node,
            jti: claims.jti,
        }))
    }
}

/// Signs TokenRequests (`--service-account-signing-key-file`, `--service-account-issuer`,
/// `--api-audiences`).
#[derive(Debug)]
pub struct TokenIssuer {
    key: SigningKey,
    pub issuer: String,
    pub audiences: Vec<String>,
}

/// What a token is issued for.
#[derive(Clone, Debug, Default)]
pub struct Grant {
    pub namespace: String,
    pub service_account: Ref,
    pub pod: Option<Ref>,
    pub node: Option<Ref>,
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
    pub jti: String,
}

impl TokenIssuer {
    /// The signed token of `grant`, issued at `now` (Unix seconds): iat = nbf = now, exp =
    /// now + expirationSeconds, as upstream's bound token claims.
    pub fn issue(&self, grant: &Grant, now: i64) -> Result<String, jwt::JwtError> {
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: service_account_user(&grant.namespace, &grant.service_account.name),
            aud: grant.audiences.clone(),
            exp: Some(now + grant.expiration_seconds),
            iat: Some(now),
            nbf: Some(now),
            jti: grant.jti.clone(),
            kubernetes: Some(KubernetesClaims {
                namespace: grant.namespace.clone(),
                serviceaccount: grant.service_account.clone(),
                pod: grant.pod.clone(),
                node: grant.node.clone(),
            }),
        };
        self.key.sign(&claims)
    }
}

/// The ServiceAccount token authenticator: [`Validator`] plus the existence checks against the
/// store (upstream's legacy getter checks).
pub struct ServiceAccountTokens {
    pub validator: Validator,
    pub store: SharedStore,
}

impl ServiceAccountTokens {
    /// The stored object `plural/ns/name` (`None` when absent or unreadable).
    async fn stored(&self, plural: &str, ns: &str, name: &str) -> Option<Value> {
        let res = api::resources::by_plural("", plural)?;
        let key = crate::objects::key(res, Some(ns), name);
        let kv = self.store.get(&key).await.ok()??;
        crate::objects::decode(&kv).ok()
    }

    /// The existence checks: the ServiceAccount (and a bound Pod) exists with the token's uid
    /// and was not deleted more than the leeway ago.
    async fn still_valid(&self, s: &TokenSubject, now: i64) -> Result<(), String> {
        let ns = &s.namespace;
        let sa = &s.service_account;
        let Some(obj) = self.stored("serviceaccounts", ns, &sa.name).await else {
            return Err(format!("serviceaccounts \"{}\" not found", sa.name));
        };
        check_object("service account", ns, sa, &obj, now)?;
        if let Some(pod) = &s.pod {
            let Some(obj) = self.stored("pods", ns, &pod.name).await else {
                return Err(format!("pods \"{}\" not found", pod.name));
            };
            check_object("pod", ns, pod, &obj, now)?;
        }
        Ok(())
    }
}

/// Upstream's validator check of one referenced object: deleted before `now - leeway`, or a
/// different uid (deleted and recreated), refuses the token.
fn check_object(what: &str, ns: &str, r: &Ref, obj: &Value, now: i64) -> Result<(), String> {
    let meta = &obj["metadata"];
    let deleted = meta["deletionTimestamp"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|t| t.timestamp() < now - jwt::LEEWAY_SECONDS);
    if deleted {
        return Err(format!("{what} {ns}/{} has been deleted", r.name));
    }
    let uid = meta["uid"].as_str().unwrap_or_default();
    if uid != r.uid {
        return Err(format!(
            "{what} UID ({uid}) does not match claim ({})",
            r.uid
        ));
    }
    Ok(())
}

#[async_trait]
impl Authenticator for ServiceAccountTokens {
    async fn authenticate(&self, creds: &Credentials<'_>) -> Answer {
        let Some(token) = creds.bearer else {
            return Answer::NotMine;
        };
        let now = unix_seconds(creds.now);
        let subject = match self.validator.validate(token, now) {
            Ok(Some(s)) => s,
            Ok(None) => return Answer::NotMine,
            Err(why) => return Answer::Invalid(why),
        };
        match self.still_valid(&subject, now).await {
            Ok(()) => Answer::User(subject.user()),
            Err(why) => Answer::Invalid(why),
        }
    }
}

/// Seconds since the Unix epoch (negative before it).
pub fn unix_seconds(t: std::time::SystemTime) -> i64 {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer_and_validator() -> (TokenIssuer, Validator) {
        let (key, _) = SigningKey::generate().unwrap();
        let v = Validator {
            issuer: DEFAULT_ISSUER.into(),
            audiences: vec![DEFAULT_ISSUER.into()],
            keys: vec![key.public().clone()],
        };
        let i = TokenIssuer {
            key,
            issuer: DEFAULT_ISSUER.into(),
            audiences: vec![DEFAULT_ISSUER.into()],
        };
        (i, v)
    }

    fn grant() -> Grant {
        Grant {
            namespace: "team".into(),
            service_account: Ref {
                name: "app".into(),
                uid: "sa-uid".into(),
            },
            pod: Some(Ref {
                name: "web-0".into(),
                uid: "pod-uid".into(),
            }),
            node: Some(Ref {
                name: "node-a".into(),
                uid: String::new(),
            }),
            audiences: vec![DEFAULT_ISSUER.into()],
            expiration_seconds: 3600,
            jti: "jti-1".into(),
        }
    }

    #[test]
    fn an_issued_token_names_the_service_account_as_upstream() {
        let (i, v) = issuer_and_validator();
        let token = i.issue(&grant(), 10_000).unwrap();
        let s = v.validate(&token, 10_001).unwrap().unwrap();
        let u = s.user();
        assert_eq!(u.name, "system:serviceaccount:team:app");
        assert_eq!(u.uid, "sa-uid");
        assert_eq!(
            u.groups,
            vec!["system:serviceaccounts", "system:serviceaccounts:team"]
        );
        assert_eq!(u.extra[EXTRA_CREDENTIAL_ID], vec!["JTI=jti-1"]);
        assert_eq!(u.extra[EXTRA_POD_NAME], vec!["web-0"]);
        assert_eq!(u.extra[EXTRA_POD_UID], vec!["pod-uid"]);
        assert_eq!(u.extra[EXTRA_NODE_NAME], vec!["node-a"]);
        assert!(!u.extra.contains_key(EXTRA_NODE_UID));
        let c = jwt::peek_claims(&token).unwrap();
        assert_eq!(
            (c.iat, c.nbf, c.exp),
            (Some(10_000), Some(10_000), Some(13_600))
        );
    }

    #[test]
    fn expired_future_foreign_and_wrong_audience_tokens_are_refused() {
        let (i, v) = issuer_and_validator();
        let token = i.issue(&grant(), 10_000).unwrap();
        assert_eq!(
            v.validate(&token, 13_600 + jwt::LEEWAY_SECONDS + 1),
            Err("service account token has expired".into())
        );
        assert_eq!(
            v.validate(&token, 10_000 - jwt::LEEWAY_SECONDS - 1),
            Err("service account token is not valid yet".into())
        );
        let other_aud = Grant {
            audiences: vec!["vault".into()],
            ..grant()
        };
        let t = i.issue(&other_aud, 10_000).unwrap();
        assert!(
            v.validate(&t, 10_000)
                .unwrap_err()
                .contains("token audiences")
        );
        // Another issuer's token is not this authenticator's at all.
        let foreign = TokenIssuer {
            issuer: "https://elsewhere".into(),
            ..issuer_and_validator().0
        };
        assert_eq!(
            v.validate(&foreign.issue(&grant(), 10_000).unwrap(), 10_000),
            Ok(None)
        );
        // The right issuer signed with another key: refused.
        let (other, _) = issuer_and_validator();
        assert_eq!(
            v.validate(&other.issue(&grant(), 10_000).unwrap(), 10_000),
            Err("error in cryptographic primitive".into())
        );
        assert_eq!(v.validate("not-a-jwt", 10_000), Ok(None));
    }

    #[test]
    fn a_recreated_or_deleted_object_refuses_the_token() {
        let r = Ref {
            name: "app".into(),
            uid: "u1".into(),
        };
        let obj = |uid: &str, deleted: Option<&str>| serde_json::json!({"metadata": {"uid": uid, "deletionTimestamp": deleted}});
        assert_eq!(
            check_object("service account", "team", &r, &obj("u1", None), 0),
            Ok(())
        );
        assert_eq!(
            check_object("service account", "team", &r, &obj("u2", None), 0),
            Err("service account UID (u2) does not match claim (u1)".into())
        );
        let at = "2026-01-01T00:00:00Z";
        let t = chrono::DateTime::parse_from_rfc3339(at)
            .unwrap()
            .timestamp();
        assert_eq!(
            check_object("pod", "team", &r, &obj("u1", Some(at)), t + 60),
            Ok(())
        );
        assert_eq!(
            check_object("pod", "team", &r, &obj("u1", Some(at)), t + 61),
            Err("pod team/app has been deleted".into())
        );
    }
}
