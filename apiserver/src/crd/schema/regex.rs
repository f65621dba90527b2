//! A small matcher for the RE2 syntax of Go's regexp, which kube-openapi
//! uses for `pattern`: literals, `.`, classes (`[a-z]`, `[^…]`, `\d\w\s`,
//! `[[:alpha:]]`), anchors `^ $ \A \z \b \B`, groups with `|`, quantifiers
//! `* + ? {n,m}`, and a leading `(?i)`. It runs as a Pike VM, so matching is
//! linear in the text. `None` means the pattern uses syntax it lacks.

const MAX_PROGRAM: usize = 20_000;
const MAX_WORK: usize = 50_000_000;

pub fn is_match(pattern: &str, text: &str) -> Option<bool> {
    let (icase, body) = match pattern.strip_prefix("(?i)") {
        Some(rest) => (true, rest),
        None => (false, pattern),
    };
    let mut parser = Parser {
        chars: body.chars().collect(),
        pos: 0,
    };
    let ast = parser.alternation(0)?;
    if parser.pos != parser.chars.len() {
        return None;
    }
    let mut prog = Vec::new();
    compile(&ast, &mut prog)?;
    prog.push(Inst::Match);
    let text: Vec<char> = text.chars().collect();
    if (text.len() + 1).saturating_mul(prog.len()) > MAX_WORK {
        return None;
    }
    let mut vm = Vm {
        prog: &prog,
        text: &text,
        icase,
        marks: vec![usize::MAX; prog.len()],
    };
    Some(vm.run())
}

enum Ast {
    Char(char),
    Any,
    Class(Class),
    Assert(Look),
    Cat(Vec<Ast>),
    Alt(Vec<Ast>),
    Repeat(Box<Ast>, u32, Option<u32>),
}

#[derive(Clone, Copy)]
enum Look {
    Start,
    End,
    WordBoundary,
    NotWordBoundary,
}

#[derive(Clone)]
struct Class {
    negated: bool,
    ranges: Vec<(char, char)>,
    /// Negated sets inside the class, such as `\D` in `[\D_]`.
    outside: Vec<Vec<(char, char)>>,
}

impl Class {
    fn plain(ranges: Vec<(char, char)>, negated: bool) -> Self {
        Class {
            negated,
            ranges,
            outside: vec![],
        }
    }

    fn holds(&self, c: char) -> bool {
        let within = |set: &[(char, char)]| set.iter().any(|&(lo, hi)| lo <= c && c <= hi);
        within(&self.ranges) || self.outside.iter().any(|set| !within(set))
    }

    /// Case folding applies before negation, as in Go.
    fn matches(&self, c: char, icase: bool) -> bool {
        let hit = self.holds(c) || (icase && (self.holds(lower(c)) || self.holds(upper(c))));
        hit != self.negated
    }
}

