//! An in-memory model of one nftables table that applies `nft -f` transaction text and dumps
//! its contents like knftables' fake (`Dump()`), so tests can compare the state after partial
//! syncs with a full sync and with upstream's expected text. Start at [`NftState::apply`].

use std::collections::BTreeMap;

/// Transaction text this model does not understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported or invalid nft statement: {0}")]
pub struct NftStateError(pub String);

#[derive(Debug, Clone, Default)]
struct Chain {
    decl: String,
    rules: Vec<String>,
}

/// The contents of `ip kube-proxy` as a sequence of transactions left it.
#[derive(Debug, Clone, Default)]
pub struct NftState {
    table: Option<String>,
    chains: BTreeMap<String, Chain>,
    sets: BTreeMap<String, (String, BTreeMap<String, String>)>,
}

fn element_key(body: &str) -> &str {
    let end = [body.find(" comment "), body.find(" : ")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(body.len());
    &body[..end]
}

fn braces(rest: &str) -> Option<&str> {
    rest.strip_prefix("{ ")?.strip_suffix(" }")
}

impl NftState {
    /// Applies a transaction atomically: on error nothing changes.
    pub fn apply(&mut self, text: &str) -> Result<(), NftStateError> {
        let mut next = self.clone();
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            next.apply_line(line)
                .map_err(|()| NftStateError(line.to_string()))?;
        }
        *self = next;
        Ok(())
    }

    fn apply_line(&mut self, line: &str) -> Result<(), ()> {
        let (verb, rest) = line.split_once(" ip kube-proxy").ok_or(())?;
        let rest = rest.trim_start();
        let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
        match verb {
            "add table" => {
                if self.table.is_none() {
                    self.table = Some(line.to_string());
                }
            }
            "delete table" => *self = NftState::default(),
            "add chain" => {
                self.chains
                    .entry(name.to_string())
                    .or_insert_with(|| Chain {
                        decl: line.to_string(),
                        rules: vec![],
                    });
            }
            "flush chain" => self.chains.get_mut(name).ok_or(())?.rules.clear(),
            "delete chain" => {
                self.chains.remove(name).ok_or(())?;
            }
            "add rule" => self
                .chains
                .get_mut(name)
                .ok_or(())?
                .rules
                .push(line.to_string()),
            "add set" | "add map" => {
                self.sets
                    .entry(name.to_string())
                    .or_insert_with(|| (line.to_string(), BTreeMap::new()));
            }
            "flush set" | "flush map" => self.sets.get_mut(name).ok_or(())?.1.clear(),
            "delete set" => {
                self.sets.remove(name).ok_or(())?;
            }
            "add element" => {
                let body = braces(tail).ok_or(())?;
                let set = self.sets.get_mut(name).ok_or(())?;
                // Several elements per command are dumped one per line, as upstream writes them.
                for elem in body.split(", ") {
                    set.1
                        .entry(element_key(elem).to_string())
                        .or_insert_with(|| {
                            format!("add element ip kube-proxy {name} {{ {elem} }}")
                        });
                }
            }
            "delete element" => {
                let body = braces(tail).ok_or(())?;
                let set = self.sets.get_mut(name).ok_or(())?;
                for elem in body.split(", ") {
                    set.1.remove(element_key(elem)).ok_or(())?;
                }
            }
            _ => return Err(()),
        }
        Ok(())
    }

    /// Every object as an `add ...` line, sorted (compare order-insensitively).
    pub fn dump(&self) -> Vec<String> {
        let mut out: Vec<String> = self.table.iter().cloned().collect();
        for c in self.chains.values() {
            out.push(c.decl.clone());
            out.extend(c.rules.iter().cloned());
        }
        for (decl, elems) in self.sets.values() {
            out.push(decl.clone());
            out.extend(elems.values().cloned());
        }
        out.sort();
        out
    }

    /// True if a chain of that name exists.
    pub fn has_chain(&self, name: &str) -> bool {
        self.chains.contains_key(name)
    }

    /// The rules of a chain in order (the text after `add rule ip kube-proxy CHAIN `).
    pub fn rules(&self, chain: &str) -> Vec<&str> {
        let prefix = format!("add rule ip kube-proxy {chain} ");
        self.chains
            .get(chain)
            .map(|c| {
                c.rules
                    .iter()
                    .filter_map(|r| r.strip_prefix(prefix.as_str()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Sorted non-empty, non-comment lines of a text (for order-insensitive comparison).
pub fn sorted_lines(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    v.sort();
    v
}
