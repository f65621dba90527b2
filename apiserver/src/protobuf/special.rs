//! Messages whose JSON form is not an object of their fields: Kubernetes
//! gives these Go types custom JSON marshalling, so a time is an RFC 3339
//! string, a quantity a string, an IntOrString a number or a string, and so on.

use base64::Engine as _;
use serde_json::Value;

use super::wire::{Reader, WireType};
use super::DecodeError;

/// meta/v1 Time {seconds 1, nanos 2}: Go renders it in UTC to the second;
/// MicroTime to the microsecond. `None` is the zero time (an empty message),
/// which Kubernetes renders as null and we omit.
pub(super) fn time(buf: &[u8], micro: bool) -> Result<Option<Value>, DecodeError> {
    let (mut seconds, mut nanos, mut present) = (0i64, 0i32, false);
    let mut r = Reader::new(buf);
    while let Some((number, wire_type)) = r.key()? {
        match (number, wire_type) {
            (1, WireType::Varint) => seconds = r.varint()? as i64,
            (2, WireType::Varint) => nanos = r.varint()? as i32,
            _ => {
                r.skip(wire_type)?;
                continue;
            }
        }
        present = true;
    }
    if !present {
        return Ok(None);
    }
    let ts = jiff::Timestamp::new(seconds, nanos)
        .map_err(|e| DecodeError::malformed(format!("time out of range: {e}")))?;
    let mut s = ts.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    if micro {
        s.push_str(&format!(".{:06}", ts.subsec_nanosecond() / 1000));
    }
    s.push('Z');
    Ok(Some(Value::String(s)))
}

/// api/resource Quantity {string 1}: its JSON form is the string. Upstream
/// re-renders it canonically ("1000m" -> "1"); we keep what the client sent.
pub(super) fn quantity(buf: &[u8]) -> Result<Value, DecodeError> {
    let s = string_field(buf, 1)?.unwrap_or_else(|| "0".to_owned());
    Ok(Value::String(s))
}

/// util/intstr IntOrString {type 1 (0 int, 1 string), intVal 2, strVal 3}.
pub(super) fn int_or_string(buf: &[u8]) -> Result<Value, DecodeError> {
    let (mut kind, mut int_val, mut str_val) = (0u64, 0i32, String::new());
    let mut r = Reader::new(buf);
    while let Some((number, wire_type)) = r.key()? {
        match (number, wire_type) {
            (1, WireType::Varint) => kind = r.varint()?,
            (2, WireType::Varint) => int_val = r.varint()? as i32,
            (3, WireType::Len) => str_val = utf8(r.len_delimited()?)?,
            _ => r.skip(wire_type)?,
        }
    }
    match kind {
        0 => Ok(Value::from(int_val)),
        1 => Ok(Value::String(str_val)),
        other => Err(DecodeError::malformed(format!("IntOrString type {other}"))),
    }
}

/// meta/v1 Duration {duration 1: int64 nanoseconds}: rendered as Go's
/// time.Duration.String() ("1m30s").
pub(super) fn duration(buf: &[u8]) -> Result<Value, DecodeError> {
    let mut nanos = 0i64;
    let mut r = Reader::new(buf);
    while let Some((number, wire_type)) = r.key()? {
        match (number, wire_type) {
            (1, WireType::Varint) => nanos = r.varint()? as i64,
            _ => r.skip(wire_type)?,
        }
    }
    Ok(Value::String(go_duration(nanos)))
}

/// runtime RawExtension {raw 1} and meta/v1 FieldsV1 {Raw 1}: the bytes are
/// JSON that the JSON form embeds as is. A RawExtension may instead hold a
/// nested protobuf object, which we decode in turn. Empty is `None`.
pub(super) fn raw_json(buf: &[u8]) -> Result<Option<Value>, DecodeError> {
    let raw = bytes_field(buf, 1)?.unwrap_or_default();
    if raw.is_empty() {
        return Ok(None);
    }
    if raw.starts_with(super::MAGIC) {
        return super::decode(raw).map(Some);
    }
    serde_json::from_slice(raw)
        .map(Some)
        .map_err(|e| DecodeError::malformed(format!("embedded JSON: {e}")))
}

/// A Go `type X []string` (authentication ExtraValue, meta Verbs): a message
/// {repeated string items = 1} on the wire, a bare array in JSON.
pub(super) fn string_list(buf: &[u8]) -> Result<Value, DecodeError> {
    let mut items = Vec::new();
    let mut r = Reader::new(buf);
    while let Some((number, wire_type)) = r.key()? {
        match (number, wire_type) {
            (1, WireType::Len) => items.push(Value::String(utf8(r.len_delimited()?)?)),
            _ => r.skip(wire_type)?,
        }
    }
    Ok(Value::Array(items))
}

/// Protobuf `bytes` fields are base64 strings in JSON, as Go's []byte.
pub(super) fn base64(bytes: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
}

