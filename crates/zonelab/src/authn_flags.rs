//! `zonelab server`'s authentication flags, as kube-apiserver names them: the static token
//! file, the ServiceAccount token keys, issuer and audiences, and anonymous requests.
//! Start at [`AuthnArgs`].

use std::path::PathBuf;

use clap::{ArgAction, Args};

#[derive(Args, Clone, Debug)]
pub struct AuthnArgs {
    /// Static bearer tokens: a CSV file of `token,user,uid,"group1,group2"` lines
    /// (kube-apiserver `--token-auth-file`); a bad line stops start-up with file:line.
    #[arg(long)]
    pub token_auth_file: Option<PathBuf>,
    /// PKCS#8 PEM ECDSA P-256 private key that signs ServiceAccount tokens (TokenRequest);
    /// without it the serviceaccounts/token subresource is not served.
    #[arg(long)]
    pub service_account_signing_key_file: Option<PathBuf>,
    /// PEM public (or private) keys that verify ServiceAccount tokens; repeatable. The signing
    /// key's public half always verifies.
    #[arg(long)]
    pub service_account_key_file: Vec<PathBuf>,
    /// The `iss` of issued tokens and the only issuer accepted.
    #[arg(long, default_value = apiserver::authn::serviceaccount::DEFAULT_ISSUER)]
    pub service_account_issuer: String,
    /// Audiences a token must name one of (comma-separated; default: the issuer).
    #[arg(long, value_delimiter = ',')]
    pub api_audiences: Vec<String>,
    /// Requests without credentials are `system:anonymous` in `system:unauthenticated`
    /// (`--anonymous-auth=false`: 401 instead).
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub anonymous_auth: bool,
}

impl AuthnArgs {
    /// The apiserver's ServiceAccount token settings.
    pub fn service_accounts(&self) -> apiserver::authn::serviceaccount::SaFlags {
        apiserver::authn::serviceaccount::SaFlags {
            signing_key_file: self.service_account_signing_key_file.clone(),
            key_files: self.service_account_key_file.clone(),
            issuer: self.service_account_issuer.clone(),
            api_audiences: self.api_audiences.clone(),
        }
    }
}
