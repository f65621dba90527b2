//! Which scheduled time a CronJob should run now, as upstream's
//! `mostRecentScheduleTime`: the latest activation between the last one
//! handled (or the CronJob's creation, or the starting deadline) and now,
//! and how many were missed on the way — more than 100 is reported as
//! "too many missed start times".

use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use skiff_machinery::cron::Schedule;
use std::time::Duration;

/// Requeue this long after an activation, so the sync lands past it.
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Missed {
    None,
    Few,
    /// More than 100 activations missed.
    Many,
}

/// When runs were last handled, and how late a run may still start.
pub struct Window {
    pub created: Timestamp,
    pub last_schedule: Option<Timestamp>,
    pub starting_deadline_seconds: Option<i64>,
}

pub struct Recent {
    pub earliest: Timestamp,
    pub most_recent: Option<Timestamp>,
    pub missed: Missed,
}

pub fn most_recent(
    w: &Window,
    now: Timestamp,
    s: &Schedule,
    tz: &TimeZone,
    with_deadline: bool,
) -> Result<Recent, String> {
    let mut earliest = w.last_schedule.unwrap_or(w.created);
    if let (true, Some(d)) = (with_deadline, w.starting_deadline_seconds) {
        // Nothing before the deadline can start any more.
        let deadline = now - SignedDuration::from_secs(d);
        earliest = earliest.max(deadline);
    }
    let none = |missed| {
        Ok(Recent {
            earliest,
            most_recent: None,
            missed,
        })
    };
    let Some(t1) = s.next(earliest, tz) else {
        return none(Missed::None);
    };
    if now < t1 {
        return none(Missed::None);
    }
    let Some(t2) = s.next(t1, tz) else {
        return Ok(Recent {
            earliest,
            most_recent: Some(t1),
            missed: Missed::None,
        });
    };
    if now < t2 {
        return Ok(Recent {
            earliest,
            most_recent: Some(t1),
            missed: Missed::None,
        });
    }
    // Estimate the number missed from the interval between the first two,
    // then walk only the last few to find the latest exactly.
    let between = t2.duration_since(t1).as_secs_f64().round() as i64;
    if between < 1 {
        return Err("time difference between two schedules is less than 1 second".into());
    }
    let elapsed = now.duration_since(t1).as_secs();
    let missed_count = elapsed / between + 1;
    let potential = t1 + SignedDuration::from_secs((missed_count - 2) * between);
    let mut latest = None;
    let mut t = s.next(potential, tz);
    while let Some(x) = t.filter(|x| *x <= now) {
        latest = Some(x);
        t = s.next(x, tz);
    }
    if latest.is_none() {
        // The estimate overshoots for irregular schedules (upstream then
        // reports nothing due); walk from the first instead, boundedly.
        let mut t = Some(t1);
        for _ in 0..100_000 {
            match t.filter(|x| *x <= now) {
                Some(x) => {
                    latest = Some(x);
                    t = s.next(x, tz);
                }
                None => break,
            }
        }
    }
    let missed = if missed_count > 100 {
        Missed::Many
    } else {
        Missed::Few
    };
    Ok(Recent {
        earliest,
        most_recent: latest,
        missed,
    })
}

/// The time to run now, if any (`nextScheduleTime`).
pub fn next_schedule_time(
    w: &Window,
    now: Timestamp,
    s: &Schedule,
    tz: &TimeZone,
) -> Result<(Option<Timestamp>, Missed), String> {
    let r = most_recent(w, now, s, tz, true)?;
    Ok((r.most_recent.filter(|t| *t <= now), r.missed))
}

/// How long until the next activation after the latest one due
/// (`nextScheduleTimeDuration`), ignoring the starting deadline.
pub fn next_schedule_delay(w: &Window, now: Timestamp, s: &Schedule, tz: &TimeZone) -> Duration {
    let from = match most_recent(w, now, s, tz, false) {
        Err(_) => now,
        Ok(Recent {
            most_recent: Some(t),
            ..
        }) => t,
        Ok(Recent {
            missed: Missed::None,
            earliest,
            ..
        }) => earliest,
        Ok(_) => now,
    };
    match s.next(from, tz) {
        Some(next) => {
            Duration::try_from(next.duration_since(now)).unwrap_or_default() + NEXT_SCHEDULE_DELTA
        }
        // Nothing ever again: look once a day in case the spec changes.
        None => Duration::from_secs(24 * 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn window(created: &str, last: Option<&str>, deadline: Option<i64>) -> Window {
        Window {
            created: ts(created),
            last_schedule: last.map(ts),
            starting_deadline_seconds: deadline,
        }
    }

    #[test]
    fn due_missed_and_too_many() {
        let every_min = Schedule::parse("* * * * *").unwrap();
        let utc = TimeZone::UTC;
        // Created 10:00:30: nothing is due before 10:01.
        let w = window("2024-01-01T10:00:30Z", None, None);
        let (t, m) = next_schedule_time(&w, ts("2024-01-01T10:00:50Z"), &every_min, &utc).unwrap();
        assert_eq!((t, m), (None, Missed::None));
        // At 10:01:10 the 10:01 run is due, nothing missed.
        let (t, m) = next_schedule_time(&w, ts("2024-01-01T10:01:10Z"), &every_min, &utc).unwrap();
        assert_eq!((t, m), (Some(ts("2024-01-01T10:01:00Z")), Missed::None));
        // At 10:05:10 runs were missed; the latest (10:05) is the one to run.
        let (t, m) = next_schedule_time(&w, ts("2024-01-01T10:05:10Z"), &every_min, &utc).unwrap();
        assert_eq!((t, m), (Some(ts("2024-01-01T10:05:00Z")), Missed::Few));
        // Three hours later: more than 100 missed.
        let (t, m) = next_schedule_time(&w, ts("2024-01-01T13:00:10Z"), &every_min, &utc).unwrap();
        assert_eq!((t, m), (Some(ts("2024-01-01T13:00:00Z")), Missed::Many));
        // A starting deadline of 200 s only looks back that far: few missed.
        let w = window("2024-01-01T10:00:30Z", None, Some(200));
        let (t, m) = next_schedule_time(&w, ts("2024-01-01T13:00:10Z"), &every_min, &utc).unwrap();
        assert_eq!((t, m), (Some(ts("2024-01-01T13:00:00Z")), Missed::Few));
        // The last handled run counts from there.
        let w = window("2024-01-01T10:00:30Z", Some("2024-01-01T10:05:00Z"), None);
        let (t, _) = next_schedule_time(&w, ts("2024-01-01T10:05:30Z"), &every_min, &utc).unwrap();
        assert_eq!(t, None);
        let d = next_schedule_delay(&w, ts("2024-01-01T10:05:30Z"), &every_min, &utc);
        assert_eq!(d, Duration::from_millis(30_100));
    }

    #[test]
    fn irregular_schedules_find_the_latest() {
        // Every 4 hours from 06:00 to 16:00 on weekdays: intervals differ.
        let s = Schedule::parse("30 6-16/4 * * 1-5").unwrap();
        let w = window("2024-01-01T00:00:00Z", None, None);
        // Friday 2024-01-05 evening: the latest is Friday 14:30.
        let (t, m) =
            next_schedule_time(&w, ts("2024-01-05T20:00:00Z"), &s, &TimeZone::UTC).unwrap();
        assert_eq!((t, m), (Some(ts("2024-01-05T14:30:00Z")), Missed::Few));
    }
}
