//! The grammar, after client-go's `util/jsonpath/parser.go`: a template of
//! text and `{...}` actions, each action a list of nodes.

use serde_json::Value;

/// How deeply sub-expressions (union members, `['key']`, filter sides) may nest;
/// each is parsed as a template of its own, so this bounds the recursion.
const MAX_DEPTH: usize = 32;

/// One bound of `[start:end:step]`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Param {
    pub value: i64,
    pub known: bool,
    /// The end of `[i]`, which is `i + 1`: for `[-1]` that is 0, meaning the length.
    pub derived: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    Field(String),
    Wildcard,
    Recursive,
    Array([Param; 3]),
    Union(Vec<Vec<Node>>),
    /// `[?(left op right)]`; without an operator, whether `left` selects anything.
    Filter {
        left: Vec<Node>,
        op: Option<String>,
        right: Vec<Node>,
    },
    /// A quoted string: one value, whatever the input.
    Text(Value),
    /// A number or `true`/`false`: one copy per input value.
    Const(Value),
    Identifier(String),
}

/// The actions of a template (`text {action} text {action}`).
pub(super) fn template(text: &str, depth: usize) -> Result<Vec<Vec<Node>>, String> {
    if depth > MAX_DEPTH {
        return Err("jsonpath nests too deeply".into());
    }
    let mut p = Parser {
        src: text,
        pos: 0,
        depth,
    };
    let mut actions = Vec::new();
    while let Some(i) = p.src[p.pos..].find('{') {
        p.pos += i + 1;
        actions.push(p.action()?);
    }
    Ok(actions)
}

/// The first action of `{text}`, as upstream parses sub-expressions.
fn sub_action(text: &str, depth: usize) -> Result<Vec<Node>, String> {
    let actions = template(&format!("{{{text}}}"), depth + 1)?;
    Ok(actions.into_iter().next().unwrap_or_default())
}

