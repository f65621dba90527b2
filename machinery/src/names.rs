//! Name validation as upstream's apimachinery `validation` package words it.

/// RFC 1123 label: lowercase alphanumerics and '-', at most 63, alphanumeric at both ends.
pub fn is_dns1123_label(s: &str) -> bool {
    dns1123_label_errors(s).is_empty()
}

/// RFC 1123 subdomain as upstream checks it: dot-separated labels, at most
/// 253 characters in all (no limit on each label's length).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    dns1123_subdomain_errors(s).is_empty()
}

/// RFC 1035 label: like an RFC 1123 label but starting with a letter (Service names).
pub fn is_dns1035_label(s: &str) -> bool {
    dns1035_label_errors(s).is_empty()
}

/// Upstream's IsDNS1123Label: its length and format errors, none when `s` is one.
pub fn dns1123_label_errors(s: &str) -> Vec<String> {
    length_and_format(s, 63, dns1123_label_format(s), DNS1123_LABEL_MSG)
}

/// Upstream's IsDNS1035Label: its length and format errors, none when `s` is one.
pub fn dns1035_label_errors(s: &str) -> Vec<String> {
    let format = dns1123_label_format(s) && s.as_bytes()[0].is_ascii_lowercase();
    length_and_format(s, 63, format, DNS1035_LABEL_MSG)
}

/// Upstream's IsDNS1123Subdomain: its length and format errors, none when `s` is one.
pub fn dns1123_subdomain_errors(s: &str) -> Vec<String> {
    let format = s.split('.').all(dns1123_label_format);
    length_and_format(s, 253, format, DNS1123_SUBDOMAIN_MSG)
}

/// Upstream's regex `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, which has no length limit.
fn dns1123_label_format(s: &str) -> bool {
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let b = s.as_bytes();
    b.first().is_some_and(alnum)
        && b.last().is_some_and(alnum)
        && b.iter().all(|c| alnum(c) || *c == b'-')
}

/// Upstream's MaxLenError, then its RegexError, in that order.
fn length_and_format(s: &str, max: usize, format_ok: bool, format_msg: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > max {
        errs.push(format!("must be no more than {max} characters"));
    }
    if !format_ok {
        errs.push(format_msg.to_string());
    }
    errs
}

pub const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
pub const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
pub const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_dns1123_subdomain("web-1.example"));
        assert!(!is_dns1123_subdomain("Web"));
        assert!(!is_dns1123_subdomain("-a"));
        assert!(is_dns1123_label("1abc"));
        assert!(!is_dns1035_label("1abc"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        // As upstream: a subdomain's labels may be longer than a label.
        assert!(is_dns1123_subdomain(&format!("{}.example", "a".repeat(64))));
        assert!(!is_dns1123_subdomain(&"a".repeat(254)));
        assert!(!is_dns1123_subdomain(""));
    }

    #[test]
    fn errors_as_upstream_lists_them() {
        let long = "must be no more than 63 characters";
        assert!(dns1035_label_errors("abc-123").is_empty());
        assert_eq!(dns1035_label_errors("1abc"), [DNS1035_LABEL_MSG]);
        assert_eq!(dns1035_label_errors(""), [DNS1035_LABEL_MSG]);
        assert_eq!(dns1035_label_errors(&"a".repeat(64)), [long]);
        assert_eq!(
            dns1035_label_errors(&format!("{}-", "a".repeat(63))),
            [long, DNS1035_LABEL_MSG]
        );
        assert!(dns1123_label_errors("123-abc").is_empty());
        assert_eq!(dns1123_label_errors("a_b"), [DNS1123_LABEL_MSG]);
        assert_eq!(dns1123_label_errors(&"1".repeat(64)), [long]);
        assert!(dns1123_subdomain_errors("example.com").is_empty());
        // Upstream's regex has no limit on a label of a subdomain.
        assert!(dns1123_subdomain_errors(&"a".repeat(64)).is_empty());
        assert_eq!(dns1123_subdomain_errors("a..b"), [DNS1123_SUBDOMAIN_MSG]);
        assert_eq!(dns1123_subdomain_errors(""), [DNS1123_SUBDOMAIN_MSG]);
        assert_eq!(
            dns1123_subdomain_errors(&"a".repeat(254)),
            ["must be no more than 253 characters"]
        );
    }
}
