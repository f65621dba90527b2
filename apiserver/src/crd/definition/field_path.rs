//! Field paths through a structural schema (upstream's cel.ValidFieldPath),
//! for selectable fields and the fieldPath of validation rules.

use super::{field, props};
use serde_json::Value;

/// Splits a field path into `.`, `[`, `]` and the text between them; a
/// single-quoted string is one token.
fn path_tokens(s: &str) -> Vec<&str> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let end = match b[i] {
            b'\'' => {
                let mut j = i + 1;
                while j < b.len() && !(b[j] == b'\'' && b[j - 1] != b'\\') {
                    j += 1;
                }
                (j + 1).min(b.len())
            }
            b'.' | b'[' | b']' => i + 1,
            _ => (i..b.len())
                .find(|&j| matches!(b[j], b'.' | b'[' | b']'))
                .unwrap_or(b.len()),
        };
        out.push(&s[i..end]);
        i = end;
    }
    out
}

/// Upstream's cel.ValidFieldPath: walks `.a.b` (and `['k']` when allowed)
/// through the structural schema, returning the path's segments (rendered as
/// field.Path parts) and the schema it points at.
pub(super) fn resolve_field_path<'a>(
    path: &str,
    schema: &'a Value,
    allow_array: bool,
) -> Result<(Vec<String>, Option<&'a Value>), String> {
    const INVALID: &str = "does not refer to a valid field";
    const END: &str = "unexpected end of JSON path";
    let mut segments = Vec::new();
    let mut current = Some(schema);
    let mut step = |name: &str, segments: &mut Vec<String>| -> Result<(), String> {
        let s = current.ok_or(INVALID)?;
        if let Some(props) = props(s).filter(|p| !p.is_empty()) {
            current = Some(props.get(name).ok_or(INVALID)?);
            let dot = if segments.is_empty() { "" } else { "." };
            segments.push(format!("{dot}{name}"));
        } else if let Some(extra) = field(s, "additionalProperties") {
            current = extra.is_object().then_some(extra);
            segments.push(format!("[{name}]"));
        } else {
            return Err(INVALID.into());
        }
        Ok(())
    };
    let mut tokens = path_tokens(path).into_iter();
    while let Some(tok) = tokens.next() {
        match tok {
            "[" => {
                if !allow_array {
                    return Err("array notation is not allowed".into());
                }
                let quoted = tokens.next().ok_or(END)?;
                let inner = quoted
                    .strip_prefix('\'')
                    .and_then(|q| q.strip_suffix('\''))
                    .filter(|_| quoted.len() >= 2)
                    .ok_or_else(|| format!("expected single quoted string but got {quoted}"))?;
                step(
                    &inner.replace("\\'", "'").replace("\\\\", "\\"),
                    &mut segments,
                )?;
                match tokens.next() {
                    None => return Err(END.into()),
                    Some("]") => {}
                    Some(t) => return Err(format!("expected ] but got {t}")),
                }
            }
            "." => step(tokens.next().ok_or(END)?, &mut segments)?,
            other => return Err(format!("expected [ or . but got: {other}")),
        }
    }
    Ok((segments, current))
}
