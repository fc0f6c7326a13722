//! Store keys ↔ etcd keys: a store key's `root` is replaced by the configured etcd prefix
//! (upstream's `--etcd-prefix`, default `/registry`). Start at [`Keys`].

use crate::StoreError;

/// The key mapping of one store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Keys {
    /// What every store key starts with (the API server's keys start with `/registry`).
    root: String,
    /// What replaces `root` in etcd.
    prefix: String,
}

impl Keys {
    pub(crate) fn new(root: &str, prefix: &str) -> Keys {
        Keys {
            root: root.to_string(),
            prefix: prefix.to_string(),
        }
    }

    /// The etcd key of store key `key`; keys outside the root are refused.
    pub(crate) fn to_etcd(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let rest = key.strip_prefix(self.root.as_str()).ok_or_else(|| {
            StoreError::Invalid(format!("key {key} does not lie under {}", self.root))
        })?;
        Ok(format!("{}{rest}", self.prefix).into_bytes())
    }

    /// The store key of etcd key `key` (which lies under the prefix).
    pub(crate) fn store_key(&self, key: &[u8]) -> String {
        let key = String::from_utf8_lossy(key);
        let rest = key.strip_prefix(self.prefix.as_str()).unwrap_or(&key);
        format!("{}{rest}", self.root)
    }

    /// The etcd range `[start, end)` of store keys under `prefix`; `None` if no store key can
    /// lie under it.
    pub(crate) fn range(&self, prefix: &str) -> Option<(Vec<u8>, Vec<u8>)> {
        let start = if let Some(rest) = prefix.strip_prefix(self.root.as_str()) {
            format!("{}{rest}", self.prefix).into_bytes()
        } else if self.root.starts_with(prefix) {
            self.prefix.clone().into_bytes()
        } else {
            return None;
        };
        if start.is_empty() {
            // Every key: etcd's "from \0 to the end".
            return Some((vec![0], vec![0]));
        }
        let end = prefix_end(&start);
        Some((start, end))
    }

    /// The first etcd key strictly after store key `key`.
    pub(crate) fn after(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let mut k = self.to_etcd(key)?;
        k.push(0);
        Ok(k)
    }
}

/// The smallest key greater than every key with prefix `p` (etcd's `GetPrefixRangeEnd`):
/// `\0` (to the end of the key space) if no such key exists.
fn prefix_end(p: &[u8]) -> Vec<u8> {
    let mut end = p.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_replaced_by_prefix() {
        let k = Keys::new("/registry", "/tenant/registry");
        assert_eq!(
            k.to_etcd("/registry/core/services/default/a").ok(),
            Some(b"/tenant/registry/core/services/default/a".to_vec())
        );
        assert_eq!(
            k.store_key(b"/tenant/registry/core/pods/x/y"),
            "/registry/core/pods/x/y"
        );
        assert!(matches!(k.to_etcd("other"), Err(StoreError::Invalid(_))));
        assert_eq!(
            k.range("/registry/core/"),
            Some((
                b"/tenant/registry/core/".to_vec(),
                b"/tenant/registry/core0".to_vec()
            ))
        );
        assert_eq!(
            k.range(""),
            Some((b"/tenant/registry".to_vec(), b"/tenant/registrz".to_vec()))
        );
        assert_eq!(k.range("/x"), None);
    }

    #[test]
    fn empty_prefix_covers_everything() {
        let k = Keys::new("", "");
        assert_eq!(k.range(""), Some((vec![0], vec![0])));
        assert_eq!(k.range("a/"), Some((b"a/".to_vec(), b"a0".to_vec())));
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b".to_vec());
        assert_eq!(prefix_end(&[0xff]), vec![0]);
    }
}
