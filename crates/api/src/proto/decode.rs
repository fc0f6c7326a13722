//! One protobuf message to the JSON value Go's encoding/json gives for the same object.
//!
//! Start at [`message_to_json`]; the per-field rules are in [`table::Presence`], the special
//! messages (Time, Quantity, IntOrString, ...) in [`special`]. One pass over the bytes: linear in
//! the body.

use base64::Engine;
use serde_json::{Map, Number, Value};

use super::schema::MESSAGES;
use super::table::{Card, Field, Message, Presence, Special, Ty};
use super::wire::{self, FIXED32, FIXED64, LEN, ProtoError, Reader, VARINT};

/// Deeper nesting than any Kubernetes object has; bounds the recursion on hostile input.
pub const MAX_DEPTH: u32 = 100;

/// What was read for one field.
enum Slot {
    Empty,
    One(Value),
    Many(Vec<Value>),
    Map(Map<String, Value>),
}

/// Decode `data` as message `MESSAGES[index]` into its JSON form.
pub fn message_to_json(index: u16, data: &[u8], depth: u32) -> Result<Value, ProtoError> {
    if depth > MAX_DEPTH {
        return Err(ProtoError::TooDeep(MAX_DEPTH));
    }
    let msg = &MESSAGES[usize::from(index)];
    if let Some(s) = msg.special {
        return special(s, msg, data);
    }
    let mut slots: Vec<Slot> = msg.fields.iter().map(|_| Slot::Empty).collect();
    let mut r = Reader::new(data);
    while !r.at_end() {
        let (number, wire_type) = r.key()?;
        let Ok(pos) = msg.fields.binary_search_by_key(&number, |f| f.number) else {
            r.skip(wire_type)?;
            continue;
        };
        let f = &msg.fields[pos];
        read_field(f, wire_type, &mut r, &mut slots[pos], depth)?;
    }
    let mut out = Map::new();
    for (f, slot) in msg.fields.iter().zip(slots) {
        place(f, slot, &mut out, depth)?;
    }
    Ok(Value::Object(out))
}

fn read_field(
    f: &Field,
    wire_type: u8,
    r: &mut Reader<'_>,
    slot: &mut Slot,
    depth: u32,
) -> Result<(), ProtoError> {
    match f.card {
        Card::One => *slot = Slot::One(value(f, f.ty, wire_type, r, depth)?),
        Card::Rep => {
            if !matches!(slot, Slot::Many(_)) {
                *slot = Slot::Many(Vec::new());
            }
            let Slot::Many(items) = slot else {
                return Ok(());
            };
            if wire_type == LEN && packable(f.ty) {
                let mut packed = Reader::new(r.bytes()?);
                while !packed.at_end() {
                    items.push(value(f, f.ty, scalar_wire_type(f.ty), &mut packed, depth)?);
                }
            } else {
                items.push(value(f, f.ty, wire_type, r, depth)?);
            }
        }
        Card::Map(key_ty) => {
            if wire_type != LEN {
                return Err(wrong(f, wire_type));
            }
            let (k, v) = map_entry(f, key_ty, r.bytes()?, depth)?;
            if !matches!(slot, Slot::Map(_)) {
                *slot = Slot::Map(Map::new());
            }
            if let Slot::Map(m) = slot {
                m.insert(k, v);
            }
        }
    }
    Ok(())
}

fn map_entry(
    f: &Field,
    key_ty: Ty,
    entry: &[u8],
    depth: u32,
) -> Result<(String, Value), ProtoError> {
    let mut r = Reader::new(entry);
    let (mut key, mut val) = (None, None);
    while !r.at_end() {
        match r.key()? {
            (1, wt) => key = Some(value(f, key_ty, wt, &mut r, depth)?),
            (2, wt) => val = Some(value(f, f.ty, wt, &mut r, depth)?),
            (_, wt) => r.skip(wt)?,
        }
    }
    let key = match key.unwrap_or_else(|| zero(key_ty)) {
        Value::String(s) => s,
        other => other.to_string(),
    };
    let val = match val {
        Some(v) => v,
        None => zero_value(f.ty, depth)?,
    };
    Ok((key, val))
}

/// Put one field's JSON into `out` per its presence rule.
fn place(
    f: &Field,
    slot: Slot,
    out: &mut Map<String, Value>,
    depth: u32,
) -> Result<(), ProtoError> {
    let v = match slot {
        Slot::Empty => None,
        Slot::One(v) => Some(v),
        Slot::Many(v) => Some(Value::Array(v)),
        Slot::Map(m) => Some(Value::Object(m)),
    };
    let collection = f.card != Card::One;
    let v = match (f.presence, v) {
        (Presence::Inline, v) => {
            let inner = match v {
                Some(v) => v,
                None => zero_value(f.ty, depth)?,
            };
            if let Value::Object(m) = inner {
                out.extend(m);
            }
            return Ok(());
        }
        (Presence::Wire, v) => v,
        (Presence::WireOrNull, v) => Some(v.unwrap_or(Value::Null)),
        (Presence::OmitEmpty, v) => v.filter(|v| !is_zero(v)),
        (Presence::NullIfEmpty, v) => Some(v.filter(|v| !is_zero(v)).unwrap_or(Value::Null)),
        (Presence::Always, Some(v)) => Some(v),
        (Presence::Always, None) if collection => Some(Value::Null),
        (Presence::Always, None) => Some(zero_value(f.ty, depth)?),
    };
    if let Some(v) = v {
        out.insert(f.json.to_string(), v);
    }
    Ok(())
}

/// Go's zero value of a field of type `ty`, as JSON.
fn zero_value(ty: Ty, depth: u32) -> Result<Value, ProtoError> {
    match ty {
        Ty::Msg(i) => message_to_json(i, &[], depth + 1),
        other => Ok(zero(other)),
    }
}

