//! Reading the agents' `/metrics/resource`: the Prometheus text format
//! (`name{label="value",…} value [timestamp-ms]`, `#` comments), and from it
//! one batch of points per node as metrics-server decodes it: the node's
//! cumulative cpu and working set, and each container's with its start time.
//! A container lacking cpu or memory is left out.

use std::collections::HashMap;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

impl Line {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {what}")]
pub struct ParseError {
    pub line: usize,
    pub what: &'static str,
}

/// A Go float as Prometheus writes it (`1.5`, `1e+07`, `NaN`, `+Inf`).
fn float(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// `k="v",…}` (after the `{`): the labels and the rest of the line.
fn labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(rest) = s.strip_prefix('}') {
            return Some((out, rest));
        }
        let (key, rest) = s.split_once('=')?;
        let mut chars = rest.strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        out.push((key.trim().to_string(), value));
        s = &rest[1 + end + 1..];
    }
}

/// Every sample line of `text`.
pub fn parse(text: &str) -> Result<Vec<Line>, ParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |what| ParseError { line: i + 1, what };
        let name_end = line
            .find(|c: char| c == '{' || c.is_whitespace())
            .ok_or(err("no value"))?;
        let (name, rest) = line.split_at(name_end);
        let (labels, rest) = match rest.strip_prefix('{') {
            Some(r) => labels(r).ok_or(err("bad labels"))?,
            None => (Vec::new(), rest),
        };
        let mut fields = rest.split_whitespace();
        let value = fields.next().and_then(float).ok_or(err("bad value"))?;
        let timestamp_ms = match fields.next() {
            Some(t) => Some(t.parse().map_err(|_| err("bad timestamp"))?),
            None => None,
        };
        out.push(Line {
            name: name.to_string(),
            labels,
            value,
            timestamp_ms,
        });
    }
    Ok(out)
}

/// A cumulative cpu reading and the working set at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub timestamp_ms: i64,
    /// Cpu time since start, nanoseconds.
    pub cpu_ns: u64,
    pub memory: u64,
    /// When the container started (ms); 0 for the node.
    pub start_ms: i64,
}

/// One scrape of one node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    pub node: Option<Point>,
    /// By (namespace, pod), then by container name.
    pub pods: HashMap<(String, String), HashMap<String, Point>>,
}

#[derive(Default)]
struct Partial {
    cpu: Option<(f64, Option<i64>)>,
    memory: Option<f64>,
    start: Option<f64>,
}

impl Partial {
    fn point(&self, scraped_ms: i64) -> Option<Point> {
        let (cpu, ts) = self.cpu?;
        let memory = self.memory?;
        if !(cpu.is_finite() && cpu >= 0.0 && memory.is_finite() && memory >= 0.0) {
            return None;
        }
        Some(Point {
            timestamp_ms: ts.unwrap_or(scraped_ms),
            cpu_ns: (cpu * 1e9).round() as u64,
            memory: memory as u64,
            start_ms: self
                .start
                .filter(|s| s.is_finite())
                .map_or(0, |s| (s * 1000.0) as i64),
        })
    }
}

/// The batch in `lines`, scraped at `scraped_ms` (the time of points
/// that carry none).
pub fn batch(lines: &[Line], scraped_ms: i64) -> Batch {
    let mut node = Partial::default();
    let mut containers: HashMap<(String, String, String), Partial> = HashMap::new();
    for l in lines {
        let key = || -> Option<(String, String, String)> {
            Some((
                l.label("namespace")?.to_string(),
                l.label("pod")?.to_string(),
                l.label("container")?.to_string(),
            ))
        };
        match l.name.as_str() {
            "node_cpu_usage_seconds_total" => node.cpu = Some((l.value, l.timestamp_ms)),
            "node_memory_working_set_bytes" => node.memory = Some(l.value),
            "container_cpu_usage_seconds_total" => {
                if let Some(k) = key() {
                    containers.entry(k).or_default().cpu = Some((l.value, l.timestamp_ms));
                }
            }
            "container_memory_working_set_bytes" => {
                if let Some(k) = key() {
                    containers.entry(k).or_default().memory = Some(l.value);
                }
            }
            "container_start_time_seconds" => {
                if let Some(k) = key() {
                    containers.entry(k).or_default().start = Some(l.value);
                }
            }
            _ => {}
        }
    }
    let mut out = Batch {
        node: node.point(scraped_ms),
        pods: HashMap::new(),
    };
    for ((ns, pod, container), p) in containers {
        if let Some(point) = p.point(scraped_ms) {
            out.pods
                .entry((ns, pod))
                .or_default()
                .insert(container, point);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="web",namespace="default",pod="a\"b"} 2.5 1700000000123
container_cpu_usage_seconds_total{container="lonely",namespace="default",pod="x"} 1 1700000000123
container_memory_working_set_bytes{container="web",namespace="default",pod="a\"b"} 1.6384e+07 1700000000123
container_start_time_seconds{container="web",namespace="default",pod="a\"b"} 1.6999999e+09
node_cpu_usage_seconds_total 1234.000000001 1700000000100
node_memory_working_set_bytes 1.073741824e+09 1700000000100
resource_scrape_error 0
"#;

    #[test]
    fn parses_the_text_format() {
        let lines = parse(TEXT).unwrap();
        assert_eq!(lines.len(), 7);
        assert_eq!(
            lines[0].labels,
            vec![
                ("container".to_string(), "web".to_string()),
                ("namespace".into(), "default".into()),
                ("pod".into(), "a\"b".into()),
            ]
        );
        assert_eq!(lines[0].value, 2.5);
        assert_eq!(lines[0].timestamp_ms, Some(1_700_000_000_123));
        assert_eq!(lines[6].labels, vec![]);
        assert_eq!(lines[6].timestamp_ms, None);
        assert_eq!(parse("x{a=\"1\"} nope").unwrap_err().what, "bad value");
        assert_eq!(parse("x{a=1} 1").unwrap_err().what, "bad labels");
        assert_eq!(parse("x 1 later").unwrap_err().what, "bad timestamp");
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn batches_of_complete_points() {
        let b = batch(&parse(TEXT).unwrap(), 42);
        assert_eq!(
            b.node,
            Some(Point {
                timestamp_ms: 1_700_000_000_100,
                cpu_ns: 1_234_000_000_001,
                memory: 1 << 30,
                start_ms: 0,
            })
        );
        let pod = &b.pods[&("default".to_string(), "a\"b".to_string())];
        assert_eq!(
            pod["web"],
            Point {
                timestamp_ms: 1_700_000_000_123,
                cpu_ns: 2_500_000_000,
                memory: 16_384_000,
                start_ms: 1_699_999_900_000,
            }
        );
        assert_eq!(b.pods.len(), 1, "a container without memory is left out");
        let untimed = batch(
            &parse("node_cpu_usage_seconds_total 1\nnode_memory_working_set_bytes 2\n").unwrap(),
            42,
        );
        assert_eq!(untimed.node.unwrap().timestamp_ms, 42);
    }
}
