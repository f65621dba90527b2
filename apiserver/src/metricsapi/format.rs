//! How metrics-server writes its numbers: cpu as a decimal quantity of
//! nanocores in canonical form (`"12345n"`, `"3m"`, `"1"`), memory as a
//! binary quantity of bytes (`"11372Ki"`, `"32Mi"`), windows as Go's
//! `time.Duration` prints them (`"15.012s"`, `"1m0s"`), times as RFC 3339.

use std::time::Duration;

/// `value × 10^exponent` in upstream's canonical decimal form: the
/// largest power-of-1000 suffix that keeps the number an integer.
fn decimal(mut value: u64, mut exponent: i32) -> String {
    if value == 0 {
        return "0".into();
    }
    while value.is_multiple_of(10) {
        value /= 10;
        exponent += 1;
    }
    // Back down to a multiple of 3 (a suffix exists for each).
    let r = exponent.rem_euclid(3);
    value = value.saturating_mul(10u64.pow(r as u32));
    exponent -= r;
    let suffix = match exponent {
        -9 => "n",
        -6 => "u",
        -3 => "m",
        0 => "",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        _ => "E",
    };
    format!("{value}{suffix}")
}

/// Cpu usage: `nanocores` as metrics-server's `NewScaledQuantity(n, -9)` prints.
pub fn cpu(nanocores: u64) -> String {
    decimal(nanocores, -9)
}

/// Memory in bytes as a BinarySI quantity: powers of 1024 where exact,
/// small values in decimal form.
pub fn memory(bytes: u64) -> String {
    if bytes < 1024 {
        return decimal(bytes, 0);
    }
    let (mut value, mut exp) = (bytes, 0usize);
    while value.is_multiple_of(1024) && exp < 6 {
        value /= 1024;
        exp += 1;
    }
    let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][exp];
    format!("{value}{suffix}")
}

/// The digits of `v / 10^prec` after the point, trailing zeros dropped;
/// returns the fraction (with its point, or empty) and the integer part.
fn frac(v: u64, prec: u32) -> (String, u64) {
    let div = 10u64.pow(prec);
    let (int, f) = (v / div, v % div);
    if f == 0 {
        return (String::new(), int);
    }
    let digits = format!("{f:0width$}", width = prec as usize);
    (format!(".{}", digits.trim_end_matches('0')), int)
}

/// A duration as Go's `time.Duration.String()` writes it.
pub fn go_duration(d: Duration) -> String {
    let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000_000_000 {
        let (prec, unit) = match ns {
            n if n < 1_000 => (0, "ns"),
            n if n < 1_000_000 => (3, "µs"),
            _ => (6, "ms"),
        };
        let (f, int) = frac(ns, prec);
        return format!("{int}{f}{unit}");
    }
    let (f, secs) = frac(ns, 9);
    let (s, mins) = (secs % 60, secs / 60);
    if mins == 0 {
        return format!("{s}{f}s");
    }
    let (m, hours) = (mins % 60, mins / 60);
    if hours == 0 {
        return format!("{m}m{s}{f}s");
    }
    format!("{hours}h{m}m{s}{f}s")
}

/// A time in milliseconds since the epoch as `metav1.Time` writes it.
pub fn time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_as_metrics_server_prints_it() {
        assert_eq!(cpu(0), "0");
        assert_eq!(cpu(12_345), "12345n");
        assert_eq!(cpu(12_000), "12u");
        assert_eq!(cpu(1_500), "1500n");
        assert_eq!(cpu(3_000_000), "3m");
        assert_eq!(cpu(30_000_000), "30m");
        assert_eq!(cpu(1_000_000_000), "1");
        assert_eq!(cpu(1_500_000_000), "1500m");
        assert_eq!(cpu(987_654_321), "987654321n");
    }

    #[test]
    fn memory_as_binary_quantities() {
        assert_eq!(memory(0), "0");
        assert_eq!(memory(512), "512");
        assert_eq!(memory(1000), "1k");
        assert_eq!(memory(12_345), "12345");
        assert_eq!(memory(11_644_928), "11372Ki");
        assert_eq!(memory(32 << 20), "32Mi");
        assert_eq!(memory(3 << 30), "3Gi");
    }

    #[test]
    fn durations_as_go_prints_them() {
        let ms = Duration::from_millis;
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_nanos(15)), "15ns");
        assert_eq!(go_duration(Duration::from_nanos(1_500)), "1.5µs");
        assert_eq!(go_duration(ms(250)), "250ms");
        assert_eq!(go_duration(Duration::from_micros(1_500)), "1.5ms");
        assert_eq!(go_duration(ms(15_012)), "15.012s");
        assert_eq!(go_duration(ms(20_000)), "20s");
        assert_eq!(go_duration(ms(60_000)), "1m0s");
        assert_eq!(go_duration(ms(90_500)), "1m30.5s");
        assert_eq!(go_duration(ms(3_600_000)), "1h0m0s");
    }

    #[test]
    fn times_in_seconds() {
        assert_eq!(time(1_700_000_000_999), "2023-11-14T22:13:20Z");
    }
}