fn zero(ty: Ty) -> Value {
    match ty {
        Ty::Str => Value::String(String::new()),
        Ty::Bool => Value::Bool(false),
        Ty::Bytes | Ty::Msg(_) => Value::Null,
        Ty::F32 | Ty::F64 | Ty::I32 | Ty::I64 | Ty::U32 | Ty::U64 => Value::from(0),
    }
}

/// Go's `omitempty` test on the JSON of a value.
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

fn packable(ty: Ty) -> bool {
    !matches!(ty, Ty::Str | Ty::Bytes | Ty::Msg(_))
}

fn scalar_wire_type(ty: Ty) -> u8 {
    match ty {
        Ty::F64 => FIXED64,
        Ty::F32 => FIXED32,
        _ => VARINT,
    }
}

fn wrong(f: &Field, wire_type: u8) -> ProtoError {
    ProtoError::WrongWireType {
        field: f.json,
        wire_type,
    }
}

/// One value of type `ty` from the reader.
fn value(
    f: &Field,
    ty: Ty,
    wire_type: u8,
    r: &mut Reader<'_>,
    depth: u32,
) -> Result<Value, ProtoError> {
    let expected = match ty {
        Ty::Str | Ty::Bytes | Ty::Msg(_) => LEN,
        other => scalar_wire_type(other),
    };
    if wire_type != expected {
        return Err(wrong(f, wire_type));
    }
    Ok(match ty {
        Ty::Str => Value::String(wire::utf8(r.bytes()?, f.json)?.to_string()),
        Ty::Bytes => Value::String(base64::engine::general_purpose::STANDARD.encode(r.bytes()?)),
        Ty::Msg(i) => message_to_json(i, r.bytes()?, depth + 1)?,
        Ty::Bool => Value::Bool(r.varint()? != 0),
        // int32 is sign-extended to 64 bits on the wire; the cast takes the low half back.
        Ty::I32 => Value::from(r.varint()? as i32),
        Ty::I64 => Value::from(r.varint()? as i64),
        Ty::U32 => Value::from(r.varint()? as u32),
        Ty::U64 => Value::from(r.varint()?),
        Ty::F64 => float(f, f64::from_bits(r.fixed64()?))?,
        Ty::F32 => float(f, f64::from(f32::from_bits(r.fixed32()?)))?,
    })
}

fn float(f: &Field, x: f64) -> Result<Value, ProtoError> {
    Number::from_f64(x)
        .map(Value::Number)
        .ok_or(ProtoError::NotRepresentable(f.json))
}

/// Scalar fields of a special message, by number: (1, 2, 3).
struct Parts<'a> {
    varints: [Option<u64>; 4],
    bytes: [Option<&'a [u8]>; 4],
}

fn parts<'a>(msg: &Message, data: &'a [u8]) -> Result<Parts<'a>, ProtoError> {
    let mut p = Parts {
        varints: [None; 4],
        bytes: [None; 4],
    };
    let mut r = Reader::new(data);
    while !r.at_end() {
        let (n, wt) = r.key()?;
        let slot = usize::try_from(n).ok().filter(|n| *n < 4);
        match (slot, wt) {
            (Some(i), VARINT) => p.varints[i] = Some(r.varint()?),
            (Some(i), LEN) => p.bytes[i] = Some(r.bytes()?),
            (Some(_), other) => {
                return Err(ProtoError::WrongWireType {
                    field: msg.name,
                    wire_type: other,
                });
            }
            (None, other) => r.skip(other)?,
        }
    }
    Ok(p)
}

/// The JSON form of a special message (its Go MarshalJSON).
fn special(s: Special, msg: &Message, data: &[u8]) -> Result<Value, ProtoError> {
    let p = parts(msg, data)?;
    let text = |i: usize| -> Result<String, ProtoError> {
        Ok(wire::utf8(p.bytes[i].unwrap_or(&[]), msg.name)?.to_string())
    };
    Ok(match s {
        Special::Time | Special::MicroTime => {
            if data.is_empty() {
                return Ok(Value::Null);
            }
            let seconds = p.varints[1].unwrap_or(0) as i64;
            let nanos = p.varints[2].unwrap_or(0) as i32;
            super::time::rfc3339(seconds, nanos, s == Special::MicroTime)
                .map(Value::String)
                .unwrap_or(Value::Null)
        }
        Special::Duration => {
            Value::String(super::time::go_duration(p.varints[1].unwrap_or(0) as i64))
        }
        Special::Quantity => {
            let q = text(1)?;
            Value::String(if q.is_empty() { "0".into() } else { q })
        }
        Special::IntOrString => {
            if p.varints[1].unwrap_or(0) == 1 {
                Value::String(text(3)?)
            } else {
                Value::from(p.varints[2].unwrap_or(0) as i32)
            }
        }
        Special::RawJson => match p.bytes[1] {
            None | Some([]) => Value::Null,
            Some(raw) => {
                serde_json::from_slice(raw).map_err(|e| ProtoError::InvalidEmbeddedJson {
                    field: msg.name,
                    reason: e.to_string(),
                })?
            }
        },
        Special::Items => {
            let mut items = Vec::new();
            let mut r = Reader::new(data);
            while !r.at_end() {
                match r.key()? {
                    (1, LEN) => items.push(Value::String(wire::utf8(r.bytes()?, msg.name)?.into())),
                    (1, wt) => {
                        return Err(ProtoError::WrongWireType {
                            field: msg.name,
                            wire_type: wt,
                        });
                    }
                    (_, wt) => r.skip(wt)?,
                }
            }
            Value::Array(items)
        }
    })
}