struct Parser<'s> {
    src: &'s str,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// Whether the character just read follows a backslash.
    fn escaped(&self) -> bool {
        self.pos >= 2 && self.src.as_bytes()[self.pos - 2] == b'\\'
    }

    /// The nodes up to the `}` closing the action.
    fn action(&mut self) -> Result<Vec<Node>, String> {
        let mut nodes = Vec::new();
        loop {
            let rest = &self.src[self.pos..];
            if rest.starts_with('}') {
                self.pos += 1;
                return Ok(nodes);
            }
            if rest.starts_with("[?(") {
                self.pos += 3;
                nodes.push(self.filter()?);
                continue;
            }
            if rest.starts_with("..") {
                if matches!(nodes.last(), Some(Node::Recursive)) {
                    return Err("invalid multiple recursive descent".into());
                }
                self.pos += 2;
                nodes.push(Node::Recursive);
                // `..name` needs no dot; `...name` reads as `..` then `.name`.
                if self.peek().is_some_and(is_alphanumeric) {
                    nodes.push(self.field());
                }
                continue;
            }
            let start = self.pos;
            match self.next() {
                None | Some('\r' | '\n') => return Err("unclosed action".into()),
                // `@` and `$` both stand for the current value: nothing to do.
                Some(' ' | '@' | '$') => {}
                Some('[') => self.array(&mut nodes)?,
                Some(quote @ ('"' | '\'')) => nodes.push(self.quoted(quote, start)?),
                Some('.') => nodes.push(self.field()),
                Some(c) if c == '+' || c == '-' || c.is_numeric() => {
                    self.pos = start;
                    nodes.push(self.number()?);
                }
                Some(c) if is_alphanumeric(c) => {
                    self.pos = start;
                    nodes.push(self.identifier());
                }
                Some(c) => return Err(format!("unrecognized character in action: {}", go_rune(c))),
            }
        }
    }

    /// A name up to the next terminator; `\` escapes one (and is dropped), as in
    /// `.metadata.labels.app\.kubernetes\.io/name`.
    fn field(&mut self) -> Node {
        let start = self.pos;
        loop {
            match self.peek() {
                Some('\\') => {
                    self.pos += 1;
                    self.next();
                }
                c if is_terminator(c) => break,
                _ => {
                    self.next();
                }
            }
        }
        match &self.src[start..self.pos] {
            "*" => Node::Wildcard,
            name => Node::Field(name.replace('\\', "")),
        }
    }

    fn number(&mut self) -> Result<Node, String> {
        let start = self.pos;
        if matches!(self.peek(), Some('+' | '-')) {
            self.pos += 1;
        }
        while self.peek().is_some_and(|c| c == '.' || c.is_numeric()) {
            self.next();
        }
        let text = &self.src[start..self.pos];
        // An integer literal compares only with integers, a float only with floats.
        if let Ok(i) = text.parse::<i64>() {
            return Ok(Node::Const(i.into()));
        }
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Node::Const(f.into())),
            _ => Err(format!("cannot parse number {text}")),
        }
    }

    fn identifier(&mut self) -> Node {
        let start = self.pos;
        while !is_terminator(self.peek()) {
            self.next();
        }
        match &self.src[start..self.pos] {
            "true" => Node::Const(true.into()),
            "false" => Node::Const(false.into()),
            word => Node::Identifier(word.into()),
        }
    }

    fn quoted(&mut self, quote: char, start: usize) -> Result<Node, String> {
        loop {
            match self.next() {
                None | Some('\n') => return Err("unterminated quoted string".into()),
                Some(c) if c == quote && !self.escaped() => break,
                _ => {}
            }
        }
        let raw = &self.src[start..self.pos];
        let text = unquote(raw, quote)
            .ok_or_else(|| format!("unquote string {raw} error invalid syntax"))?;
        Ok(Node::Text(text.into()))
    }

    /// After `[`: a union, a `'key'` or a slice, up to the first `]` (upstream
    /// does not look into quotes for it).
    fn array(&mut self, nodes: &mut Vec<Node>) -> Result<(), String> {
        let start = self.pos;
        loop {
            match self.next() {
                None | Some('\n') => return Err("unterminated array".into()),
                Some(']') => break,
                _ => {}
            }
        }
        let text = match &self.src[start..self.pos - 1] {
            "*" => ":",
            text => text,
        };
        if text.contains(',') {
            let members = text
                .split(',')
                .map(|member| sub_action(&format!("[{}]", member.trim_matches(' ')), self.depth))
                .collect::<Result<_, _>>()?;
            nodes.push(Node::Union(members));
        } else if let Some(key) = single_quoted(text) {
            // `['a.b']` is `.a.b`, not a key with a dot: upstream reparses it as a path.
            nodes.extend(sub_action(&format!(".{key}"), self.depth)?);
        } else {
            nodes.push(Node::Array(slice(text)?));
        }
        Ok(())
    }

    /// After `[?(`: up to the first `)` outside the (single) quoted literal, then `]`.
    fn filter(&mut self) -> Result<Node, String> {
        let start = self.pos;
        let (mut quote, mut closed) = (None, false);
        loop {
            match self.next() {
                None | Some('\n') => return Err("unterminated filter".into()),
                Some(c @ ('"' | '\'')) => match quote {
                    None => quote = Some(c),
                    Some(q) => closed |= c == q && !self.escaped(),
                },
                Some(')') if quote.is_some() == closed => break,
                _ => {}
            }
        }
        if self.next() != Some(']') {
            return Err("unclosed array expect ]".into());
        }
        let text = &self.src[start..self.pos - 2];
        Ok(match comparison(text) {
            None => Node::Filter {
                left: sub_action(text, self.depth)?,
                op: None,
                right: Vec::new(),
            },
            Some((left, op, right)) => Node::Filter {
                left: sub_action(left, self.depth)?,
                op: Some(op.into()),
                right: sub_action(right, self.depth)?,
            },
        })
    }
}

/// `key` of `'key'` (upstream's `^'([^']*)'$`).
fn single_quoted(text: &str) -> Option<&str> {
    let key = text.strip_prefix('\'')?.strip_suffix('\'')?;
    (!key.contains('\'')).then_some(key)
}

/// Splits a filter as upstream's `^([^!<>=]+)([!<>=]+)(.+?)$` does. Operators
/// are checked only when evaluated, so `<>` parses.
fn comparison(text: &str) -> Option<(&str, &str, &str)> {
    let is_op = |c: char| matches!(c, '!' | '<' | '>' | '=');
    let start = text.find(is_op).filter(|&i| i > 0)?;
    let mut end = text[start..]
        .find(|c| !is_op(c))
        .map_or(text.len(), |i| start + i);
    // The right side takes at least one character, even an operator's.
    if end == text.len() {
        end -= 1;
    }
    (end > start).then(|| (&text[..start], &text[start..end], &text[end..]))
}

