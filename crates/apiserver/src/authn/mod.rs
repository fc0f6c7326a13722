//! Who a request is: the user its credentials name (upstream's `user.Info`), and the
//! authenticators that find it. Start at [`Authenticator`].
//!
//! A request presents at most a verified TLS client certificate and a bearer token
//! ([`Credentials`]). Each authenticator answers [`Answer::User`], [`Answer::NotMine`] (no
//! credentials it understands) or [`Answer::Invalid`] (credentials it understands and refuses);
//! [`authenticate`] asks them in order as upstream's union authenticator does; [`chain`] builds
//! the server's bearer-token authenticators ([`tokens`], [`serviceaccount`]); the server puts
//! [`x509::X509Authenticator`] before them. HTTPS requests go through that chain; the plain
//! loopback listener's requests without a bearer token are the cluster admin
//! (`Conn::Insecure`, `Config::insecure_superuser`), with one they go through the chain too.

pub mod x509;

use std::collections::BTreeMap;

use std::time::SystemTime;

use async_trait::async_trait;

pub mod jwt;
pub mod serviceaccount;
pub mod tokens;

/// The group upstream adds to every authenticated user.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// The group of anonymous requests.
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
/// The anonymous user's name.
pub const ANONYMOUS_USER: &str = "system:anonymous";
/// The superuser group: RBAC allows it everything.
pub const MASTERS_GROUP: &str = "system:masters";

/// A user as authentication found it (upstream's `user.DefaultInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// The cluster admin every request acted as before authentication existed.
    pub fn admin() -> UserInfo {
        UserInfo {
            name: crate::handlers::USERNAME.to_string(),
            groups: vec![MASTERS_GROUP.to_string(), AUTHENTICATED_GROUP.to_string()],
            ..UserInfo::default()
        }
    }

    /// `system:anonymous` in `system:unauthenticated`.
    pub fn anonymous() -> UserInfo {
        UserInfo {
            name: ANONYMOUS_USER.to_string(),
            groups: vec![UNAUTHENTICATED_GROUP.to_string()],
            ..UserInfo::default()
        }
    }
}

/// The identity in a client certificate that chained to `--client-ca-file` during the TLS
/// handshake: upstream maps CN to the user name and each O to a group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertIdentity {
    pub common_name: String,
    pub organizations: Vec<String>,
}

/// What one request presented.
#[derive(Clone, Copy, Debug)]
pub struct Credentials<'a> {
    /// The token of an `Authorization: Bearer …` header.
    pub bearer: Option<&'a str>,
    /// The connection's verified client certificate, if it presented one.
    pub client_cert: Option<&'a CertIdentity>,
    /// The server's clock (token expiry is checked against it).
    pub now: SystemTime,
}

/// One authenticator's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    User(UserInfo),
    /// No credentials this authenticator understands.
    NotMine,
    /// Credentials it understands and refuses (expired, bad signature…): why, for the log.
    Invalid(String),
}

/// Finds the user in a request's credentials.
#[async_trait]
pub trait Authenticator: Send + Sync {
    async fn authenticate(&self, creds: &Credentials<'_>) -> Answer;
}

/// Why a request was not authenticated (the server answers 401 `Unauthorized`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Unauthorized: {0}")]
pub struct Unauthorized(pub String);

/// Ask `chain` in order, as upstream's union authenticator: the first user found wins (and
/// gains `system:authenticated`); if none found one and any refused the credentials, the
/// request is unauthorized; with no credentials anyone understood it is anonymous when
/// `anonymous` is allowed, unauthorized otherwise.
pub async fn authenticate(
    chain: &[Box<dyn Authenticator>],
    creds: &Credentials<'_>,
    anonymous: bool,
) -> Result<UserInfo, Unauthorized> {
    match first_user(chain, creds).await {
        Answer::User(mut u) => {
            if !u.groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
                u.groups.push(AUTHENTICATED_GROUP.to_string());
            }
            Ok(u)
        }
        Answer::NotMine if anonymous => Ok(UserInfo::anonymous()),
        Answer::NotMine => Err(Unauthorized("no credentials".to_string())),
        Answer::Invalid(why) => Err(Unauthorized(why)),
    }
}

