//! Prometheus metrics of the API server: request counts and latency
//! histograms by verb, resource and code, in the text exposition format.

use skiff_machinery::histogram::Histogram;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upstream's apiserver_request_duration_seconds buckets.
const BUCKETS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 10.0, 30.0,
    60.0,
];

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<(String, String), Histogram>>,
}

impl Metrics {
    pub fn observe(&self, verb: &str, resource: &str, code: u16, took: Duration) {
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((verb.into(), resource.into(), code)).or_default() += 1;
        }
        if verb == "WATCH" {
            return; // a watch's duration is its lifetime, not a latency
        }
        if let Ok(mut l) = self.latency.lock() {
            l.entry((verb.into(), resource.into()))
                .or_insert_with(|| Histogram::new(BUCKETS))
                .observe(took.as_secs_f64());
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP apiserver_request_total Counter of apiserver requests broken out for each verb, resource and HTTP response code.\n# TYPE apiserver_request_total counter\n");
        if let Ok(r) = self.requests.lock() {
            for ((verb, res, code), n) in r.iter() {
                let _ = writeln!(out, "apiserver_request_total{{code=\"{code}\",resource=\"{res}\",verb=\"{verb}\"}} {n}");
            }
        }
        out.push_str("# HELP apiserver_request_duration_seconds Response latency distribution in seconds for each verb and resource.\n# TYPE apiserver_request_duration_seconds histogram\n");
        if let Ok(l) = self.latency.lock() {
            for ((verb, res), h) in l.iter() {
                let labels = format!("resource=\"{res}\",verb=\"{verb}\"");
                h.write(&mut out, "apiserver_request_duration_seconds", &labels);
            }
        }
        out
    }
}