fn lower(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

fn upper(c: char) -> char {
    c.to_uppercase().next().unwrap_or(c)
}

/// `\d`, `\w`, `\s` as RE2 defines them (ASCII only).
fn perl(c: char) -> Vec<(char, char)> {
    match c {
        'd' => vec![('0', '9')],
        'w' => vec![('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')],
        _ => vec![('\t', '\n'), ('\x0c', '\r'), (' ', ' ')],
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        let found = self.peek() == Some(c);
        self.pos += usize::from(found);
        found
    }

    fn alternation(&mut self, depth: usize) -> Option<Ast> {
        if depth > 50 {
            return None;
        }
        let mut alts = vec![self.concat(depth)?];
        while self.eat('|') {
            alts.push(self.concat(depth)?);
        }
        Some(if alts.len() == 1 {
            alts.remove(0)
        } else {
            Ast::Alt(alts)
        })
    }

    fn concat(&mut self, depth: usize) -> Option<Ast> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom(depth)?;
            items.push(self.quantified(atom)?);
        }
        Some(Ast::Cat(items))
    }

    fn atom(&mut self, depth: usize) -> Option<Ast> {
        Some(match self.next()? {
            '(' => {
                if self.eat('?') {
                    // Non-capturing and named groups only; inline flags are not supported.
                    let named = (self.eat('P') && self.eat('<')) || self.eat('<');
                    if named {
                        while self.next()? != '>' {}
                    } else if !self.eat(':') {
                        return None;
                    }
                }
                let inner = self.alternation(depth + 1)?;
                if !self.eat(')') {
                    return None;
                }
                inner
            }
            '[' => Ast::Class(self.class()?),
            '.' => Ast::Any,
            '^' => Ast::Assert(Look::Start),
            '$' => Ast::Assert(Look::End),
            '\\' => self.escape()?,
            '*' | '+' | '?' => return None,
            c => Ast::Char(c),
        })
    }

    fn quantified(&mut self, atom: Ast) -> Option<Ast> {
        let Some((min, max)) = self.quantifier() else {
            return Some(atom);
        };
        self.eat('?'); // lazy or greedy, the same texts match
        let save = self.pos;
        // Go rejects a repeated repetition and counts above 1000.
        if self.quantifier().is_some() || min > 1000 || max.is_some_and(|m| m > 1000 || m < min) {
            return None;
        }
        self.pos = save;
        Some(Ast::Repeat(Box::new(atom), min, max))
    }

    fn quantifier(&mut self) -> Option<(u32, Option<u32>)> {
        let bounds = match self.peek()? {
            '*' => (0, None),
            '+' => (1, None),
            '?' => (0, Some(1)),
            '{' => {
                let save = self.pos;
                self.pos += 1;
                let bounds = self.bounds();
                if bounds.is_none() {
                    // Not a repetition: a literal brace, as in Go.
                    self.pos = save;
                }
                return bounds;
            }
            _ => return None,
        };
        self.pos += 1;
        Some(bounds)
    }

    /// `n}`, `n,}` or `n,m}` after a `{`.
    fn bounds(&mut self) -> Option<(u32, Option<u32>)> {
        let min = self.number()?;
        let max = if !self.eat(',') {
            Some(min)
        } else if self.peek() == Some('}') {
            None
        } else {
            Some(self.number()?)
        };
        self.eat('}').then_some((min, max))
    }

    fn number(&mut self) -> Option<u32> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        self.chars[start..self.pos]
            .iter()
            .collect::<String>()
            .parse()
            .ok()
    }

    fn escape(&mut self) -> Option<Ast> {
        Some(match self.next()? {
            c @ ('d' | 'w' | 's') => Ast::Class(Class::plain(perl(c), false)),
            c @ ('D' | 'W' | 'S') => Ast::Class(Class::plain(perl(c.to_ascii_lowercase()), true)),
            'b' => Ast::Assert(Look::WordBoundary),
            'B' => Ast::Assert(Look::NotWordBoundary),
            'A' => Ast::Assert(Look::Start),
            'z' => Ast::Assert(Look::End),
            c => Ast::Char(self.escaped(c)?),
        })
    }

    /// The character an escape stands for: `\n`-style, `\x..`, or punctuation.
    fn escaped(&mut self, c: char) -> Option<char> {
        Some(match c {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            'f' => '\x0c',
            'v' => '\x0b',
            'a' => '\x07',
            'x' => {
                let digits: String = if self.eat('{') {
                    let mut digits = String::new();
                    loop {
                        match self.next()? {
                            '}' => break digits,
                            d => digits.push(d),
                        }
                    }
                } else {
                    [self.next()?, self.next()?].iter().collect()
                };
                char::from_u32(u32::from_str_radix(&digits, 16).ok()?)?
            }
            c if c.is_ascii_punctuation() => c,
            _ => return None,
        })
    }

    /// A bracketed class, after its `[`.
    fn class(&mut self) -> Option<Class> {
        let mut class = Class::plain(vec![], self.eat('^'));
        let mut first = true;
        loop {
            let c = self.next()?;
            if c == ']' && !first {
                return Some(class);
            }
            first = false;
            let lo = match c {
                '[' if self.peek() == Some(':') => {
                    let (ranges, negated) = self.posix()?;
                    if negated {
                        class.outside.push(ranges);
                    } else {
                        class.ranges.extend(ranges);
                    }
                    continue;
                }
                '\\' => match self.next()? {
                    e @ ('d' | 'w' | 's') => {
                        class.ranges.extend(perl(e));
                        continue;
                    }
                    e @ ('D' | 'W' | 'S') => {
                        class.outside.push(perl(e.to_ascii_lowercase()));
                        continue;
                    }
                    e => self.escaped(e)?,
                },
                c => c,
            };
            let range =
                self.peek() == Some('-') && self.chars.get(self.pos + 1).is_some_and(|&n| n != ']');
            let hi = if range {
                self.pos += 1;
                match self.next()? {
                    '\\' => {
                        let e = self.next()?;
                        self.escaped(e)?
                    }
                    c => c,
                }
            } else {
                lo
            };
            if hi < lo {
                return None;
            }
            class.ranges.push((lo, hi));
        }
    }

    /// `[:name:]` inside a class, after its `[`.
    fn posix(&mut self) -> Option<(Vec<(char, char)>, bool)> {
        self.pos += 1;
        let negated = self.eat('^');
        let start = self.pos;
        while self.next()? != ':' {}
        let name: String = self.chars[start..self.pos - 1].iter().collect();
        if !self.eat(']') {
            return None;
        }
        let ranges = match name.as_str() {
            "alnum" => vec![('0', '9'), ('A', 'Z'), ('a', 'z')],
            "alpha" => vec![('A', 'Z'), ('a', 'z')],
            "ascii" => vec![('\0', '\x7f')],
            "blank" => vec![('\t', '\t'), (' ', ' ')],
            "cntrl" => vec![('\0', '\x1f'), ('\x7f', '\x7f')],
            "digit" => vec![('0', '9')],
            "graph" => vec![('!', '~')],
            "lower" => vec![('a', 'z')],
            "print" => vec![(' ', '~')],
            "punct" => vec![('!', '/'), (':', '@'), ('[', '`'), ('{', '~')],
            "space" => vec![('\t', '\r'), (' ', ' ')],
            "upper" => vec![('A', 'Z')],
            "word" => perl('w'),
            "xdigit" => vec![('0', '9'), ('A', 'F'), ('a', 'f')],
            _ => return None,
        };
        Some((ranges, negated))
    }
}

