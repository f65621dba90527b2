//! What upstream's client-go event correlator decides before an event is
//! written: too many events about one object are dropped (a token bucket
//! per object and type: 25 at once, one more every five minutes), more than
//! ten different messages of one reason within ten minutes are combined into
//! one event ("(combined from similar events): …"), and an event seen again
//! only counts up the one already written. A ReplicaSet creating 1,000 pods
//! so writes a handful of events, not 1,000.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

const SPAM_BURST: f64 = 25.0;
const SPAM_REFILL: Duration = Duration::from_secs(300);
const SIMILAR_MAX: usize = 10;
const SIMILAR_WINDOW: Duration = Duration::from_secs(600);
/// Keys remembered per map (upstream's LRU size); the oldest go first.
const REMEMBERED: usize = 4096;
const COMBINED: &str = "(combined from similar events): ";

/// What an event is, for correlating: who reports it, about what, and why.
pub struct Facts<'a> {
    /// Reporting controller and instance, and the regarded object's kind,
    /// namespace, name, uid and apiVersion.
    pub source_and_object: &'a str,
    pub type_: &'a str,
    pub reason: &'a str,
    pub note: &'a str,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Drop,
    /// Write a new event with this note.
    Create {
        note: String,
    },
    /// The event named `name` (written by an earlier `Create` with that
    /// key and `note`) has now been seen `count` times.
    Count {
        name: String,
        count: i32,
        note: String,
    },
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

struct Similar {
    notes: HashSet<String>,
    at: Instant,
}

struct Seen {
    name: String,
    count: i32,
    at: Instant,
}

#[derive(Default)]
pub struct Correlator {
    spam: HashMap<String, Bucket>,
    similar: HashMap<String, Similar>,
    seen: HashMap<String, Seen>,
}

impl Correlator {
    /// Decides what to write for an event; `name` is the name it gets if it
    /// is written as a new one.
    pub fn observe(&mut self, f: &Facts, name: &str, now: Instant) -> Outcome {
        if !self.take_token(&format!("{}\0{}", f.source_and_object, f.type_), now) {
            return Outcome::Drop;
        }
        let (key, note) = self.aggregate(f, now);
        forget_oldest(&mut self.seen, |s| s.at);
        match self.seen.get_mut(&key) {
            Some(s) => {
                s.count += 1;
                s.at = now;
                Outcome::Count {
                    name: s.name.clone(),
                    count: s.count,
                    note,
                }
            }
            None => {
                self.seen.insert(
                    key,
                    Seen {
                        name: name.to_string(),
                        count: 1,
                        at: now,
                    },
                );
                Outcome::Create { note }
            }
        }
    }

    fn take_token(&mut self, key: &str, now: Instant) -> bool {
        forget_oldest(&mut self.spam, |b| b.at);
        let b = self.spam.entry(key.to_string()).or_insert(Bucket {
            tokens: SPAM_BURST,
            at: now,
        });
        let refilled =
            now.saturating_duration_since(b.at).as_secs_f64() / SPAM_REFILL.as_secs_f64();
        b.tokens = (b.tokens + refilled).min(SPAM_BURST);
        b.at = now;
        if b.tokens < 1.0 {
            return false;
        }
        b.tokens -= 1.0;
        true
    }

    /// The key an event is counted under and its note: its own while its
    /// reason has had few different notes lately, else the reason's
    /// combined one.
    fn aggregate(&mut self, f: &Facts, now: Instant) -> (String, String) {
        let key = format!("{}\0{}\0{}", f.source_and_object, f.type_, f.reason);
        forget_oldest(&mut self.similar, |s| s.at);
        let s = self.similar.entry(key.clone()).or_insert(Similar {
            notes: HashSet::new(),
            at: now,
        });
        if now.saturating_duration_since(s.at) > SIMILAR_WINDOW {
            s.notes.clear();
        }
        s.at = now;
        s.notes.insert(f.note.to_string());
        if s.notes.len() < SIMILAR_MAX {
            return (format!("{key}\0{}", f.note), f.note.to_string());
        }
        // Keep the set at its cap, as upstream's PopAny does.
        if let Some(any) = s.notes.iter().next().cloned() {
            s.notes.remove(&any);
        }
        (key, format!("{COMBINED}{}", f.note))
    }
}

