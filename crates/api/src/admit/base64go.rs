//! Standard base64 as Go's `encoding/base64.StdEncoding` reads and writes it: the encoding of
//! every `[]byte` field in Kubernetes JSON (Secret `data`, ConfigMap `binaryData`), with Go's
//! error offsets (`illegal base64 data at input byte N`).
//!
//! Start at [`decode`]; [`encode`] writes the canonical (padded) form.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Why a string is not valid base64: Go's `CorruptInputError` (the byte offset).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("illegal base64 data at input byte {0}")]
pub struct CorruptInput(pub usize);

fn sextet(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

fn is_newline(c: u8) -> bool {
    c == b'\n' || c == b'\r'
}

/// Decodes `src` as Go's `StdEncoding.Decode` does: padding required, `\r` and `\n` skipped,
/// the first bad byte reported at Go's offset.
pub fn decode(src: &[u8]) -> Result<Vec<u8>, CorruptInput> {
    let mut out = Vec::with_capacity(src.len() / 4 * 3);
    let mut si = 0;
    loop {
        // One quantum (Go's decodeQuantum).
        let mut dbuf = [0u8; 4];
        let mut dlen = 4;
        let mut j = 0;
        let mut trailing = None;
        while j < 4 {
            if si == src.len() {
                if j == 0 {
                    return Ok(out);
                }
                return Err(CorruptInput(si - j));
            }
            let c = src[si];
            si += 1;
            if let Some(v) = sextet(c) {
                dbuf[j] = v;
                j += 1;
                continue;
            }
            if is_newline(c) {
                continue;
            }
            if c != b'=' || j < 2 {
                return Err(CorruptInput(si - 1));
            }
            if j == 2 {
                // "==" expected: the first '=' is consumed.
                while si < src.len() && is_newline(src[si]) {
                    si += 1;
                }
                if si == src.len() {
                    return Err(CorruptInput(src.len()));
                }
                if src[si] != b'=' {
                    return Err(CorruptInput(si - 1));
                }
                si += 1;
            }
            while si < src.len() && is_newline(src[si]) {
                si += 1;
            }
            if si < src.len() {
                trailing = Some(CorruptInput(si));
            }
            dlen = j;
            break;
        }
        let val = u32::from(dbuf[0]) << 18
            | u32::from(dbuf[1]) << 12
            | u32::from(dbuf[2]) << 6
            | u32::from(dbuf[3]);
        let bytes = [(val >> 16) as u8, (val >> 8) as u8, val as u8];
        out.extend_from_slice(&bytes[..dlen - 1]);
        if let Some(e) = trailing {
            return Err(e);
        }
    }
}

/// Encodes `data` with padding (Go's `StdEncoding.EncodeToString`).
pub fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_skips_newlines() {
        for s in ["", "f", "fo", "foo", "foob", "fooba", "foobar"] {
            let e = encode(s.as_bytes());
            assert_eq!(decode(e.as_bytes()).unwrap(), s.as_bytes(), "{e}");
        }
        assert_eq!(encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(encode(b"fo"), "Zm8=");
        assert_eq!(decode(b"Zm9v\nYmFy\r\n").unwrap(), b"foobar");
    }

    #[test]
    fn errors_carry_go_offsets() {
        // Offsets as Go 1.22 reports them for the same inputs.
        assert_eq!(decode(b"not base64!").unwrap_err(), CorruptInput(3));
        assert_eq!(decode(b"Zm9").unwrap_err(), CorruptInput(0));
        assert_eq!(decode(b"Zm9vY").unwrap_err(), CorruptInput(4));
        assert_eq!(decode(b"Zm8").unwrap_err(), CorruptInput(0));
        assert_eq!(decode(b"Zg=").unwrap_err(), CorruptInput(3));
        assert_eq!(decode(b"Zm8=Zm8=").unwrap_err(), CorruptInput(4));
        assert_eq!(decode(b"=Zm8").unwrap_err(), CorruptInput(0));
        assert_eq!(
            decode(b"Zm8=Zm8=").unwrap_err().to_string(),
            "illegal base64 data at input byte 4"
        );
    }
}
