//! RFC 6902 JSON patch with RFC 6901 pointers; start at [`json_patch`].

use serde_json::{Map, Value};

use super::PatchError;

/// Apply an RFC 6902 JSON patch (an array of `add`/`remove`/`replace`/`move`/`copy`/`test`
/// operations). Operations apply in order to a copy; any failure returns an error and the
/// target is left as it was.
pub fn json_patch(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Array(ops) = patch else {
        return Err(PatchError::BadPatch(
            "json patch must be a JSON array of operations".to_string(),
        ));
    };
    let mut doc = target.clone();
    for (index, op) in ops.iter().enumerate() {
        let op = Op::decode(index, op)?;
        op.apply(&mut doc)
            .map_err(|reason| PatchError::OperationFailed {
                index,
                op: op.name.to_string(),
                reason,
            })?;
    }
    Ok(doc)
}

/// One decoded operation.
struct Op<'a> {
    name: &'a str,
    path: Vec<String>,
    raw_path: &'a str,
    from: Option<(Vec<String>, &'a str)>,
    value: Option<&'a Value>,
}

impl<'a> Op<'a> {
    fn decode(index: usize, op: &'a Value) -> Result<Op<'a>, PatchError> {
        let bad = |reason: String| PatchError::BadOperation { index, reason };
        let Value::Object(m) = op else {
            return Err(bad("an operation must be a JSON object".to_string()));
        };
        let str_field = |name: &str| -> Result<Option<&'a str>, PatchError> {
            match m.get(name) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(bad(format!("'{name}' must be a string"))),
            }
        };
        let name = str_field("op")?.ok_or_else(|| bad("missing 'op'".to_string()))?;
        if !matches!(
            name,
            "add" | "remove" | "replace" | "move" | "copy" | "test"
        ) {
            return Err(bad(format!("unknown op '{name}'")));
        }
        let raw_path = str_field("path")?.ok_or_else(|| bad("missing 'path'".to_string()))?;
        let path = parse_pointer(raw_path).map_err(bad)?;
        let from = match name {
            "move" | "copy" => {
                let raw =
                    str_field("from")?.ok_or_else(|| bad(format!("missing 'from' for {name}")))?;
                Some((parse_pointer(raw).map_err(bad)?, raw))
            }
            _ => None,
        };
        let value = m.get("value");
        if matches!(name, "add" | "replace" | "test") && value.is_none() {
            return Err(bad(format!("missing 'value' for {name}")));
        }
        Ok(Op {
            name,
            path,
            raw_path,
            from,
            value,
        })
    }

    fn apply(&self, doc: &mut Value) -> Result<(), String> {
        let value = || self.value.cloned().unwrap_or(Value::Null);
        match self.name {
            "add" => add(doc, &self.path, self.raw_path, value()),
            "remove" => remove(doc, &self.path, self.raw_path).map(|_| ()),
            "replace" => {
                let slot = get_mut(doc, &self.path)
                    .ok_or_else(|| format!("path \"{}\" does not exist", self.raw_path))?;
                *slot = value();
                Ok(())
            }
            "test" => {
                let have = get_mut(doc, &self.path)
                    .ok_or_else(|| format!("path \"{}\" does not exist", self.raw_path))?;
                if json_equal(have, self.value.unwrap_or(&Value::Null)) {
                    Ok(())
                } else {
                    Err(format!(
                        "test failed: value at \"{}\" differs",
                        self.raw_path
                    ))
                }
            }
            "move" | "copy" => {
                let Some((from, raw_from)) = &self.from else {
                    return Err("missing 'from'".to_string());
                };
                if self.name == "move" {
                    if from == &self.path {
                        return Ok(());
                    }
                    if self.path.starts_with(from) {
                        return Err(format!(
                            "cannot move \"{raw_from}\" into its own child \"{}\"",
                            self.raw_path
                        ));
                    }
                    let v = remove(doc, from, raw_from)?;
                    add(doc, &self.path, self.raw_path, v)
                } else {
                    let v = get_mut(doc, from)
                        .ok_or_else(|| format!("path \"{raw_from}\" does not exist"))?
                        .clone();
                    add(doc, &self.path, self.raw_path, v)
                }
            }
            other => Err(format!("unknown op '{other}'")),
        }
    }
}

/// RFC 6901: `""` is the whole document; otherwise `/`-separated tokens with `~1` → `/`, `~0` → `~`.
fn parse_pointer(s: &str) -> Result<Vec<String>, String> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = s.strip_prefix('/') else {
        return Err(format!(
            "path \"{s}\" is not a JSON pointer (must start with '/')"
        ));
    };
    rest.split('/')
        .map(|tok| {
            let mut out = String::with_capacity(tok.len());
            let mut chars = tok.chars();
            while let Some(c) = chars.next() {
                if c != '~' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    Some('0') => out.push('~'),
                    Some('1') => out.push('/'),
                    _ => return Err(format!("path \"{s}\" has an invalid '~' escape")),
                }
            }
            Ok(out)
        })
        .collect()
}

/// An array index token: decimal without leading zeros.
fn parse_index(tok: &str) -> Option<usize> {
    let digits = !tok.is_empty() && tok.bytes().all(|b| b.is_ascii_digit());
    if !digits || (tok.len() > 1 && tok.starts_with('0')) {
        return None;
    }
    tok.parse().ok()
}

fn get_mut<'v>(doc: &'v mut Value, path: &[String]) -> Option<&'v mut Value> {
    let mut cur = doc;
    for tok in path {
        cur = match cur {
            Value::Object(m) => m.get_mut(tok)?,
            Value::Array(a) => a.get_mut(parse_index(tok)?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn add(doc: &mut Value, path: &[String], raw: &str, value: Value) -> Result<(), String> {
    let Some((last, parent_path)) = path.split_last() else {
        *doc = value;
        return Ok(());
    };
    let parent = get_mut(doc, parent_path)
        .ok_or_else(|| format!("parent of path \"{raw}\" does not exist"))?;
    match parent {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            let idx = if last == "-" {
                a.len()
            } else {
                parse_index(last)
                    .ok_or_else(|| format!("\"{last}\" in \"{raw}\" is not an array index"))?
            };
            if idx > a.len() {
                return Err(format!(
                    "array index {idx} in \"{raw}\" is out of bounds (length {})",
                    a.len()
                ));
            }
            a.insert(idx, value);
            Ok(())
        }
        _ => Err(format!(
            "parent of path \"{raw}\" is neither an object nor an array"
        )),
    }
}

fn remove(doc: &mut Value, path: &[String], raw: &str) -> Result<Value, String> {
    let Some((last, parent_path)) = path.split_last() else {
        return Err("cannot remove the whole document".to_string());
    };
    let missing = || format!("path \"{raw}\" does not exist");
    match get_mut(doc, parent_path).ok_or_else(missing)? {
        Value::Object(m) => m.remove(last).ok_or_else(missing),
        Value::Array(a) => match parse_index(last) {
            Some(i) if i < a.len() => Ok(a.remove(i)),
            _ => Err(missing()),
        },
        _ => Err(missing()),
    }
}

/// JSON equality where numbers compare by value (`1` equals `1.0`).
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y || matches!((x.as_f64(), y.as_f64()), (Some(p), Some(q)) if p == q)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => objects_equal(x, y),
        _ => a == b,
    }
}

fn objects_equal(x: &Map<String, Value>, y: &Map<String, Value>) -> bool {
    x.len() == y.len()
        && x.iter()
            .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
}
