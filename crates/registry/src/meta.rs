//! Object metadata helpers on JSON objects: names, uids, resourceVersion, timestamps.
//!
//! Start at [`new_uid`] and [`timestamp`]. Pure: time (ms since the epoch) and randomness are
//! arguments.

use api::status::StatusError;
use k8s_openapi::jiff::Timestamp;
use rand::Rng;
use serde_json::{Map, Value, json};

/// Milliseconds since the Unix epoch (the time every rule takes): the runtime crate's.
pub use runtime::Moment;

/// `metadata` as a mutable map, creating it if missing (returns `None` if `obj` is no object).
pub fn metadata_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    let o = obj.as_object_mut()?;
    let meta = o.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut()
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

pub fn name_of(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or("")
}

pub fn set_resource_version(obj: &mut Value, rv: u64) {
    if let Some(meta) = metadata_mut(obj) {
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
    }
}

/// The object's `resourceVersion` as a number: `Ok(None)` when unset.
pub fn resource_version(obj: &Value) -> Result<Option<u64>, StatusError> {
    parse_resource_version(meta_str(obj, "resourceVersion"))
}

/// A `resourceVersion` string as a number (`None` when unset or empty); upstream's 400 when it is
/// no number.
pub fn parse_resource_version(rv: Option<&str>) -> Result<Option<u64>, StatusError> {
    match rv {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| StatusError::bad_request(format!("invalid resourceVersion: {s:?}"))),
    }
}

/// RFC 3339 with seconds, as Kubernetes `metav1.Time` marshals (`now` truncated to seconds).
pub fn timestamp(now: Moment) -> String {
    Timestamp::from_second(now.as_millis().div_euclid(1000))
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_string()
}

/// A random UUID (version 4) string.
pub fn new_uid(rng: &mut impl Rng) -> String {
    let mut b: [u8; 16] = rng.random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Upstream's generateName suffix: 5 characters from an alphabet without vowels.
pub fn generate_suffix(rng: &mut impl Rng) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// `metadata.finalizers` as strings.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj["metadata"]["finalizers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn timestamps_are_rfc3339_seconds() {
        assert_eq!(
            timestamp(Moment::from_millis(1_800_000_000_999)),
            "2027-01-15T08:00:00Z"
        );
        assert_eq!(timestamp(Moment::EPOCH), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn uids_are_v4_and_seeded() {
        let mut a = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut b = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let u = new_uid(&mut a);
        assert_eq!(u, new_uid(&mut b));
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        let s = generate_suffix(&mut a);
        assert!(
            s.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
            "{s}"
        );
    }

    #[test]
    fn bad_resource_version_is_a_400() {
        assert_eq!(parse_resource_version(Some("7")).unwrap(), Some(7));
        assert_eq!(parse_resource_version(Some("")).unwrap(), None);
        assert_eq!(parse_resource_version(Some("x")).unwrap_err().code, 400);
    }
}