/// Upstream's union authenticator: the first user `list` finds; else every refusal, joined;
/// else `NotMine`.
pub async fn first_user(list: &[Box<dyn Authenticator>], creds: &Credentials<'_>) -> Answer {
    let mut refused = Vec::new();
    for a in list {
        match a.authenticate(creds).await {
            Answer::User(u) => return Answer::User(u),
            Answer::NotMine => {}
            Answer::Invalid(why) => refused.push(why),
        }
    }
    match refused.is_empty() {
        true => Answer::NotMine,
        false => Answer::Invalid(refused.join("; ")),
    }
}

/// The authenticators in order, and the TokenRequest signer if any.
pub type Chain = (
    Vec<Box<dyn Authenticator>>,
    Option<serviceaccount::TokenIssuer>,
);

/// The server's authenticators from its flags, in upstream's order (bearer tokens: the token
/// file, then ServiceAccount tokens; then the insecure superuser when enabled), and the
/// TokenRequest signer when a signing key is set.
pub fn chain(
    cfg: &crate::server::Config,
    store: &store::SharedStore,
) -> Result<Chain, crate::server::StartError> {
    let mut bearer: Vec<Box<dyn Authenticator>> = Vec::new();
    if let Some(path) = &cfg.token_auth_file {
        bearer.push(Box::new(tokens::TokenFile::load(path)?));
    }
    let (issuer, validator) = serviceaccount::load(&cfg.service_accounts)?;
    if let Some(validator) = validator {
        bearer.push(Box::new(serviceaccount::ServiceAccountTokens {
            validator,
            store: std::sync::Arc::clone(store),
        }));
    }
    let mut chain: Vec<Box<dyn Authenticator>> = vec![Box::new(x509::X509Authenticator)];
    if !bearer.is_empty() {
        chain.push(Box::new(tokens::BearerTokens { tokens: bearer }));
    }
    Ok((chain, issuer))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Answer);

    #[async_trait]
    impl Authenticator for Fixed {
        async fn authenticate(&self, _creds: &Credentials<'_>) -> Answer {
            self.0.clone()
        }
    }

    fn creds() -> Credentials<'static> {
        Credentials {
            bearer: None,
            client_cert: None,
            now: SystemTime::UNIX_EPOCH,
        }
    }

    fn user(name: &str) -> Answer {
        Answer::User(UserInfo {
            name: name.to_string(),
            ..UserInfo::default()
        })
    }

    #[tokio::test]
    async fn first_user_wins_and_is_authenticated() {
        let chain: Vec<Box<dyn Authenticator>> = vec![
            Box::new(Fixed(Answer::NotMine)),
            Box::new(Fixed(user("alice"))),
            Box::new(Fixed(user("bob"))),
        ];
        let u = authenticate(&chain, &creds(), false).await.unwrap();
        assert_eq!(u.name, "alice");
        assert_eq!(u.groups, vec![AUTHENTICATED_GROUP.to_string()]);
    }

    #[tokio::test]
    async fn refused_credentials_are_unauthorized_even_with_anonymous() {
        let chain: Vec<Box<dyn Authenticator>> = vec![
            Box::new(Fixed(Answer::Invalid("token expired".into()))),
            Box::new(Fixed(Answer::NotMine)),
        ];
        let err = authenticate(&chain, &creds(), true).await.unwrap_err();
        assert_eq!(err.0, "token expired");
    }

    #[tokio::test]
    async fn no_credentials_is_anonymous_only_when_allowed() {
        let chain: Vec<Box<dyn Authenticator>> = vec![Box::new(Fixed(Answer::NotMine))];
        let u = authenticate(&chain, &creds(), true).await.unwrap();
        assert_eq!(u, UserInfo::anonymous());
        assert!(authenticate(&chain, &creds(), false).await.is_err());
    }
}
