//! Cron schedules as upstream's CronJobs read them (robfig/cron v3
//! `ParseStandard`): five fields (minute hour day-of-month month
//! day-of-week) with lists, ranges, steps and month/day names, the
//! `@yearly`-style descriptors and `@every <duration>`, and an optional
//! `TZ=`/`CRON_TZ=` prefix. Shared by the API server (validation) and the
//! CronJob controller (next run times); errors are worded as upstream's.

use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};

/// Set when a field was `*` or `?`: day-of-month and day-of-week then
/// combine with AND instead of OR, as in every cron.
const STAR: u64 = 1 << 63;

#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    kind: Kind,
    /// From a `TZ=` / `CRON_TZ=` prefix.
    tz: Option<TimeZone>,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Fields(Fields),
    /// `@every`: a fixed delay in whole seconds (at least one).
    Every(i64),
}

#[derive(Debug, Clone, PartialEq)]
struct Fields {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
/// Names index from 1 (jan = 1).
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
/// Names index from 0 (sun = 0).
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

fn bits(min: u32, max: u32, step: u32) -> u64 {
    (min..=max)
        .step_by(step as usize)
        .fold(0, |b, i| b | 1 << i)
}

fn all(b: &Bounds) -> u64 {
    bits(b.min, b.max, 1) | STAR
}

impl Schedule {
    /// Parses a schedule as upstream's `cron.ParseStandard`.
    pub fn parse(spec: &str) -> Result<Schedule, String> {
        if spec.is_empty() {
            return Err("empty spec string".into());
        }
        let mut spec = spec;
        let mut tz = None;
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            let eq = spec.find('=').unwrap_or(0);
            let end = spec.find(' ').unwrap_or(spec.len());
            let name = &spec[eq + 1..end];
            tz = Some(load_zone(name).map_err(|e| format!("provided bad location {name}: {e}"))?);
            spec = spec[end..].trim();
        }
        let kind = if spec.starts_with('@') {
            descriptor(spec)?
        } else {
            let fields: Vec<&str> = spec.split_whitespace().collect();
            if fields.len() != 5 {
                return Err(format!(
                    "expected exactly 5 fields, found {}: [{}]",
                    fields.len(),
                    fields.join(" ")
                ));
            }
            Kind::Fields(Fields {
                minute: field(fields[0], &MINUTES)?,
                hour: field(fields[1], &HOURS)?,
                dom: field(fields[2], &DOM)?,
                month: field(fields[3], &MONTHS)?,
                dow: field(fields[4], &DOW)?,
            })
        };
        Ok(Schedule { kind, tz })
    }

    /// Whether the schedule carries its own time zone (`TZ=` prefix).
    pub fn has_zone(&self) -> bool {
        self.tz.is_some()
    }

    /// The first activation strictly after `t` (robfig's `Next`), read in
    /// the schedule's own zone, else in `zone`; `None` when nothing
    /// matches within five years (e.g. 30 February).
    pub fn next(&self, t: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
        match &self.kind {
            Kind::Every(secs) => {
                let whole = t.as_second() + secs;
                Timestamp::from_second(whole).ok()
            }
            Kind::Fields(f) => f.next(t.to_zoned(self.tz.clone().unwrap_or_else(|| zone.clone()))),
        }
    }
}

/// A zone by IANA name from the system database; `UTC` and `""` are UTC and
/// `Local` the process's own, as Go's `time.LoadLocation`.
pub fn load_zone(name: &str) -> Result<TimeZone, String> {
    match name {
        "" | "UTC" => Ok(TimeZone::UTC),
        "Local" => Ok(TimeZone::system()),
        _ => TimeZone::get(name).map_err(|_| format!("unknown time zone {name}")),
    }
}

fn descriptor(spec: &str) -> Result<Kind, String> {
    let (m, h) = (1, 1);
    let fields = |dom, month, dow| {
        Kind::Fields(Fields {
            minute: m,
            hour: h,
            dom,
            month,
            dow,
        })
    };
    Ok(match spec {
        "@yearly" | "@annually" => fields(1 << 1, 1 << 1, all(&DOW)),
        "@monthly" => fields(1 << 1, all(&MONTHS), all(&DOW)),
        "@weekly" => fields(all(&DOM), all(&MONTHS), 1),
        "@daily" | "@midnight" => fields(all(&DOM), all(&MONTHS), all(&DOW)),
        "@hourly" => Kind::Fields(Fields {
            minute: m,
            hour: all(&HOURS),
            dom: all(&DOM),
            month: all(&MONTHS),
            dow: all(&DOW),
        }),
        _ => match spec.strip_prefix("@every ") {
            Some(d) => {
                let nanos =
                    go_duration(d).map_err(|e| format!("failed to parse duration {spec}: {e}"))?;
                // robfig's Every: under a second is a second; whole seconds only.
                Kind::Every((nanos / 1_000_000_000).max(1) as i64)
            }
            None => return Err(format!("unrecognized descriptor: {spec}")),
        },
    })
}

