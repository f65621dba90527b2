//! JSONPath in the Kubernetes dialect (client-go `util/jsonpath`), as the API
//! server evaluates a CRD's `additionalPrinterColumns[].jsonPath` to fill the
//! cells of `kubectl get` tables.
//!
//! - `parse`: the grammar (fields, `['key']`, `[i]`, `[a:b:c]`, `[*]`, `.*`,
//!   `..`, unions `[x,y]`, filters `[?(@.a=="b")]`, quoted and numeric literals);
//! - `eval`: selecting values, with upstream's quirks kept;
//! - `cell`: a column's cell from what the path selects.
//!
//! Where upstream depends on Go rather than on the path, this follows the
//! document: maps are walked in their stored order (Go's is random), and `*`
//! selects nothing from a string (Go: its bytes). The template keywords
//! `range`/`end` (meaningless in a column) fail like any unknown identifier,
//! and a path selecting over a million values fails rather than growing on.

mod cell;
mod eval;
mod parse;

#[cfg(test)]
mod tests;

pub use cell::cell;

use serde_json::Value;

/// A parsed JSONPath of the Kubernetes dialect, as CRD printer columns use it
/// (the expression without the surrounding `{}`; upstream wraps it as `{<path>}`).
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    /// Each `{...}` of the template. Only the first is the column's value, but
    /// a `}` inside the expression opens more, and upstream evaluates them all.
    actions: Vec<Vec<parse::Node>>,
}

impl JsonPath {
    /// Parses `expr`; errors read as upstream's parser writes them
    /// (`unterminated array`, `invalid array index x`, ...).
    pub fn parse(expr: &str) -> Result<JsonPath, String> {
        let actions = parse::template(&format!("{{{expr}}}"), 0)?;
        Ok(JsonPath { actions })
    }

    /// Every value the path selects, in document order. Literals in the path
    /// (`{"text"}`, numbers) select themselves, hence the borrow of `self`.
    /// A path that fails (an index out of bounds, a filter over a map, a
    /// comparison of a string with a number) selects nothing.
    pub fn find<'a>(&'a self, obj: &'a Value) -> Vec<&'a Value> {
        self.try_find(obj).unwrap_or_default()
    }

    /// [`JsonPath::find`], keeping the evaluation error; missing fields are no
    /// error (upstream's `AllowMissingKeys(true)`, as for columns).
    pub fn try_find<'a>(&'a self, obj: &'a Value) -> Result<Vec<&'a Value>, String> {
        let mut first = None;
        for action in &self.actions {
            let values = eval::list(action, vec![obj]).map_err(|failure| failure.message)?;
            first.get_or_insert(values);
        }
        Ok(first.unwrap_or_default())
    }
}

/// Whether `expr` is one upstream's CRD validation accepts for
/// `additionalPrinterColumns[].jsonPath` (apiextensions `validateSimpleJSONPath`),
/// or the detail of its `Invalid value` error.
///
/// Upstream checks no more than the leading `.`: it never parses the path here.
/// A path that then fails to parse is only noticed when the table convertor is
/// built, which keeps the columns before it and drops it and all after it.
/// `ValidateCustomResourceColumnDefinition` reports an empty path as
/// `Required value` (field `...additionalPrinterColumns[i].JSONPath`) before
/// asking this.
pub fn validate_column_path(expr: &str) -> Result<(), String> {
    match expr.as_bytes().first() {
        None => Err("must not be empty".into()),
        Some(b'.') => Ok(()),
        Some(_) => Err("must be a simple json path starting with .".into()),
    }
}
