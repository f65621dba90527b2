//! A set of field paths, shaped as upstream's `fieldpath.Set`: at each level
//! the elements owned as themselves (members) and, per element, the set of
//! paths below it (children). An element can be both: a list item owned as
//! itself and through its fields (FieldsV1's `"."`).

use super::path::{Path, PathElement};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Set {
    pub(crate) members: BTreeSet<PathElement>,
    pub(crate) children: BTreeMap<PathElement, Set>,
}

impl Set {
    pub fn new() -> Set {
        Set::default()
    }

    /// A set of the given paths.
    pub fn of(paths: &[Path]) -> Set {
        let mut s = Set::new();
        for p in paths {
            s.insert(p);
        }
        s
    }

    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// Whether `path` is a member (owned as itself), not merely a prefix.
    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.values().all(Set::is_empty)
    }

    /// The paths below `pe`, if any.
    pub fn child(&self, pe: &PathElement) -> Option<&Set> {
        self.children.get(pe)
    }

    pub fn union(&self, other: &Set) -> Set {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (pe, c) in &other.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(c),
                None => c.clone(),
            };
            out.children.insert(pe.clone(), merged);
        }
        out
    }

    pub fn intersection(&self, other: &Set) -> Set {
        Set {
            members: self.members.intersection(&other.members).cloned().collect(),
            children: self
                .children
                .iter()
                .filter_map(|(pe, c)| {
                    let both = c.intersection(other.children.get(pe)?);
                    (!both.is_empty()).then(|| (pe.clone(), both))
                })
                .collect(),
        }
    }

    /// Paths of `self` not in `other`. A member of `other` does not remove
    /// the paths below it (parent − child = parent, child − parent = child).
    pub fn difference(&self, other: &Set) -> Set {
        Set {
            members: self.members.difference(&other.members).cloned().collect(),
            children: self
                .children
                .iter()
                .filter_map(|(pe, c)| {
                    let rest = match other.children.get(pe) {
                        Some(o) => c.difference(o),
                        None => c.clone(),
                    };
                    (!rest.is_empty()).then(|| (pe.clone(), rest))
                })
                .collect(),
        }
    }

    /// Like `difference`, but a member of `other` also removes everything below it.
    pub fn recursive_difference(&self, other: &Set) -> Set {
        Set {
            members: self.members.difference(&other.members).cloned().collect(),
            children: self
                .children
                .iter()
                .filter(|(pe, _)| !other.members.contains(pe))
                .filter_map(|(pe, c)| {
                    let rest = match other.children.get(pe) {
                        Some(o) => c.recursive_difference(o),
                        None => c.clone(),
                    };
                    (!rest.is_empty()).then(|| (pe.clone(), rest))
                })
                .collect(),
        }
    }

    /// Every member path, in upstream's iteration order: the members of a
    /// level first, then the paths below each element.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        for m in &self.members {
            let mut p = prefix.clone();
            p.push(m.clone());
            out.push(p);
        }
        for (pe, c) in &self.children {
            prefix.push(pe.clone());
            c.collect(prefix, out);
            prefix.pop();
        }
    }
}