/// One field: comma-separated ranges, each `*`, `?`, `n`, `a-b`, with an
/// optional `/step` (`n/step` meaning `n-max/step`).
fn field(expr: &str, b: &Bounds) -> Result<u64, String> {
    expr.split(',')
        .filter(|r| !r.is_empty())
        .try_fold(0, |acc, r| Ok(acc | range(r, b)?))
}

fn range(expr: &str, b: &Bounds) -> Result<u64, String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_high.len() == 1;
    let (start, mut end, mut extra);
    if low_high[0] == "*" || low_high[0] == "?" {
        (start, end, extra) = (b.min, b.max, STAR);
    } else {
        start = int_or_name(low_high[0], b)?;
        end = match low_high.len() {
            1 => start,
            2 => int_or_name(low_high[1], b)?,
            _ => return Err(format!("too many hyphens: {expr}")),
        };
        extra = 0;
    }
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = parse_uint(range_and_step[1])?;
            if single {
                end = b.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < b.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        ));
    }
    if end > b.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(bits(start, end, step) | extra)
}

fn int_or_name(expr: &str, b: &Bounds) -> Result<u32, String> {
    let lower = expr.to_ascii_lowercase();
    if let Some(i) = b.names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + b.min);
    }
    parse_uint(expr)
}

/// Go's `strconv.Atoi` with upstream's wording, refusing negatives.
fn parse_uint(expr: &str) -> Result<u32, String> {
    match expr.parse::<i64>() {
        Ok(n) if n < 0 => Err(format!("negative number ({n}) not allowed: {expr}")),
        Ok(n) => Ok(n.min(u32::MAX as i64) as u32),
        Err(_) => Err(format!(
            "failed to parse int from {expr}: strconv.Atoi: parsing \"{expr}\": invalid syntax"
        )),
    }
}

/// Go's `time.ParseDuration`, in nanoseconds ("1h30m", "90s", "1.5h").
fn go_duration(s: &str) -> Result<u128, String> {
    let invalid = || format!("time: invalid duration \"{s}\"");
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() || rest.starts_with('-') {
        return Err(invalid());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("time: missing unit in duration \"{s}\""))?;
        let value: f64 = rest[..num_len].parse().map_err(|_| invalid())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            u => return Err(format!("time: unknown unit \"{u}\" in duration \"{s}\"")),
        };
        total += value * unit;
        rest = &rest[unit_len..];
    }
    Ok(total as u128)
}

