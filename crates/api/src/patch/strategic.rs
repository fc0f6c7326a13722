//! Strategic merge patch as the apiserver applies it (upstream `strategicpatch.StrategicMergePatch`
//! with parallel-list merging); start at [`strategic_merge_patch`].
//!
//! Maps merge recursively and `null` deletes a key; lists merge by the field's merge key when its
//! strategy is `merge` (see [`super::meta`]) and are replaced otherwise. Directives: `$patch`
//! (`replace`/`delete` in maps and list elements), `$retainKeys`, `$setElementOrder/<list>` and
//! `$deleteFromPrimitiveList/<list>`.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::PatchError;
use super::meta::{self, is_merge, is_replace};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

/// A struct type name from [`meta::fields_of`], or `None` below the modelled types.
type Ty = Option<&'static str>;

/// Apply a strategic merge patch to an object of `kind` (one of [`super::PATCH_KINDS`]).
pub fn strategic_merge_patch(
    target: &Value,
    patch: &Value,
    kind: &str,
) -> Result<Value, PatchError> {
    let root =
        meta::fields_of_kind(kind).ok_or_else(|| PatchError::UnsupportedKind(kind.to_string()))?;
    let Value::Object(patch) = patch else {
        return Err(PatchError::BadPatch(
            "a strategic merge patch must be a JSON object".to_string(),
        ));
    };
    let base = match target {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    Ok(Value::Object(merge_map(base, patch, Some(root))?))
}

fn strategic(msg: String) -> PatchError {
    PatchError::Strategic(msg)
}

fn bad_patch_type(directive: &Value, m: &Value) -> PatchError {
    strategic(format!("unknown patch type: {directive} in map: {m}"))
}

fn no_merge_key(m: &Value, key: &str) -> PatchError {
    strategic(format!(
        "map: {m} does not contain declared merge key: {key}"
    ))
}

/// Merge `patch` into `original` (upstream `mergeMap`).
fn merge_map(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
    ty: Ty,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(d) = patch.get(DIRECTIVE) {
        return match d.as_str() {
            Some("replace") => {
                let mut rest = patch.clone();
                rest.remove(DIRECTIVE);
                merge_map(Map::new(), &rest, ty)
            }
            Some("delete") => Ok(Map::new()),
            _ => Err(bad_patch_type(d, &Value::Object(patch.clone()))),
        };
    }
    apply_retain_keys(&mut original, patch)?;
    let mut ordered = BTreeSet::new();
    for (k, order) in patch {
        if let Some(field) = k.strip_prefix(SET_ELEMENT_ORDER)
            && apply_set_element_order(&mut original, patch, field, order, ty)?
        {
            ordered.insert(field);
        }
    }
    for (k, v) in patch {
        // Unknown `$` keys are directives we do not know; they are never fields.
        if !k.starts_with('$') && !ordered.contains(k.as_str()) {
            merge_field(&mut original, k, v, ty)?;
        }
    }
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            let Value::Array(gone) = v else {
                return Err(strategic(
                    "invalid patch format of primitive list".to_string(),
                ));
            };
            if let Some(Value::Array(list)) = original.get_mut(field) {
                list.retain(|x| !gone.contains(x));
            }
        }
    }
    Ok(original)
}

/// Merge one patch field into `original`.
fn merge_field(
    original: &mut Map<String, Value>,
    k: &str,
    v: &Value,
    ty: Ty,
) -> Result<(), PatchError> {
    if v.is_null() {
        original.remove(k);
        return Ok(());
    }
    let m = meta::lookup(ty, k);
    let (strategy, key, child) = m
        .map(|m| (m.strategy, m.key, m.ty))
        .unwrap_or(("", None, None));
    let merged = match (original.get_mut(k).map(Value::take), v) {
        (Some(Value::Object(o)), Value::Object(p)) if !is_replace(strategy) => {
            Value::Object(merge_map(o, p, child)?)
        }
        (Some(Value::Array(o)), Value::Array(p)) if is_merge(strategy) => {
            Value::Array(merge_list(o, p, key, child, k)?)
        }
        _ => fresh(v, strategy, key, child, k)?,
    };
    original.insert(k.to_string(), merged);
    Ok(())
}

