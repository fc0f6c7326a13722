//! Finds the line and column of a node in the YAML text by its path (`faults[1].target`):
//! `locate` is the entry point. Used for semantic errors found after parsing.
//!
//! How: serde_yaml keeps no spans in its values, but it stamps every error with the position
//! of the node being read. A probe walks the document along the path, ignoring everything
//! else, and deliberately fails on the target node; the stamped position is the answer.
//! This reads the same text again (pure, no I/O), and works for block and flow style alike.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// A list index (0-based).
    Index(usize),
}

/// Renders a path the way serde_yaml does: `faults[1].target`.
pub fn render(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Marker put in the probe's own error so it can be told apart from a genuine error.
const MARKER: &str = "zonelab-scenario-locate-probe";

/// 1-based (line, column) of the node at `path`, or of its deepest existing ancestor when the
/// node itself is absent (a missing key that took its default). `None` only if the text does not
/// parse at all.
pub fn locate(text: &str, path: &[Seg]) -> Option<(usize, usize)> {
    (0..=path.len())
        .rev()
        .find_map(|len| locate_exact(text, &path[..len]))
}

fn locate_exact(text: &str, path: &[Seg]) -> Option<(usize, usize)> {
    let probe = Probe { path };
    match probe.deserialize(serde_yaml::Deserializer::from_str(text)) {
        Ok(()) => None,
        Err(err) if err.to_string().contains(MARKER) => {
            err.location().map(|loc| (loc.line(), loc.column()))
        }
        Err(_) => None,
    }
}

/// Walks along `path`; at the end, fails on purpose so serde_yaml stamps the position.
struct Probe<'p> {
    path: &'p [Seg],
}

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.path.is_empty() {
            d.deserialize_any(Here)
        } else {
            d.deserialize_any(self)
        }
    }
}

impl<'de> Visitor<'de> for Probe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut found = false;
        while let Some(key) = map.next_key::<serde_yaml::Value>()? {
            let wanted = matches!(&self.path[0], Seg::Key(k) if key.as_str() == Some(k.as_str()));
            if wanted && !found {
                found = true;
                map.next_value_seed(Probe {
                    path: &self.path[1..],
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        loop {
            let wanted = matches!(self.path[0], Seg::Index(i) if i == index);
            let more = if wanted {
                seq.next_element_seed(Probe {
                    path: &self.path[1..],
                })?
            } else {
                seq.next_element::<IgnoredAny>()?.map(|_| ())
            };
            if more.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        let _ = data.variant::<IgnoredAny>()?;
        Ok(())
    }
}

/// The target node: every input is rejected, carrying the marker.
struct Here;

impl<'de> Visitor<'de> for Here {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(MARKER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Seg {
        Seg::Key(k.to_string())
    }

    #[test]
    fn finds_block_and_flow_nodes() {
        let text = "name: x\nfaults:\n  - at: 1s\n    target: a\n  - {at: 2s, target: zz}\n";
        assert_eq!(
            locate(text, &[key("faults"), Seg::Index(0), key("target")]),
            Some((4, 13))
        );
        assert_eq!(
            locate(text, &[key("faults"), Seg::Index(1), key("target")]),
            Some((5, 22))
        );
        assert_eq!(locate(text, &[key("name")]), Some((1, 7)));
    }

    #[test]
    fn falls_back_to_the_parent_of_a_missing_key() {
        let text = "name: x\nrun:\n  until: capacity-restored\n";
        assert_eq!(locate(text, &[key("run"), key("cap")]), Some((3, 3)));
        assert_eq!(
            render(&[key("faults"), Seg::Index(2), key("at")]),
            "faults[2].at"
        );
    }
}
