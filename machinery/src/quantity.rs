//! Resource quantities (`100m`, `1.5Gi`, `2e3`): parsing and comparison, as
//! upstream's `resource.Quantity` accepts them.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)]
pub struct QuantityError;

/// A parsed quantity held as thousandths of a unit ("milli-units"), which is
/// exact for every value upstream lets a resource request carry below 2^63/1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity {
    pub millis: i128,
}

impl Quantity {
    pub fn parse(s: &str) -> Result<Self, QuantityError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(QuantityError);
        }
        let num_end = s
            .char_indices()
            .find(|(i, c)| {
                !(c.is_ascii_digit() || *c == '.' || (*i == 0 && (*c == '+' || *c == '-')))
            })
            .map(|(i, _)| i)
            .unwrap_or(s.len());
        let (num, suffix) = s.split_at(num_end);
        let (negative, digits) = match num.as_bytes().first() {
            Some(b'-') => (true, &num[1..]),
            Some(b'+') => (false, &num[1..]),
            _ => (false, num),
        };
        if digits.is_empty() || digits == "." || digits.matches('.').count() > 1 {
            return Err(QuantityError);
        }
        let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
        // value = mantissa * 10^-scale
        let mantissa: i128 = format!("{int_part}{frac_part}")
            .parse()
            .map_err(|_| QuantityError)?;
        let scale = frac_part.len() as i32;
        let (mult_num, mult_exp10): (i128, i32) = match suffix {
            "" => (1, 0),
            "n" => (1, -9),
            "u" => (1, -6),
            "m" => (1, -3),
            "k" => (1, 3),
            "M" => (1, 6),
            "G" => (1, 9),
            "T" => (1, 12),
            "P" => (1, 15),
            "E" => (1, 18),
            "Ki" => (1 << 10, 0),
            "Mi" => (1 << 20, 0),
            "Gi" => (1 << 30, 0),
            "Ti" => (1 << 40, 0),
            "Pi" => (1 << 50, 0),
            "Ei" => (1 << 60, 0),
            exp if exp.starts_with(['e', 'E']) => {
                (1, exp[1..].parse::<i32>().map_err(|_| QuantityError)?)
            }
            _ => return Err(QuantityError),
        };
        // millis = mantissa * mult_num * 10^(mult_exp10 - scale + 3), rounded up like upstream.
        let exp = mult_exp10 - scale + 3;
        let base = mantissa.checked_mul(mult_num).ok_or(QuantityError)?;
        let millis = if exp >= 0 {
            base.checked_mul(10i128.checked_pow(exp as u32).ok_or(QuantityError)?)
                .ok_or(QuantityError)?
        } else {
            let div = 10i128.checked_pow((-exp) as u32).unwrap_or(i128::MAX);
            (base + div - 1) / div
        };
        Ok(Quantity {
            millis: if negative { -millis } else { millis },
        })
    }

    /// Whole units, rounded up (e.g. bytes of memory).
    pub fn value(&self) -> i128 {
        (self.millis + 999).div_euclid(1000)
    }

    pub fn is_negative(&self) -> bool {
        self.millis < 0
    }

    /// The quantity as upstream prints a computed one: in binary units (Ki,
    /// Mi, …) when `binary`, else decimal (k, M, …), whole units bare, and
    /// milli-units when not whole.
    pub fn canonical(&self, binary: bool) -> String {
        if self.millis % 1000 != 0 {
            return format!("{}m", self.millis);
        }
        let v = self.millis / 1000;
        let (base, suffixes): (i128, [&str; 6]) = if binary {
            (1024, ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"])
        } else {
            (1000, ["k", "M", "G", "T", "P", "E"])
        };
        for (i, suffix) in suffixes.iter().enumerate().rev() {
            let unit = base.pow(i as u32 + 1);
            if v != 0 && v % unit == 0 {
                return format!("{}{suffix}", v / unit);
            }
        }
        v.to_string()
    }
}

/// Whether a quantity was written in binary units (Ki, Mi, …).
pub fn is_binary(text: &str) -> bool {
    text.trim_end().ends_with('i')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        let q = |millis| Quantity { millis };
        assert_eq!(q(2_000_000).canonical(false), "2k");
        assert_eq!(q(1024 * 1024 * 1000).canonical(true), "1Mi");
        assert_eq!(q(3000).canonical(true), "3");
        assert_eq!(q(2100).canonical(false), "2100m");
        assert_eq!(q(0).canonical(false), "0");
    }

    #[test]
    fn parses() {
        assert_eq!(Quantity::parse("100m").unwrap().millis, 100);
        assert_eq!(Quantity::parse("1").unwrap().millis, 1000);
        assert_eq!(Quantity::parse("1.5").unwrap().millis, 1500);
        assert_eq!(Quantity::parse("1Gi").unwrap().value(), 1 << 30);
        assert_eq!(Quantity::parse("128Mi").unwrap().value(), 128 << 20);
        assert_eq!(Quantity::parse("2e3").unwrap().value(), 2000);
        assert_eq!(Quantity::parse("1k").unwrap().value(), 1000);
        assert_eq!(Quantity::parse("-1").unwrap().millis, -1000);
        assert!(Quantity::parse("abc").is_err());
        assert!(Quantity::parse("1Zi").is_err());
        assert!(Quantity::parse("").is_err());
        assert!(Quantity::parse("1..2").is_err());
    }
}
