//! Sets of completion indexes as upstream writes them in
//! `status.completedIndexes` / `failedIndexes`: ordered intervals, printed
//! "1,3-5,7" (two neighbours as "1,2").

/// Sorted, disjoint, non-adjacent closed intervals.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Indexes(Vec<(i32, i32)>);

impl Indexes {
    /// Parses a status string, ignoring what is malformed and cutting
    /// whatever lies at or beyond `completions`.
    pub fn parse(s: &str, completions: i32) -> Indexes {
        let intervals = s.split(',').filter_map(|part| {
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
                None => {
                    let a: i32 = part.parse().ok()?;
                    (a, a)
                }
            };
            (a >= 0 && a <= b && a < completions).then(|| (a, b.min(completions - 1)))
        });
        Indexes::normalized(intervals.collect())
    }

    fn normalized(mut v: Vec<(i32, i32)>) -> Indexes {
        v.sort();
        let mut out: Vec<(i32, i32)> = Vec::with_capacity(v.len());
        for (a, b) in v {
            match out.last_mut() {
                Some(last) if a <= last.1 + 1 => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        Indexes(out)
    }

    /// These indexes and `more`.
    pub fn with(&self, more: impl IntoIterator<Item = i32>) -> Indexes {
        let mut v = self.0.clone();
        v.extend(more.into_iter().map(|i| (i, i)));
        Indexes::normalized(v)
    }

    pub fn merge(&self, other: &Indexes) -> Indexes {
        let mut v = self.0.clone();
        v.extend_from_slice(&other.0);
        Indexes::normalized(v)
    }

    pub fn has(&self, i: i32) -> bool {
        self.0.iter().any(|&(a, b)| a <= i && i <= b)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many indexes this set shares with `other`.
    pub fn overlap(&self, other: &Indexes) -> i32 {
        let (mut i, mut j, mut n) = (0, 0, 0);
        while i < self.0.len() && j < other.0.len() {
            let (a, b) = (self.0[i], other.0[j]);
            n += (a.1.min(b.1) - a.0.max(b.0) + 1).max(0);
            if a.1 < b.1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        n
    }

    pub fn total(&self) -> i32 {
        self.0.iter().map(|(a, b)| b - a + 1).sum()
    }

    /// The first `count` indexes below `completions` not in this set
    /// (upstream's `firstPendingIndexes`).
    pub fn first_missing(&self, count: usize, completions: i32) -> Vec<i32> {
        let mut out = Vec::new();
        let mut candidate = 0;
        for &(a, b) in &self.0 {
            while candidate < completions && out.len() < count && candidate < a {
                out.push(candidate);
                candidate += 1;
            }
            candidate = candidate.max(b + 1);
        }
        while candidate < completions && out.len() < count {
            out.push(candidate);
            candidate += 1;
        }
        out
    }
}

impl std::fmt::Display for Indexes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, &(a, b)) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            match b - a {
                0 => write!(f, "{a}")?,
                1 => write!(f, "{a},{b}")?,
                _ => write!(f, "{a}-{b}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_merge_print() {
        let i = Indexes::parse("0,2-4,x,9-12", 11);
        assert_eq!(i.to_string(), "0,2-4,9,10");
        assert_eq!(i.total(), 6);
        assert_eq!(i.with([1, 7]).to_string(), "0-4,7,9,10");
        assert!(i.has(3) && !i.has(5));
        assert_eq!(i.first_missing(3, 11), vec![1, 5, 6]);
        assert_eq!(i.first_missing(9, 11), vec![1, 5, 6, 7, 8]);
        assert_eq!(Indexes::default().to_string(), "");
        let other = Indexes::parse("1-3,9", 11);
        assert_eq!((i.overlap(&other), other.overlap(&i)), (3, 3));
        assert_eq!(i.overlap(&Indexes::default()), 0);
    }
}