enum Inst {
    Char(char),
    Any,
    Class(Class),
    Assert(Look),
    Split(usize, usize),
    Jmp(usize),
    Match,
}

fn compile(ast: &Ast, prog: &mut Vec<Inst>) -> Option<()> {
    if prog.len() > MAX_PROGRAM {
        return None;
    }
    match ast {
        Ast::Char(c) => prog.push(Inst::Char(*c)),
        Ast::Any => prog.push(Inst::Any),
        Ast::Class(c) => prog.push(Inst::Class(c.clone())),
        Ast::Assert(look) => prog.push(Inst::Assert(*look)),
        Ast::Cat(items) => {
            for item in items {
                compile(item, prog)?;
            }
        }
        Ast::Alt(alts) => {
            let mut exits = Vec::new();
            for (i, alt) in alts.iter().enumerate() {
                if i + 1 == alts.len() {
                    compile(alt, prog)?;
                    break;
                }
                let split = prog.len();
                prog.push(Inst::Split(split + 1, 0));
                compile(alt, prog)?;
                exits.push(prog.len());
                prog.push(Inst::Jmp(0));
                prog[split] = Inst::Split(split + 1, prog.len());
            }
            let end = prog.len();
            for exit in exits {
                prog[exit] = Inst::Jmp(end);
            }
        }
        Ast::Repeat(inner, min, max) => {
            for _ in 0..*min {
                compile(inner, prog)?;
            }
            let mut splits = Vec::new();
            match max {
                None => {
                    let split = prog.len();
                    splits.push(split);
                    prog.push(Inst::Split(split + 1, 0));
                    compile(inner, prog)?;
                    prog.push(Inst::Jmp(split));
                }
                Some(max) => {
                    for _ in *min..*max {
                        splits.push(prog.len());
                        prog.push(Inst::Split(prog.len() + 1, 0));
                        compile(inner, prog)?;
                    }
                }
            }
            let end = prog.len();
            for split in splits {
                prog[split] = Inst::Split(split + 1, end);
            }
        }
    }
    Some(())
}

struct Vm<'a> {
    prog: &'a [Inst],
    text: &'a [char],
    icase: bool,
    /// The position whose thread list last took each instruction.
    marks: Vec<usize>,
}

impl Vm<'_> {
    fn run(&mut self) -> bool {
        let (mut current, mut next) = (Vec::new(), Vec::new());
        for pos in 0..=self.text.len() {
            // Unanchored search: a thread starts at every position.
            if self.add(&mut current, 0, pos) {
                return true;
            }
            let Some(&c) = self.text.get(pos) else { break };
            next.clear();
            for &pc in &current {
                let step = match &self.prog[pc] {
                    Inst::Char(x) => c == *x || (self.icase && lower(c) == lower(*x)),
                    Inst::Any => c != '\n',
                    Inst::Class(class) => class.matches(c, self.icase),
                    _ => false,
                };
                if step && self.add(&mut next, pc + 1, pos + 1) {
                    return true;
                }
            }
            std::mem::swap(&mut current, &mut next);
        }
        false
    }

    /// Adds the thread at `pc` and all it reaches without reading; true at a match.
    fn add(&mut self, list: &mut Vec<usize>, pc: usize, pos: usize) -> bool {
        let mut stack = vec![pc];
        while let Some(pc) = stack.pop() {
            if self.marks[pc] == pos {
                continue;
            }
            self.marks[pc] = pos;
            match &self.prog[pc] {
                Inst::Match => return true,
                Inst::Jmp(to) => stack.push(*to),
                Inst::Split(a, b) => stack.extend([*b, *a]),
                Inst::Assert(look) => {
                    if self.holds(*look, pos) {
                        stack.push(pc + 1);
                    }
                }
                _ => list.push(pc),
            }
        }
        false
    }

    fn holds(&self, look: Look, pos: usize) -> bool {
        let word = |i: usize| {
            self.text
                .get(i)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
        };
        let boundary = (pos > 0 && word(pos - 1)) != word(pos);
        match look {
            Look::Start => pos == 0,
            Look::End => pos == self.text.len(),
            Look::WordBoundary => boundary,
            Look::NotWordBoundary => !boundary,
        }
    }
}