pub(super) fn utf8(bytes: &[u8]) -> Result<String, DecodeError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::malformed("string is not UTF-8"))
}

fn string_field(buf: &[u8], field: u32) -> Result<Option<String>, DecodeError> {
    bytes_field(buf, field)?.map(utf8).transpose()
}

fn bytes_field(buf: &[u8], field: u32) -> Result<Option<&[u8]>, DecodeError> {
    let mut found = None;
    let mut r = Reader::new(buf);
    while let Some((number, wire_type)) = r.key()? {
        if number == field && wire_type == WireType::Len {
            found = Some(r.len_delimited()?);
        } else {
            r.skip(wire_type)?;
        }
    }
    Ok(found)
}

/// Go's time.Duration.String(): "0s", "1.5s", "1m30s", "1h0m0s", and below a
/// second the largest unit that keeps the integer part non-zero ("500ms").
fn go_duration(nanos: i64) -> String {
    let neg = nanos < 0;
    let mut u = nanos.unsigned_abs();
    let mut out = String::new();
    if u == 0 {
        return "0s".to_owned();
    }
    if u < 1_000_000_000 {
        let (prec, unit) = match u {
            0..1_000 => (0, "ns"),
            1_000..1_000_000 => (3, "µs"),
            _ => (6, "ms"),
        };
        let frac = frac(&mut u, prec);
        out = format!("{u}{frac}{unit}");
    } else {
        let frac = frac(&mut u, 9);
        let (secs, mins) = (u % 60, u / 60);
        out.push_str(&format!("{secs}{frac}s"));
        if mins > 0 {
            let (m, hours) = (mins % 60, mins / 60);
            out = format!("{m}m{out}");
            if hours > 0 {
                out = format!("{hours}h{out}");
            }
        }
    }
    if neg {
        out.insert(0, '-');
    }
    out
}

/// Splits off `prec` decimal digits of `v` as ".ddd" without trailing zeros.
fn frac(v: &mut u64, prec: u32) -> String {
    let scale = 10u64.pow(prec);
    let f = *v % scale;
    *v /= scale;
    if f == 0 {
        return String::new();
    }
    let digits = format!("{f:0width$}", width = prec as usize);
    format!(".{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn varint(field: u8, v: u64) -> Vec<u8> {
        let mut out = vec![field << 3];
        let mut v = v;
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    fn len(field: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![field << 3 | 2, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn times_render_as_rfc3339_in_utc() {
        let t = [varint(1, 1_795_305_600), varint(2, 123_456_789)].concat();
        assert_eq!(
            time(&t, false).unwrap(),
            Some(json!("2026-11-22T00:00:00Z"))
        );
        assert_eq!(
            time(&t, true).unwrap(),
            Some(json!("2026-11-22T00:00:00.123456Z"))
        );
        assert_eq!(time(&[], false).unwrap(), None);
        assert_eq!(
            time(&varint(1, 0), false).unwrap(),
            Some(json!("1970-01-01T00:00:00Z"))
        );
        let before_epoch = varint(1, (-86_400i64) as u64);
        assert_eq!(
            time(&before_epoch, false).unwrap(),
            Some(json!("1969-12-31T00:00:00Z"))
        );
    }

    #[test]
    fn quantities_and_int_or_strings() {
        assert_eq!(quantity(&len(1, b"100Mi")).unwrap(), json!("100Mi"));
        assert_eq!(quantity(&[]).unwrap(), json!("0"));
        let int = [varint(1, 0), varint(2, 8080), len(3, b"")].concat();
        assert_eq!(int_or_string(&int).unwrap(), json!(8080));
        let s = [varint(1, 1), varint(2, 0), len(3, b"25%")].concat();
        assert_eq!(int_or_string(&s).unwrap(), json!("25%"));
        assert_eq!(int_or_string(&[]).unwrap(), json!(0));
        assert!(int_or_string(&varint(1, 2)).is_err());
    }

    #[test]
    fn durations_render_like_go() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (500_000_000, "500ms"),
            (1_500_000_000, "1.5s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_000_000_001, "1h2m3.000000001s"),
            (-90_000_000_000, "-1m30s"),
        ];
        for (nanos, want) in cases {
            assert_eq!(go_duration(nanos), want, "{nanos}");
        }
        assert_eq!(
            duration(&varint(1, 90_000_000_000)).unwrap(),
            json!("1m30s")
        );
    }

    #[test]
    fn raw_json_and_string_lists() {
        assert_eq!(
            raw_json(&len(1, br#"{"f:a":{}}"#)).unwrap(),
            Some(json!({"f:a": {}}))
        );
        assert_eq!(raw_json(&[]).unwrap(), None);
        assert!(raw_json(&len(1, b"{nope")).is_err());
        let list = [len(1, b"a"), len(1, b"b")].concat();
        assert_eq!(string_list(&list).unwrap(), json!(["a", "b"]));
        assert_eq!(base64(b"hunter2"), json!("aHVudGVyMg=="));
    }
}
