//! Protobuf wire format reader: varints, length-delimited fields, fixed32/64, skipping.
//!
//! Start at [`Reader::key`]; every read is bounds-checked and fails with a typed [`ProtoError`].

use thiserror::Error;

/// Why protobuf bytes could not be decoded. Texts follow the gogo-generated unmarshallers
/// upstream's API server uses (`unexpected EOF`, `proto: integer overflow`, ...).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProtoError {
    #[error("unexpected EOF")]
    Truncated,
    #[error("proto: integer overflow")]
    VarintOverflow,
    #[error("proto: illegal tag {tag} (wire type {wire_type})")]
    IllegalTag { tag: u64, wire_type: u8 },
    #[error("proto: illegal wireType {0}")]
    UnknownWireType(u8),
    #[error("proto: wrong wireType = {wire_type} for field {field}")]
    WrongWireType { field: &'static str, wire_type: u8 },
    #[error("proto: invalid UTF-8 in string field {0}")]
    InvalidUtf8(&'static str),
    #[error("proto: field {field} does not hold JSON: {reason}")]
    InvalidEmbeddedJson { field: &'static str, reason: String },
    #[error("proto: field {0} holds a number JSON cannot represent")]
    NotRepresentable(&'static str),
    #[error("proto: messages nested deeper than {0} levels")]
    TooDeep(u32),
    #[error("empty data")]
    Empty,
    #[error(
        "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"
    )]
    NoPrefix,
    #[error("empty body")]
    EmptyBody,
    #[error("Object 'Kind' is missing in '{0}'")]
    MissingKind(String),
    #[error("Object 'apiVersion' is missing in '{0}'")]
    MissingVersion(String),
    #[error(
        "no kind \"{kind}\" is registered for version \"{api_version}\" in scheme \"pkg/api/legacyscheme/scheme.go:30\""
    )]
    NotRegistered { kind: String, api_version: String },
}

/// Protobuf wire types.
pub const VARINT: u8 = 0;
pub const FIXED64: u8 = 1;
pub const LEN: u8 = 2;
pub const FIXED32: u8 = 5;

/// A cursor over one message's bytes.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn varint(&mut self) -> Result<u64, ProtoError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *self.buf.get(self.pos).ok_or(ProtoError::Truncated)?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(ProtoError::VarintOverflow)
    }

    /// The next field's number and wire type.
    pub fn key(&mut self) -> Result<(u32, u8), ProtoError> {
        let key = self.varint()?;
        let wire_type = (key & 7) as u8;
        let tag = key >> 3;
        if tag == 0 || tag > u64::from(u32::MAX >> 3) {
            return Err(ProtoError::IllegalTag { tag, wire_type });
        }
        Ok((tag as u32, wire_type))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        let end = self.pos.checked_add(n).ok_or(ProtoError::Truncated)?;
        let out = self.buf.get(self.pos..end).ok_or(ProtoError::Truncated)?;
        self.pos = end;
        Ok(out)
    }

    /// A length-delimited payload.
    pub fn bytes(&mut self) -> Result<&'a [u8], ProtoError> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| ProtoError::Truncated)?;
        self.take(len)
    }

    pub fn fixed32(&mut self) -> Result<u32, ProtoError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn fixed64(&mut self) -> Result<u64, ProtoError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// Skip a field of an unknown number.
    pub fn skip(&mut self, wire_type: u8) -> Result<(), ProtoError> {
        match wire_type {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LEN => self.bytes().map(drop),
            FIXED32 => self.take(4).map(drop),
            other => Err(ProtoError::UnknownWireType(other)),
        }
    }
}

/// Append a varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Append a varint field.
pub fn put_varint_field(out: &mut Vec<u8>, number: u32, v: u64) {
    put_varint(out, u64::from(number) << 3 | u64::from(VARINT));
    put_varint(out, v);
}

/// Append a length-delimited field (string, bytes, message).
pub fn put_len_field(out: &mut Vec<u8>, number: u32, payload: &[u8]) {
    put_varint(out, u64::from(number) << 3 | u64::from(LEN));
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// Read a string field's payload as UTF-8.
pub fn utf8<'a>(bytes: &'a [u8], field: &'static str) -> Result<&'a str, ProtoError> {
    std::str::from_utf8(bytes).map_err(|_| ProtoError::InvalidUtf8(field))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_bounds() {
        let mut r = Reader::new(&[0xac, 0x02, 0x08]);
        assert_eq!(r.varint().unwrap(), 300);
        assert_eq!(r.key().unwrap(), (1, VARINT));
        assert!(r.at_end());
        assert_eq!(Reader::new(&[0x80]).varint(), Err(ProtoError::Truncated));
        assert_eq!(
            Reader::new(&[0xff; 11]).varint(),
            Err(ProtoError::VarintOverflow)
        );
        assert_eq!(
            Reader::new(&[0x00]).key(),
            Err(ProtoError::IllegalTag {
                tag: 0,
                wire_type: 0
            })
        );
        // A length that runs past the end.
        assert_eq!(
            Reader::new(&[0x05, b'a']).bytes(),
            Err(ProtoError::Truncated)
        );
        assert_eq!(
            Reader::new(&[1, 2, 3]).fixed32(),
            Err(ProtoError::Truncated)
        );
        assert_eq!(Reader::new(&[1, 0, 0, 0, 0, 0, 0, 0]).fixed64().unwrap(), 1);
        assert_eq!(
            Reader::new(&[]).skip(3),
            Err(ProtoError::UnknownWireType(3))
        );
        assert_eq!(utf8(&[0xff], "name"), Err(ProtoError::InvalidUtf8("name")));
    }
}