/// `[start:end:step]` as upstream reads it (`^(-?\d*)(:-?\d*)?(:-?\d*)?$`);
/// `[i]` is `[i:i+1]` and `[]` is `[0]`.
fn slice(text: &str) -> Result<[Param; 3], String> {
    let groups = slice_groups(text).ok_or_else(|| format!("invalid array index {text}"))?;
    let mut params = [Param::default(); 3];
    for (i, group) in groups.into_iter().enumerate() {
        if group.is_empty() {
            if i == 1 {
                let value = params[0].value.wrapping_add(1);
                params[1] = Param {
                    value,
                    known: true,
                    derived: true,
                };
            }
            continue;
        }
        let digits = if i == 0 { group } else { &group[1..] };
        if digits.is_empty() {
            continue;
        }
        let value = digits
            .parse()
            .map_err(|_| format!("array index {digits} is not a number"))?;
        params[i] = Param {
            value,
            known: true,
            derived: false,
        };
    }
    Ok(params)
}

/// The three groups of the slice syntax, each "" when absent.
fn slice_groups(text: &str) -> Option<[&str; 3]> {
    // The length of the `-?\d*` that `s` starts with.
    let number = |s: &str| {
        let sign = usize::from(s.starts_with('-'));
        sign + s[sign..].bytes().take_while(u8::is_ascii_digit).count()
    };
    let mut pos = number(text);
    let mut groups = [&text[..pos], "", ""];
    for group in &mut groups[1..] {
        if text[pos..].starts_with(':') {
            let len = 1 + number(&text[pos + 1..]);
            *group = &text[pos..pos + len];
            pos += len;
        }
    }
    (pos == text.len()).then_some(groups)
}

/// Go's `strconv.Unquote` for either quote character (upstream's `UnquoteExtend`).
fn unquote(raw: &str, quote: char) -> Option<String> {
    let inner = raw.strip_prefix(quote)?.strip_suffix(quote)?;
    let mut out = Vec::with_capacity(inner.len());
    let mut chars = inner.chars();
    // `n` digits of `radix` as a number.
    fn digits(chars: &mut std::str::Chars, n: usize, radix: u32) -> Option<u32> {
        (0..n).try_fold(0, |acc, _| {
            Some(acc * radix + chars.next()?.to_digit(radix)?)
        })
    }
    fn push(out: &mut Vec<u8>, c: char) {
        out.extend(c.encode_utf8(&mut [0; 4]).as_bytes());
    }
    while let Some(c) = chars.next() {
        if c == quote {
            return None;
        }
        if c != '\\' {
            push(&mut out, c);
            continue;
        }
        match chars.next()? {
            'a' => out.push(7),
            'b' => out.push(8),
            'f' => out.push(12),
            'n' => out.push(b'\n'),
            'r' => out.push(b'\r'),
            't' => out.push(b'\t'),
            'v' => out.push(11),
            '\\' => out.push(b'\\'),
            c @ ('\'' | '"') if c == quote => push(&mut out, c),
            // `\x` and octal escapes are bytes, `\u` and `\U` characters.
            'x' => out.push(u8::try_from(digits(&mut chars, 2, 16)?).ok()?),
            'u' => push(&mut out, char::from_u32(digits(&mut chars, 4, 16)?)?),
            'U' => push(&mut out, char::from_u32(digits(&mut chars, 8, 16)?)?),
            c @ '0'..='7' => {
                let value = (c as u32 - '0' as u32) * 64 + digits(&mut chars, 2, 8)?;
                out.push(u8::try_from(value).ok()?);
            }
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn is_terminator(c: Option<char>) -> bool {
    matches!(
        c,
        None | Some(' ' | '\t' | '\r' | '\n' | '.' | ',' | '[' | ']' | '$' | '@' | '{' | '}')
    )
}

fn is_alphanumeric(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Go's `%#U`: `U+002A '*'`.
fn go_rune(c: char) -> String {
    if c.is_control() {
        format!("U+{:04X}", c as u32)
    } else {
        format!("U+{:04X} '{c}'", c as u32)
    }
}