/// Keeps a map under `REMEMBERED` keys by dropping its least recent quarter.
fn forget_oldest<V>(map: &mut HashMap<String, V>, at: impl Fn(&V) -> Instant) {
    if map.len() < REMEMBERED {
        return;
    }
    let mut times: Vec<Instant> = map.values().map(&at).collect();
    times.sort_unstable();
    let cutoff = times[REMEMBERED / 4];
    map.retain(|_, v| at(v) > cutoff);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(object: &'a str, reason: &'a str, note: &'a str) -> Facts<'a> {
        Facts {
            source_and_object: object,
            type_: "Normal",
            reason,
            note,
        }
    }

    #[test]
    fn repeats_count_up_the_first_event() {
        let mut c = Correlator::default();
        let now = Instant::now();
        let f = facts("rs-a", "FailedCreate", "quota exceeded");
        assert_eq!(
            c.observe(&f, "e1", now),
            Outcome::Create {
                note: "quota exceeded".into()
            }
        );
        assert_eq!(
            c.observe(&f, "e2", now),
            Outcome::Count {
                name: "e1".into(),
                count: 2,
                note: "quota exceeded".into()
            }
        );
    }

    #[test]
    fn many_similar_notes_are_combined_and_then_dropped() {
        let mut c = Correlator::default();
        let now = Instant::now();
        let notes: Vec<String> = (0..40).map(|i| format!("Created pod: p-{i}")).collect();
        let outcomes: Vec<Outcome> = notes
            .iter()
            .enumerate()
            .map(|(i, n)| c.observe(&facts("rs-a", "SuccessfulCreate", n), &format!("e{i}"), now))
            .collect();
        // Upstream's aggregator: nine on their own, the tenth is combined.
        for (i, o) in outcomes.iter().take(SIMILAR_MAX - 1).enumerate() {
            assert_eq!(
                o,
                &Outcome::Create {
                    note: notes[i].clone()
                }
            );
        }
        assert_eq!(
            outcomes[SIMILAR_MAX - 1],
            Outcome::Create {
                note: format!("{COMBINED}Created pod: p-9")
            }
        );
        assert_eq!(
            outcomes[SIMILAR_MAX],
            Outcome::Count {
                name: "e9".into(),
                count: 2,
                note: format!("{COMBINED}Created pod: p-10")
            }
        );
        // The 26th event about the object within the burst is dropped.
        assert!(outcomes[..25].iter().all(|o| *o != Outcome::Drop));
        assert!(outcomes[25..].iter().all(|o| *o == Outcome::Drop));
        // Other objects have buckets of their own, and tokens come back.
        assert_ne!(
            c.observe(&facts("rs-b", "SuccessfulCreate", "x"), "f", now),
            Outcome::Drop
        );
        let later = now + SPAM_REFILL;
        assert_ne!(
            c.observe(&facts("rs-a", "SuccessfulCreate", "y"), "g", later),
            Outcome::Drop
        );
    }

    #[test]
    fn memory_stays_bounded() {
        let mut c = Correlator::default();
        let now = Instant::now();
        for i in 0..3 * REMEMBERED {
            let object = format!("pod-{i}");
            c.observe(
                &facts(&object, "Scheduled", "ok"),
                "e",
                now + Duration::from_millis(i as u64),
            );
        }
        assert!(c.spam.len() <= REMEMBERED);
        assert!(c.similar.len() <= REMEMBERED);
        assert!(c.seen.len() <= REMEMBERED);
    }
}
