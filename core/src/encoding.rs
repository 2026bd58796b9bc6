//! Byte-level helpers shared by token parsing and key admission.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// Decodes unpadded base64url (RFC 7515 section 2). Rejects padding, the standard
/// alphabet, whitespace and non-zero trailing bits, so one token has one encoding.
pub fn base64url_decode(text: &[u8]) -> Option<Vec<u8>> {
    fn sextet(byte: u8) -> Option<u32> {
        match byte {
            b'A'..=b'Z' => Some(u32::from(byte - b'A')),
            b'a'..=b'z' => Some(u32::from(byte - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(byte - b'0') + 52),
            b'-' => Some(62),
            b'_' => Some(63),
            _ => None,
        }
    }
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    for &byte in text {
        acc = (acc << 6) | sextet(byte)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    // Leftover bits must be zero: otherwise two strings decode to the same bytes.
    if acc != 0 {
        return None;
    }
    Some(out)
}

/// Encodes bytes as unpadded base64url.
pub fn base64url_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Parses JSON, rejecting duplicate object keys at any depth. serde_json keeps the last
/// duplicate silently; a token saying `{"sub":"a","sub":"admin"}` must not be read either way.
pub fn parse_json_strict(bytes: &[u8]) -> Result<Value, String> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue::deserialize_from(&mut deserializer).map_err(|e| e.to_string())?;
    deserializer.end().map_err(|e| e.to_string())?;
    Ok(value)
}

struct StrictValue;

impl StrictValue {
    fn deserialize_from<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictSeed;

impl<'de> de::DeserializeSeed<'de> for StrictSeed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictSeed)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            let value = map.next_value_seed(StrictSeed)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Makes a claim value safe for an HTTP header: printable ASCII passes, every other
/// byte (and `%`) is percent-encoded, so claim contents can never inject header lines.
pub fn header_safe(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A comma-separated header value whose items cannot be confused: each is made
/// [`header_safe`], with commas inside an item percent-encoded too.
pub fn list_header_value<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items
        .map(|item| header_safe(item).replace(',', "%2C"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trips_every_length() {
        for len in 0..40u8 {
            let bytes: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(
                base64url_decode(base64url_encode(&bytes).as_bytes()),
                Some(bytes)
            );
        }
    }

    #[test]
    fn base64url_rejects_other_encodings() {
        for bad in ["YQ==", "Y+8", "Y/8", "YQ ", "Y", "YR"] {
            assert_eq!(base64url_decode(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(base64url_decode(b"YQ"), Some(b"a".to_vec()));
    }

    #[test]
    fn strict_json_rejects_duplicate_keys_at_any_depth() {
        assert!(parse_json_strict(br#"{"sub":"a","sub":"admin"}"#).is_err());
        assert!(parse_json_strict(br#"{"act":{"sub":"a","sub":"b"}}"#).is_err());
        assert!(parse_json_strict(br#"[{"x":1,"x":1}]"#).is_err());
        assert!(parse_json_strict(br#"{"a":1} trailing"#).is_err());
        let ok = parse_json_strict(br#"{"a":[1,2.5,"x",null,true],"b":{"c":-3}}"#);
        assert_eq!(
            ok.ok(),
            serde_json::from_str(r#"{"a":[1,2.5,"x",null,true],"b":{"c":-3}}"#).ok()
        );
    }

    #[test]
    fn header_safe_escapes_control_and_non_ascii() {
        assert_eq!(header_safe("agent-1"), "agent-1");
        assert_eq!(header_safe("a\r\nx-admin: 1"), "a%0D%0Ax-admin: 1");
        assert_eq!(header_safe("é%"), "%C3%A9%25");
        let list = list_header_value(["a,b", "c"].into_iter());
        assert_eq!(list, "a%2Cb,c");
    }
}