/// A patch value with nothing to merge into: directives and nulls are resolved against empty.
fn fresh(
    v: &Value,
    strategy: &str,
    key: Option<&'static str>,
    child: Ty,
    name: &str,
) -> Result<Value, PatchError> {
    Ok(match v {
        Value::Object(p) => Value::Object(merge_map(Map::new(), p, child)?),
        Value::Array(p) if is_merge(strategy) => {
            Value::Array(merge_list(Vec::new(), p, key, child, name)?)
        }
        other => other.clone(),
    })
}

/// `$retainKeys`: every non-null patch field must be listed; original fields not listed go.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(list) = patch.get(RETAIN_KEYS) else {
        return Ok(());
    };
    let bad = || strategic("invalid patch format of retainKeys".to_string());
    let Value::Array(list) = list else {
        return Err(bad());
    };
    let keep: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
    for (k, v) in patch {
        let directive = k.starts_with('$');
        if !v.is_null() && !directive && !keep.contains(&k.as_str()) {
            return Err(bad());
        }
    }
    original.retain(|k, _| keep.contains(&k.as_str()));
    Ok(())
}

/// `$setElementOrder/<field>`: merge the field's list and put the result in the given order.
/// Returns false when the field is left to the ordinary merge (it is not a list on both sides).
fn apply_set_element_order(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    field: &str,
    order: &Value,
    ty: Ty,
) -> Result<bool, PatchError> {
    let Value::Array(order) = order else {
        return Err(strategic(
            "invalid patch format of setElementOrder list".to_string(),
        ));
    };
    let m = meta::lookup(ty, field);
    let (strategy, key, child) = m
        .map(|m| (m.strategy, m.key, m.ty))
        .unwrap_or(("", None, None));
    let live = match original.get(field) {
        None => None,
        Some(Value::Array(a)) => Some(a.clone()),
        Some(_) => return Ok(false),
    };
    let patched = match patch.get(field) {
        None => None,
        Some(Value::Array(a)) => Some(a),
        Some(_) => return Ok(false),
    };
    if let Some(p) = patched {
        check_order(p, order, key)?;
    }
    let merged = match (&live, patched) {
        (Some(l), None) => l.clone(),
        (None, Some(p)) => match fresh(&Value::Array(p.clone()), strategy, key, child, field)? {
            Value::Array(a) => a,
            _ => Vec::new(),
        },
        (Some(l), Some(p)) if is_merge(strategy) => merge_list(l.clone(), p, key, child, field)?,
        (Some(_), Some(p)) => p.clone(),
        (None, None) => return Ok(true),
    };
    let result = if is_merge(strategy) {
        arrange(merged, order, live.as_deref().unwrap_or_default(), key)
    } else {
        merged
    };
    original.insert(field.to_string(), Value::Array(result));
    Ok(true)
}

/// The patch list's plain items must appear in the `$setElementOrder` list, in the same order.
fn check_order(patch: &[Value], order: &[Value], key: Option<&str>) -> Result<(), PatchError> {
    let mut j = 0;
    for item in patch.iter().filter(|p| p.get(DIRECTIVE).is_none()) {
        loop {
            let Some(o) = order.get(j) else {
                return Err(strategic(format!(
                    "the order in patch list {} doesn't match $setElementOrder list {}",
                    Value::Array(patch.to_vec()),
                    Value::Array(order.to_vec())
                )));
            };
            j += 1;
            if ident(o, key).is_some() && ident(o, key) == ident(item, key) {
                break;
            }
        }
    }
    Ok(())
}

