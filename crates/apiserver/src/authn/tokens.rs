//! Bearer tokens: the static token file (`--token-auth-file`, upstream's CSV
//! `token,user,uid,"group1,group2"`) and [`BearerTokens`], upstream's bearer token
//! authenticator that asks the token authenticators in turn. Start at [`TokenFile::parse`].

use std::path::Path;

use async_trait::async_trait;

use super::{Answer, Authenticator, Credentials, UserInfo};

/// Why a token file could not be loaded (a start-up error, with file and line).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenFileError {
    #[error("reading token file '{path}': {error}")]
    Read { path: String, error: String },
    #[error("token file '{path}', line {line}: {error}")]
    Parse {
        path: String,
        line: usize,
        error: String,
    },
}

/// The users of a static token file.
#[derive(Clone, Debug, Default)]
pub struct TokenFile {
    /// `(SHA-256 of the token, user)`, in file order.
    entries: Vec<([u8; 32], UserInfo)>,
}

impl TokenFile {
    pub fn load(path: &Path) -> Result<TokenFile, TokenFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| TokenFileError::Read {
            path: path.display().to_string(),
            error: e.to_string(),
        })?;
        TokenFile::parse(&path.display().to_string(), &text)
    }

    /// Parse upstream's format (tokenfile.NewCSV): at least three columns (token, user name,
    /// uid), an optional fourth of comma-separated groups; empty tokens are skipped and a
    /// repeated token replaces the earlier one, each with a warning.
    pub fn parse(path: &str, text: &str) -> Result<TokenFile, TokenFileError> {
        let mut file = TokenFile::default();
        for (i, line) in text.lines().enumerate() {
            let lineno = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            let err = |error: String| TokenFileError::Parse {
                path: path.to_string(),
                line: lineno,
                error,
            };
            let record = csv_record(line).map_err(err)?;
            if record.len() < 3 {
                return Err(err(format!(
                    "token file must have at least 3 columns (token, user name, user uid), found {}",
                    record.len()
                )));
            }
            let token = record[0].trim();
            if token.is_empty() {
                tracing::warn!("empty token has been found in token file '{path}', line {lineno}");
                continue;
            }
            let user = UserInfo {
                name: record[1].trim().to_string(),
                uid: record[2].trim().to_string(),
                groups: record
                    .get(3)
                    .map(|g| g.split(',').map(str::to_string).collect())
                    .unwrap_or_default(),
                ..UserInfo::default()
            };
            let hash = sha256(token);
            if let Some(e) = file.entries.iter_mut().find(|(h, _)| *h == hash) {
                tracing::warn!(
                    "duplicate token has been found in token file '{path}', line {lineno}"
                );
                e.1 = user;
            } else {
                file.entries.push((hash, user));
            }
        }
        Ok(file)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The user of `token`, comparing against every entry in constant time (no early exit, and
    /// digests of equal length so the token's length leaks nothing either).
    pub fn lookup(&self, token: &str) -> Option<&UserInfo> {
        let want = sha256(token);
        let mut found = None;
        for (hash, user) in &self.entries {
            let diff = hash
                .iter()
                .zip(want.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if std::hint::black_box(diff) == 0 {
                found = Some(user);
            }
        }
        found
    }
}

fn sha256(s: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// One CSV record (RFC 4180 as Go's encoding/csv reads it with `TrimLeadingSpace`: quoted
/// fields may hold commas and `""` for a quote).
fn csv_record(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
            chars.next();
        }
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("extraneous or missing \" in quoted-field".into()),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err("extraneous or missing \" in quoted-field".into()),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err("bare \" in non-quoted-field".into()),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

#[async_trait]
impl Authenticator for TokenFile {
    async fn authenticate(&self, creds: &Credentials<'_>) -> Answer {
        match creds.bearer.and_then(|t| self.lookup(t)) {
            Some(u) => Answer::User(u.clone()),
            None => Answer::NotMine,
        }
    }
}

/// Upstream's bearer token authenticator: a request with a bearer token is authenticated by
/// the first token authenticator that knows the token; a token none of them knows is refused
/// ("invalid bearer token"), never anonymous.
pub struct BearerTokens {
    pub tokens: Vec<Box<dyn Authenticator>>,
}

#[async_trait]
impl Authenticator for BearerTokens {
    async fn authenticate(&self, creds: &Credentials<'_>) -> Answer {
        if creds.bearer.is_none_or(str::is_empty) {
            return Answer::NotMine;
        }
        match super::first_user(&self.tokens, creds).await {
            Answer::NotMine => Answer::Invalid("invalid bearer token".into()),
            other => other,
        }
    }
}

/// The token of an `Authorization` header value, as upstream's bearer token authenticator
/// reads it: the scheme `Bearer` in any case, one space, a non-empty token (`None` otherwise,
/// so the request is not a bearer-token request).
pub fn bearer_token(header: &str) -> Option<&str> {
    let mut parts = header.trim().splitn(3, ' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
tok-alice,alice,1001,\"dev,ops\"
  tok-bob , bob , 1002
,nobody,0
tok-carol,carol,1003,viewers
tok-bob,robert,1004
";

    #[test]
    fn reads_upstreams_csv_format() {
        let f = TokenFile::parse("tokens.csv", FILE).unwrap();
        assert_eq!(f.len(), 3, "empty token skipped, duplicate replaced");
        let alice = f.lookup("tok-alice").unwrap();
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.uid, "1001");
        assert_eq!(alice.groups, vec!["dev".to_string(), "ops".to_string()]);
        assert_eq!(f.lookup("tok-bob").unwrap().name, "robert");
        assert_eq!(f.lookup("tok-carol").unwrap().groups, vec!["viewers"]);
        assert!(f.lookup("tok-dave").is_none());
        assert!(f.lookup("").is_none());
        assert!(f.lookup("tok-alic").is_none());
    }

    #[test]
    fn a_bad_line_is_an_error_with_file_and_line() {
        let err = TokenFile::parse("t.csv", "a,b,c\nonly,two\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "token file 't.csv', line 2: token file must have at least 3 columns (token, user name, user uid), found 2"
        );
        let err = TokenFile::parse("t.csv", "a,b,c,\"g1,g2\n").unwrap_err();
        assert!(
            err.to_string().starts_with("token file 't.csv', line 1: "),
            "{err}"
        );
        let err = TokenFile::parse("t.csv", "a,b\"x,c\n").unwrap_err();
        assert!(err.to_string().contains("bare \""), "{err}");
    }

    #[tokio::test]
    async fn unknown_bearer_tokens_are_refused_not_anonymous() {
        let f = TokenFile::parse("t.csv", FILE).unwrap();
        let chain = BearerTokens {
            tokens: vec![Box::new(f)],
        };
        let creds = |bearer| Credentials {
            bearer,
            client_cert: None,
            now: std::time::SystemTime::UNIX_EPOCH,
        };
        assert!(matches!(
            chain.authenticate(&creds(Some("tok-alice"))).await,
            Answer::User(u) if u.name == "alice"
        ));
        assert_eq!(
            chain.authenticate(&creds(Some("nope"))).await,
            Answer::Invalid("invalid bearer token".into())
        );
        assert_eq!(chain.authenticate(&creds(None)).await, Answer::NotMine);
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_the_token_one_word() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER abc"), Some("abc"));
        assert_eq!(bearer_token("  Bearer abc  "), Some("abc"));
        assert_eq!(bearer_token("Bearer abc def"), Some("abc"));
        assert_eq!(
            bearer_token("Bearer  abc"),
            None,
            "empty token before a second space"
        );
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }
}
