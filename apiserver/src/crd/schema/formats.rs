//! The string formats of kube-openapi's registry, checked as it does.

use std::net::Ipv6Addr;

/// Formats a CRD may use on strings (upstream names without dashes).
const KNOWN: [&str; 24] = [
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
];

pub fn known(format: &str) -> bool {
    !format.is_empty() && KNOWN.contains(&format.replace('-', "").as_str())
}

/// Whether `s` is valid in `format`. isbn and creditcard are not checked,
/// email and uri only roughly.
pub fn valid(format: &str, s: &str) -> bool {
    let re = |pattern: &str| super::regex::is_match(pattern, s) != Some(false);
    const BYTE: &str = r"(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])";
    match format.replace('-', "").as_str() {
        "datetime" => date_time(s),
        "date" => date(s),
        "byte" => base64(s),
        "uuid" => re(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$"),
        "uuid3" => re(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$"),
        "uuid4" => {
            re(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$")
        }
        "uuid5" => {
            re(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$")
        }
        "hexcolor" => re(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$"),
        "rgbcolor" => re(&format!(r"^rgb\(\s*{BYTE}\s*,\s*{BYTE}\s*,\s*{BYTE}\s*\)$")),
        "ssn" => re(r"^\d{3}[- ]?\d{2}[- ]?\d{4}$"),
        "ipv4" => ip(s) && s.contains('.'),
        "ipv6" => s.contains(':') && s.parse::<Ipv6Addr>().is_ok(),
        "cidr" => cidr(s),
        "hostname" => hostname(s),
        "mac" => mac(s),
        "bsonobjectid" => s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit()),
        "duration" => duration(s),
        "email" => email(s),
        "uri" => uri(s),
        _ => true,
    }
}

fn number(s: &str, range: std::ops::Range<usize>) -> Option<u32> {
    s.get(range)
        .filter(|t| t.bytes().all(|b| b.is_ascii_digit()))?
        .parse()
        .ok()
}

/// Go's time.Parse with layout 2006-01-02, days checked against the month.
fn date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let (Some(y), Some(m), Some(d)) = (number(s, 0..4), number(s, 5..7), number(s, 8..10)) else {
        return false;
    };
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// strfmt's IsDateTime: a date, `t`, then hh:mm:ss, an optional fraction
/// (any character then digits) and `z` or ±hh:mm, case-insensitively.
fn date_time(s: &str) -> bool {
    let lower = s.to_lowercase();
    let mut parts = lower.split('t');
    let (Some(day), Some(time)) = (parts.next(), parts.next()) else {
        return false;
    };
    if s.len() < 4 || !date(day) || time.len() < 8 {
        return false;
    }
    let b = time.as_bytes();
    let (Some(h), Some(m), Some(sec)) =
        (number(time, 0..2), number(time, 3..5), number(time, 6..8))
    else {
        return false;
    };
    if b[2] != b':' || b[5] != b':' || h > 23 || m > 59 || sec > 59 {
        return false;
    }
    let rest = &time[8..];
    zone(rest) || {
        let mut chars = rest.chars();
        let after = match chars.next() {
            Some(c) if c != '\n' => chars.as_str(),
            _ => return false,
        };
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        digits > 0 && zone(&after[digits..])
    }
}

fn zone(z: &str) -> bool {
    let b = z.as_bytes();
    z == "z"
        || (b.len() == 6
            && matches!(b[0], b'+' | b'-')
            && b[3] == b':'
            && [1, 2, 4, 5].iter().all(|&i| b[i].is_ascii_digit()))
}

/// Standard padded base64, as govalidator's IsBase64 (which rejects "").
fn base64(s: &str) -> bool {
    let b = s.as_bytes();
    let alpha = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
    if b.is_empty() || !b.len().is_multiple_of(4) {
        return false;
    }
    let (body, last) = b.split_at(b.len() - 4);
    body.iter().all(alpha)
        && match last {
            [x, y, b'=', b'='] => alpha(x) && alpha(y),
            [x, y, z, b'='] => alpha(x) && alpha(y) && alpha(z),
            l => l.iter().all(alpha),
        }
}

/// Go's ParseIP as Kubernetes calls it: IPv4 octets may have leading zeros.
fn ip(s: &str) -> bool {
    if s.contains(':') {
        return s.parse::<Ipv6Addr>().is_ok();
    }
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u32>().is_ok_and(|n| n <= 255)
        })
}

fn cidr(s: &str) -> bool {
    let Some((addr, bits)) = s.split_once('/') else {
        return false;
    };
    let max = if addr.contains(':') { 128 } else { 32 };
    ip(addr)
        && !bits.is_empty()
        && bits.bytes().all(|b| b.is_ascii_digit())
        && bits.parse::<u32>().is_ok_and(|n| n <= max)
}

/// strfmt's hostname pattern: one label of letters, digits or symbols with
/// at most one dash after its first character, or dot-separated labels
/// ending in an alphabetic top-level label; at most 255 bytes, labels 63.
fn hostname(s: &str) -> bool {
    let host_char = |c: char| {
        c.is_ascii_alphanumeric()
            || "$+<=>^`|~".contains(c)
            || (!c.is_ascii() && !c.is_whitespace() && !c.is_control())
    };
    let mut chars = s.chars();
    let single = chars.next().is_some_and(host_char) && {
        let rest = chars.as_str();
        let rest = rest.strip_prefix('-').unwrap_or(rest);
        rest.chars().count() <= 62 && rest.chars().all(host_char)
    };
    let dotted = s.rsplit_once('.').is_some_and(|(labels, top)| {
        let top_len = top.chars().count();
        (2..=63).contains(&top_len)
            && top
                .chars()
                .all(|c| c.is_ascii_alphabetic() || (!c.is_ascii() && c.is_alphabetic()))
            && labels.split('.').all(|label| {
                let chars: Vec<char> = label.chars().collect();
                (1..=63).contains(&chars.len())
                    && host_char(chars[0])
                    && host_char(chars[chars.len() - 1])
                    && chars.iter().all(|&c| c == '-' || host_char(c))
            })
    });
    (single || dotted) && s.len() <= 255 && s.split('.').all(|p| p.len() <= 63)
}

/// Go's net.ParseMAC: 6, 8 or 20 bytes as hex pairs split by `:` or `-`,
/// or hex quads split by `.`.
fn mac(s: &str) -> bool {
    let b = s.as_bytes();
    let hex = |part: &[u8]| part.iter().all(u8::is_ascii_hexdigit);
    let sizes = |n: usize| matches!(n, 6 | 8 | 20);
    if b.len() < 14 {
        return false;
    }
    if b[2] == b':' || b[2] == b'-' {
        let sep = b[2];
        (b.len() + 1).is_multiple_of(3)
            && sizes((b.len() + 1) / 3)
            && b.chunks(3)
                .all(|c| hex(&c[..2]) && (c.len() == 2 || c[2] == sep))
    } else if b[4] == b'.' {
        (b.len() + 1).is_multiple_of(5)
            && sizes(2 * (b.len() + 1) / 5)
            && b.chunks(5)
                .all(|c| hex(&c[..4]) && (c.len() == 4 || c[4] == b'.'))
    } else {
        false
    }
}

/// strfmt's ParseDuration: Go's durations, or any number followed by a
/// known unit word somewhere in the text ("3 days", "10 seconds").
fn duration(s: &str) -> bool {
    if matches!(s, "0" | "+0" | "-0") {
        return true;
    }
    const UNITS: [&[&str]; 8] = [
        &["ns", "nano"],
        &["us", "µs", "micro"],
        &["ms", "milli"],
        &["s", "sec"],
        &["m", "min"],
        &["h", "hr", "hour"],
        &["d", "day"],
        &["w", "wk", "week"],
    ];
    let known = |unit: &str| {
        unit == "μs" // Go's time.ParseDuration also takes the Greek mu
            || UNITS.iter().any(|names| {
                names.contains(&unit) || names.last().is_some_and(|n| unit.starts_with(n))
            })
    };
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        while chars.get(i).is_some_and(char::is_ascii_digit) {
            i += 1;
        }
        while chars
            .get(i)
            .is_some_and(|c| matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' '))
        {
            i += 1;
        }
        let start = i;
        while chars
            .get(i)
            .is_some_and(|&c| c.is_ascii_alphabetic() || c == 'µ' || c == 'μ')
        {
            i += 1;
        }
        let unit: String = chars[start..i].iter().collect::<String>().to_lowercase();
        if !unit.is_empty() && known(&unit) {
            return true;
        }
    }
    false
}

/// Roughly net/mail's ParseAddress: `local@domain`, maybe in `Name <...>`.
fn email(s: &str) -> bool {
    let s = s.trim();
    let addr = match (s.rfind('<'), s.strip_suffix('>')) {
        (Some(i), Some(inner)) if i < inner.len() => &inner[i + 1..],
        _ => s,
    };
    addr.rsplit_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && !domain.is_empty() && !addr.contains(char::is_whitespace)
    })
}

/// Roughly Go's url.ParseRequestURI: an absolute path or a scheme, no control bytes.
fn uri(s: &str) -> bool {
    if s.is_empty() || s.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return false;
    }
    s == "*"
        || s.starts_with('/')
        || s.split_once(':').is_some_and(|(scheme, _)| {
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        })
}
