//! `WWW-Authenticate` challenges (RFC 9110 §11.6.1): a scheme and its
//! parameters, several challenges possibly in one header, as registries
//! send them (`Bearer realm="…",service="…",scope="…"`, `Basic realm="…"`).

use std::collections::BTreeMap;

/// One challenge: the scheme lower-cased, parameter names lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parses every challenge of the given header values. Malformed parts are
/// skipped rather than failing the whole header.
pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Challenge> {
    let mut out = Vec::new();
    for v in values {
        Parser {
            s: v.as_bytes(),
            i: 0,
        }
        .challenges(&mut out);
    }
    out
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn skip_ws_commas(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }

    fn token(&mut self) -> String {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }

    /// An unquoted value: leniently up to the next comma or space (some
    /// servers leave URLs unquoted).
    fn bare(&mut self) -> String {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| !matches!(c, b',' | b' ' | b'\t' | b'"'))
        {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }

    fn quoted(&mut self) -> String {
        self.i += 1; // the opening quote
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.i += 1;
                    }
                }
                _ => out.push(c),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn challenges(&mut self, out: &mut Vec<Challenge>) {
        loop {
            self.skip_ws_commas();
            if self.peek().is_none() {
                return;
            }
            let scheme = self.token();
            if scheme.is_empty() {
                self.i += 1; // not a token character: step over it
                continue;
            }
            let mut params = BTreeMap::new();
            loop {
                let before = self.i;
                self.skip_ws_commas();
                let name = self.token();
                self.skip_ws();
                if name.is_empty() || self.peek() != Some(b'=') {
                    // The next challenge's scheme (or the end): not ours.
                    self.i = before;
                    break;
                }
                self.i += 1;
                self.skip_ws();
                let value = if self.peek() == Some(b'"') {
                    self.quoted()
                } else {
                    self.bare()
                };
                params.insert(name.to_ascii_lowercase(), value);
            }
            out.push(Challenge {
                scheme: scheme.to_ascii_lowercase(),
                params,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_with_quoted_params() {
        let c = parse([
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:library/busybox:pull""#,
        ]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.example/token"));
        assert_eq!(c[0].param("service"), Some("registry.example"));
        assert_eq!(c[0].param("scope"), Some("repository:library/busybox:pull"));
    }

    #[test]
    fn several_challenges_tokens_and_escapes() {
        let c = parse([
            r#"Basic realm="basic-realm", Bearer Realm=http://127.0.0.1:1/t , error="insufficient_scope", x="a\"b,c""#,
            "Negotiate",
        ]);
        let schemes: Vec<&str> = c.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["basic", "bearer", "negotiate"]);
        assert_eq!(c[0].param("realm"), Some("basic-realm"));
        assert_eq!(c[1].param("realm"), Some("http://127.0.0.1:1/t"));
        assert_eq!(c[1].param("error"), Some("insufficient_scope"));
        assert_eq!(c[1].param("x"), Some("a\"b,c"));
        assert!(c[2].params.is_empty());
    }

    #[test]
    fn garbage_does_not_panic() {
        for s in [
            "",
            ",,,",
            "=",
            "Bearer =",
            "Bearer realm=\"unterminated",
            "\u{e9}Basic",
        ] {
            let _ = parse([s]);
        }
        assert_eq!(parse(["Basic"])[0].scheme, "basic");
    }
}