impl Fields {
    fn day_matches(&self, t: &Zoned) -> bool {
        let dom = self.dom & 1 << t.day() != 0;
        let dow = self.dow & 1 << t.weekday().to_sunday_zero_offset() != 0;
        if self.dom & STAR != 0 || self.dow & STAR != 0 {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// robfig's `SpecSchedule.Next`: advance the coarsest field that does
    /// not match, resetting the finer ones, and wrap to re-check.
    fn next(&self, t: Zoned) -> Option<Timestamp> {
        let zone = t.time_zone().clone();
        // Start at the next whole second.
        let secs = t.timestamp().as_second() + 1;
        let mut t = Timestamp::from_second(secs).ok()?.to_zoned(zone.clone());
        let mut added = false;
        let year_limit = t.year() + 5;
        'wrap: loop {
            if t.year() > year_limit {
                return None;
            }
            while self.month & 1 << t.month() == 0 {
                if !added {
                    added = true;
                    t = t.date().first_of_month().to_zoned(zone.clone()).ok()?;
                }
                t = t.checked_add(1.month()).ok()?;
                if t.month() == 1 {
                    continue 'wrap;
                }
            }
            while !self.day_matches(&t) {
                if !added {
                    added = true;
                    t = t.start_of_day().ok()?;
                }
                // Calendar days keep the wall clock at midnight across DST.
                t = t.date().tomorrow().ok()?.to_zoned(zone.clone()).ok()?;
                if t.day() == 1 {
                    continue 'wrap;
                }
            }
            while self.hour & 1 << t.hour() == 0 {
                if !added {
                    added = true;
                    t = t
                        .with()
                        .minute(0)
                        .second(0)
                        .subsec_nanosecond(0)
                        .build()
                        .ok()?;
                }
                t = t.checked_add(1.hour()).ok()?;
                if t.hour() == 0 {
                    continue 'wrap;
                }
            }
            while self.minute & 1 << t.minute() == 0 {
                if !added {
                    added = true;
                    t = t.with().second(0).subsec_nanosecond(0).build().ok()?;
                }
                t = t.checked_add(1.minute()).ok()?;
                if t.minute() == 0 {
                    continue 'wrap;
                }
            }
            // Standard schedules run at second 0.
            if t.second() != 0 {
                added = true;
                t = t.checked_add((60 - t.second() as i64).seconds()).ok()?;
                continue 'wrap;
            }
            return Some(t.timestamp());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(spec: &str, from: &str) -> String {
        Schedule::parse(spec)
            .unwrap()
            .next(ts(from), &TimeZone::UTC)
            .map(|t| t.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn fields_lists_ranges_steps_names() {
        assert_eq!(
            next("* * * * *", "2024-01-01T10:00:00Z"),
            "2024-01-01T10:01:00Z"
        );
        assert_eq!(
            next("* * * * *", "2024-01-01T10:00:30Z"),
            "2024-01-01T10:01:00Z"
        );
        assert_eq!(
            next("*/15 * * * *", "2024-01-01T10:01:00Z"),
            "2024-01-01T10:15:00Z"
        );
        assert_eq!(
            next("5/20 * * * *", "2024-01-01T10:26:00Z"),
            "2024-01-01T10:45:00Z"
        );
        assert_eq!(
            next("0 9-17/4 * * *", "2024-01-01T14:00:00Z"),
            "2024-01-01T17:00:00Z"
        );
        assert_eq!(
            next("0,30 3 * * *", "2024-01-01T03:00:00Z"),
            "2024-01-01T03:30:00Z"
        );
        // 2024-01-06 is a Saturday: the next weekday 08:00 is Monday the 8th.
        assert_eq!(
            next("0 8 * * MON-fri", "2024-01-06T00:00:00Z"),
            "2024-01-08T08:00:00Z"
        );
        assert_eq!(
            next("0 0 1 jun,DEC *", "2024-07-01T00:00:00Z"),
            "2024-12-01T00:00:00Z"
        );
        assert_eq!(
            next("0 0 29 2 *", "2025-01-01T00:00:00Z"),
            "2028-02-29T00:00:00Z"
        );
        // Both day fields restricted: either matches (1st of month, or a Sunday).
        assert_eq!(
            next("0 0 1 * 0", "2024-01-02T00:00:00Z"),
            "2024-01-07T00:00:00Z"
        );
        // A day field of `*/2` is not a star: days combine with OR.
        assert_eq!(
            next("0 0 */2 * 1", "2024-01-01T12:00:00Z"),
            "2024-01-03T00:00:00Z"
        );
        assert_eq!(next("0 0 30 2 *", "2024-01-01T00:00:00Z"), "");
    }

    #[test]
    fn descriptors() {
        let from = "2024-05-15T10:20:30Z";
        assert_eq!(next("@yearly", from), "2025-01-01T00:00:00Z");
        assert_eq!(next("@annually", from), "2025-01-01T00:00:00Z");
        assert_eq!(next("@monthly", from), "2024-06-01T00:00:00Z");
        // 2024-05-15 is a Wednesday.
        assert_eq!(next("@weekly", from), "2024-05-19T00:00:00Z");
        assert_eq!(next("@daily", from), "2024-05-16T00:00:00Z");
        assert_eq!(next("@midnight", from), "2024-05-16T00:00:00Z");
        assert_eq!(next("@hourly", from), "2024-05-15T11:00:00Z");
        assert_eq!(next("@every 1h30m", from), "2024-05-15T11:50:30Z");
    }

    #[test]
    fn time_zones() {
        let ny = load_zone("America/New_York").expect("the system tz database");
        let s = Schedule::parse("0 9 * * *").unwrap();
        let t = s.next(ts("2024-03-01T00:00:00Z"), &ny).unwrap();
        assert_eq!(t.to_string(), "2024-03-01T14:00:00Z");
        // Across the spring-forward change 09:00 local is 13:00 UTC.
        let t = s.next(ts("2024-03-10T12:00:00Z"), &ny).unwrap();
        assert_eq!(t.to_string(), "2024-03-10T13:00:00Z");
        let tz = Schedule::parse("CRON_TZ=Asia/Tokyo 0 0 * * *").unwrap();
        assert!(tz.has_zone());
        let t = tz.next(ts("2024-01-01T00:00:00Z"), &TimeZone::UTC).unwrap();
        assert_eq!(t.to_string(), "2024-01-01T15:00:00Z");
        assert!(load_zone("Mars/Olympus").is_err());
    }

    #[test]
    fn errors_as_upstream() {
        let err = |s: &str| Schedule::parse(s).unwrap_err();
        assert_eq!(err(""), "empty spec string");
        assert_eq!(err("* * *"), "expected exactly 5 fields, found 3: [* * *]");
        assert_eq!(
            err("60 * * * *"),
            "end of range (60) above maximum (59): 60"
        );
        assert_eq!(
            err("* * 0 * *"),
            "beginning of range (0) below minimum (1): 0"
        );
        assert_eq!(err("* * * * 7"), "end of range (7) above maximum (6): 7");
        assert_eq!(
            err("5-1 * * * *"),
            "beginning of range (5) beyond end of range (1): 5-1"
        );
        assert_eq!(
            err("*/0 * * * *"),
            "step of range should be a positive number: */0"
        );
        assert_eq!(err("@fortnightly"), "unrecognized descriptor: @fortnightly");
        assert!(err("x * * * *").starts_with("failed to parse int from x"));
        assert!(err("TZ=Nowhere/Land * * * * *").starts_with("provided bad location Nowhere/Land"));
    }
}