/// Merge a list whose strategy is `merge` (upstream `mergeSlice`).
fn merge_list(
    original: Vec<Value>,
    patch: &[Value],
    key: Option<&str>,
    child: Ty,
    name: &str,
) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    if !elements_are_maps(&original, patch, name)? {
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for v in original.iter().chain(patch) {
            if !merged.contains(v) {
                merged.push(v.clone());
            }
        }
        return Ok(arrange(merged, patch, &original, None));
    }
    let key =
        key.ok_or_else(|| strategic(format!("cannot merge lists without merge key for {name}")))?;
    let (mut merged, items) = split_special_elements(original, patch, key)?;
    let server_order = merged.clone();
    for item in &items {
        let Value::Object(p) = item else { continue };
        let id = p.get(key).ok_or_else(|| no_merge_key(item, key))?;
        match merged.iter().position(|o| o.get(key) == Some(id)) {
            Some(i) => {
                let live = match merged[i].take() {
                    Value::Object(o) => o,
                    _ => Map::new(),
                };
                merged[i] = Value::Object(merge_map(live, p, child)?);
            }
            None => merged.push(Value::Object(merge_map(Map::new(), p, child)?)),
        }
    }
    Ok(arrange(merged, &items, &server_order, Some(key)))
}

/// True for lists of maps, false for lists of scalars; mixed element types and lists of lists
/// are errors, as upstream.
fn elements_are_maps(a: &[Value], b: &[Value], name: &str) -> Result<bool, PatchError> {
    let tag = |v: &Value| match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    };
    let mut seen = None;
    for v in a.iter().chain(b) {
        let t = tag(v);
        if t == 4 {
            return Err(strategic("lists of lists are not supported".to_string()));
        }
        match seen {
            None => seen = Some(t),
            Some(s) if s != t => {
                return Err(strategic(format!(
                    "list element types are not identical in {name}"
                )));
            }
            Some(_) => {}
        }
    }
    Ok(seen == Some(5))
}

/// Handle `$patch` elements of a merging list: `delete` removes live elements with that merge
/// key, `replace` makes the plain patch elements the whole list. Returns (live, plain items).
fn split_special_elements(
    mut live: Vec<Value>,
    patch: &[Value],
    key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut plain = Vec::new();
    let mut replace = false;
    for item in patch {
        let Some(d) = item.get(DIRECTIVE) else {
            plain.push(item.clone());
            continue;
        };
        match d.as_str() {
            Some("delete") => {
                let id = item.get(key).ok_or_else(|| no_merge_key(item, key))?;
                live.retain(|o| o.get(key) != Some(id));
            }
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(strategic(
                    "merging lists cannot yet be specified in the patch".to_string(),
                ));
            }
            _ => return Err(bad_patch_type(d, item)),
        }
    }
    if replace {
        let list = plain
            .iter()
            .map(|p| match p {
                Value::Object(m) => merge_map(Map::new(), m, None).map(Value::Object),
                other => Ok(other.clone()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok((list, Vec::new()));
    }
    Ok((live, plain))
}

/// What identifies a list element: its merge key value, or the value itself for scalars.
fn ident<'v>(v: &'v Value, key: Option<&str>) -> Option<&'v Value> {
    match key {
        Some(k) => v.get(k),
        None => Some(v),
    }
}

fn position_in(list: &[Value], v: &Value, key: Option<&str>) -> Option<usize> {
    let id = ident(v, key)?;
    list.iter().position(|x| ident(x, key) == Some(id))
}

/// Upstream's order rule: elements named in `patch_order` keep that order; the others keep
/// their live (`server_order`) order; the two runs interleave by live position, patch first
/// when an element is new.
fn arrange(
    merged: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    let (mut from_patch, mut server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|v| position_in(patch_order, v, key).is_some());
    from_patch.sort_by_key(|v| position_in(patch_order, v, key).unwrap_or(usize::MAX));
    server_only.sort_by_key(|v| position_in(server_order, v, key).unwrap_or(usize::MAX));
    let mut out = Vec::with_capacity(from_patch.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = from_patch.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (Some(l), Some(r)) => matches!(
                (position_in(server_order, l, key), position_in(server_order, r, key)),
                (Some(i), Some(j)) if i < j
            ),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}
