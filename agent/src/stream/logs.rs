//! `kubectl logs`: a container's CRI log files read back as the container
//! wrote them. Rotated files come first, then the live one; the CRI prefix
//! is stripped and partial (`P`) records are joined into their line. Options
//! as kubelet's: `tailLines` (the last N lines), `sinceSeconds`/`sinceTime`
//! (records older are skipped), `timestamps` (each line prefixed with its
//! RFC 3339 time), `limitBytes` (output cut after N bytes) and `follow`
//! (new lines as they come, across rotations, until the container ends).
//! Blocking: run from `spawn_blocking`.

use crate::runtime::crilog::{self, Record};
use bytes::Bytes;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// How often a follower looks for new lines.
const POLL: Duration = Duration::from_millis(100);
/// Output is handed on in pieces of about this size.
const CHUNK: usize = 32 * 1024;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<u64>,
    pub since: Option<Timestamp>,
    pub limit_bytes: Option<u64>,
}

impl LogOptions {
    /// From kubelet's query parameters; errors are upstream's validation messages.
    pub fn from_query(pairs: &[(String, String)]) -> Result<LogOptions, String> {
        let get = |k: &str| {
            pairs
                .iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        let flag = |k: &str| get(k).is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
        let int = |k: &str| -> Result<Option<i64>, String> {
            get(k)
                .map(|v| {
                    v.parse::<i64>()
                        .map_err(|_| format!("{k}: invalid value {v:?}"))
                })
                .transpose()
        };
        let mut o = LogOptions {
            follow: flag("follow"),
            previous: flag("previous"),
            timestamps: flag("timestamps"),
            ..Default::default()
        };
        if let Some(n) = int("tailLines")? {
            if n < 0 {
                return Err(format!(
                    "tailLines: Invalid value: {n}: must be greater than or equal to 0"
                ));
            }
            o.tail_lines = Some(n as u64);
        }
        if let Some(n) = int("limitBytes")? {
            if n < 1 {
                return Err(format!(
                    "limitBytes: Invalid value: {n}: must be greater than 0"
                ));
            }
            o.limit_bytes = Some(n as u64);
        }
        let since_seconds = int("sinceSeconds")?;
        let since_time = get("sinceTime").filter(|s| !s.is_empty());
        match (since_seconds, since_time) {
            (Some(_), Some(_)) => {
                return Err("at most one of `sinceTime` or `sinceSeconds` may be specified".into())
            }
            (Some(n), None) => {
                if n < 1 {
                    return Err(format!(
                        "sinceSeconds: Invalid value: {n}: must be greater than 0"
                    ));
                }
                o.since = Some(Timestamp::now() - SignedDuration::from_secs(n));
            }
            (None, Some(t)) => {
                o.since = Some(
                    t.parse::<Timestamp>()
                        .map_err(|e| format!("sinceTime: invalid time {t:?}: {e}"))?,
                );
            }
            (None, None) => {}
        }
        Ok(o)
    }
}

/// Turns records into output lines: joins partial records, adds
/// timestamps, skips old records, stops at the byte limit.
struct Formatter<'a> {
    opts: &'a LogOptions,
    at_line_start: bool,
    written: u64,
    buf: Vec<u8>,
}

impl Formatter<'_> {
    /// Formats one record; false once the byte limit is reached.
    fn record(&mut self, r: &Record) -> bool {
        if let Some(since) = self.opts.since {
            if r.time.parse::<Timestamp>().is_ok_and(|t| t < since) {
                return true;
            }
        }
        let start = self.buf.len();
        if self.at_line_start && self.opts.timestamps {
            self.buf
                .extend_from_slice(go_rfc3339_nano(r.time).as_bytes());
            self.buf.push(b' ');
        }
        self.buf.extend_from_slice(r.text);
        if !r.partial {
            self.buf.push(b'\n');
        }
        self.at_line_start = !r.partial;
        let added = (self.buf.len() - start) as u64;
        if let Some(limit) = self.opts.limit_bytes {
            if self.written + added >= limit {
                self.buf.truncate(start + (limit - self.written) as usize);
                self.written = limit;
                return false;
            }
        }
        self.written += added;
        true
    }

    /// Hands the formatted output on; false when the reader went away.
    fn flush(&mut self, out: &mpsc::Sender<Bytes>) -> bool {
        if self.buf.is_empty() {
            return !out.is_closed();
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        out.blocking_send(chunk).is_ok()
    }
}

/// RFC 3339 as Go's `RFC3339Nano` prints it: trailing zeros of the
/// fraction dropped (and the dot, when nothing is left).
fn go_rfc3339_nano(t: &str) -> String {
    let Some((head, frac)) = t.split_once('.') else {
        return t.to_string();
    };
    let digits: String = frac.chars().take_while(char::is_ascii_digit).collect();
    let zone = &frac[digits.len()..];
    let trimmed = digits.trim_end_matches('0');
    if trimmed.is_empty() {
        format!("{head}{zone}")
    } else {
        format!("{head}.{trimmed}{zone}")
    }
}

/// Whether the container writing the log still runs (for `follow`).
pub trait Liveness: Send {
    fn alive(&mut self) -> bool;
}

impl<F: FnMut() -> bool + Send> Liveness for F {
    fn alive(&mut self) -> bool {
        self()
    }
}

/// Writes the log at `path` (with its rotated files) to `out` per `opts`.
pub fn stream(path: &Path, opts: &LogOptions, mut live: impl Liveness, out: mpsc::Sender<Bytes>) {
    let mut f = Formatter {
        opts,
        at_line_start: true,
        written: 0,
        buf: Vec::new(),
    };
    let mut files = crilog::rotated_files(path);
    files.push(path.to_path_buf());
    // The live file stays open for following; its position is where the
    // history ended.
    let mut current: Option<(File, u64)> = None;
    let mut lines = History::new(opts.tail_lines);
    for (i, p) in files.iter().enumerate() {
        let Ok(file) = File::open(p) else { continue };
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        let mut pos = 0u64;
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(n) if line.ends_with(b"\n") => {
                    pos += n as u64;
                    line.pop();
                    if !lines.push(&line, &mut f) {
                        let _ = f.flush(&out);
                        return;
                    }
                    if f.buf.len() >= CHUNK && !f.flush(&out) {
                        return;
                    }
                }
                // A record being written right now: the follower reads it later.
                Ok(_) => break,
            }
        }
        if i + 1 == files.len() {
            current = Some((reader.into_inner(), pos));
        }
    }
    if !lines.finish(&mut f) || !f.flush(&out) || !opts.follow {
        let _ = f.flush(&out);
        return;
    }
    follow(path, current, &mut f, &mut live, &out);
}

/// The last N lines (records of one line together), or every line at once
/// when there is no tail limit.
struct History {
    tail: Option<u64>,
    kept: VecDeque<Vec<Vec<u8>>>,
    open_line: bool,
}

impl History {
    fn new(tail: Option<u64>) -> Self {
        History {
            tail,
            kept: VecDeque::new(),
            open_line: false,
        }
    }

    /// Takes one raw record; without a tail it is formatted at once.
    fn push(&mut self, raw: &[u8], f: &mut Formatter) -> bool {
        let Some(tail) = self.tail else {
            return crilog::parse(raw).is_none_or(|r| f.record(&r));
        };
        let Some(r) = crilog::parse(raw) else {
            return true;
        };
        if !self.open_line {
            self.kept.push_back(Vec::new());
            if self.kept.len() as u64 > tail {
                self.kept.pop_front();
            }
        }
        if let Some(last) = self.kept.back_mut() {
            last.push(raw.to_vec());
        }
        self.open_line = r.partial;
        true
    }

    fn finish(&mut self, f: &mut Formatter) -> bool {
        for line in self.kept.drain(..) {
            for raw in line {
                if let Some(r) = crilog::parse(&raw) {
                    if !f.record(&r) {
                        return false;
                    }
                }
            }
        }
        true
    }
}

fn follow(
    path: &Path,
    mut current: Option<(File, u64)>,
    f: &mut Formatter,
    live: &mut impl Liveness,
    out: &mpsc::Sender<Bytes>,
) {
    let mut pending: Vec<u8> = Vec::new();
    let mut last_round = false;
    loop {
        if current.is_none() {
            current = File::open(path).ok().map(|file| (file, 0));
        }
        let mut progressed = false;
        if let Some((file, pos)) = current.as_mut() {
            match read_new(file, pos, &mut pending) {
                Ok(lines) => {
                    progressed = !lines.is_empty();
                    for l in lines {
                        if crilog::parse(&l).is_some_and(|r| !f.record(&r)) {
                            let _ = f.flush(out);
                            return;
                        }
                    }
                }
                Err(_) => current = None,
            }
        }
        if !f.flush(out) {
            return;
        }
        if progressed {
            continue;
        }
        // Nothing new: the file may have been rotated away under us.
        if let Some((file, _)) = &current {
            if rotated(path, file) {
                current = File::open(path).ok().map(|file| (file, 0));
                pending.clear();
                continue;
            }
        }
        if last_round {
            return;
        }
        if !live.alive() {
            // One more pass for what was written just before it ended.
            last_round = true;
            continue;
        }
        std::thread::sleep(POLL);
    }
}

/// Whole lines appended since `pos`; an unfinished last line stays in `pending`.
fn read_new(file: &mut File, pos: &mut u64, pending: &mut Vec<u8>) -> io::Result<Vec<Vec<u8>>> {
    file.seek(SeekFrom::Start(*pos))?;
    let mut fresh = Vec::new();
    let n = file.take(4 << 20).read_to_end(&mut fresh)?;
    *pos += n as u64;
    pending.extend_from_slice(&fresh);
    let mut lines = Vec::new();
    while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
        let rest = pending.split_off(nl + 1);
        let mut line = std::mem::replace(pending, rest);
        line.pop();
        lines.push(line);
    }
    Ok(lines)
}

/// Whether `path` now names another file than the one we hold.
fn rotated(path: &Path, held: &File) -> bool {
    match (std::fs::metadata(path), held.metadata()) {
        (Ok(a), Ok(b)) => a.ino() != b.ino() || a.dev() != b.dev(),
        (Err(_), _) => true,
        _ => false,
    }
}

/// The attempts (`<n>.log`) in a container's log dir, oldest first.
pub fn attempts(dir: &Path) -> Vec<(u32, PathBuf)> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.strip_suffix(".log")?.parse::<u32>().ok()?;
            Some((n, e.path()))
        })
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::crilog::{LogWriter, Stream};

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn collect(path: &Path, opts: &LogOptions) -> String {
        let (tx, mut rx) = mpsc::channel(1024);
        stream(path, opts, || false, tx);
        let mut out = Vec::new();
        while let Ok(b) = rx.try_recv() {
            out.extend_from_slice(&b);
        }
        String::from_utf8(out).unwrap()
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("skiff-logs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn options_validate_as_upstream() {
        assert!(LogOptions::from_query(&q(&[("tailLines", "-1")])).is_err());
        assert!(LogOptions::from_query(&q(&[("limitBytes", "0")])).is_err());
        assert!(LogOptions::from_query(&q(&[
            ("sinceSeconds", "5"),
            ("sinceTime", "2024-01-01T00:00:00Z")
        ]))
        .is_err());
        let o = LogOptions::from_query(&q(&[("follow", "true"), ("tailLines", "3")])).unwrap();
        assert!(o.follow && o.tail_lines == Some(3));
    }

    #[test]
    fn joins_partials_tails_limits_and_stamps() {
        let d = dir("read");
        let path = d.join("0.log");
        std::fs::write(
            &path,
            "2024-01-01T00:00:01.500000000Z stdout F one\n\
             2024-01-01T00:00:02.000000000Z stdout P tw\n\
             2024-01-01T00:00:02.100000000Z stdout F o\n\
             2024-01-01T00:00:03.000000000Z stderr F three\n",
        )
        .unwrap();
        assert_eq!(collect(&path, &LogOptions::default()), "one\ntwo\nthree\n");
        let tail = LogOptions {
            tail_lines: Some(2),
            ..Default::default()
        };
        assert_eq!(collect(&path, &tail), "two\nthree\n");
        let stamps = LogOptions {
            timestamps: true,
            tail_lines: Some(2),
            ..Default::default()
        };
        assert_eq!(
            collect(&path, &stamps),
            "2024-01-01T00:00:02Z two\n2024-01-01T00:00:03Z three\n"
        );
        let limit = LogOptions {
            limit_bytes: Some(6),
            ..Default::default()
        };
        assert_eq!(collect(&path, &limit), "one\ntw");
        let since = LogOptions {
            since: Some("2024-01-01T00:00:02.050Z".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(collect(&path, &since), "o\nthree\n");
        assert_eq!(
            go_rfc3339_nano("2024-01-01T00:00:01.500000000Z"),
            "2024-01-01T00:00:01.5Z"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn reads_rotated_files_first_and_follows_rotation() {
        let d = dir("rotate");
        let path = d.join("0.log");
        let mut w = LogWriter::open(&path, 1024, 5).unwrap();
        for i in 0..40 {
            w.record(Stream::Stdout, false, format!("line {i}").as_bytes())
                .unwrap();
        }
        assert!(!crilog::rotated_files(&path).is_empty());
        let all = collect(&path, &LogOptions::default());
        let expected: String = (0..40).map(|i| format!("line {i}\n")).collect();
        assert_eq!(all, expected);

        // A follower sees lines written (and rotated) after it started,
        // and ends once the container is gone.
        let (tx, mut rx) = mpsc::channel(1024);
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let d2 = done.clone();
        let p2 = path.clone();
        let follower = std::thread::spawn(move || {
            let opts = LogOptions {
                follow: true,
                tail_lines: Some(1),
                ..Default::default()
            };
            stream(
                &p2,
                &opts,
                move || !d2.load(std::sync::atomic::Ordering::SeqCst),
                tx,
            );
        });
        std::thread::sleep(Duration::from_millis(300));
        for i in 40..80 {
            w.record(Stream::Stdout, false, format!("line {i}").as_bytes())
                .unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        follower.join().unwrap();
        let mut out = Vec::new();
        while let Ok(b) = rx.try_recv() {
            out.extend_from_slice(&b);
        }
        let expected: String = (39..80).map(|i| format!("line {i}\n")).collect();
        assert_eq!(String::from_utf8(out).unwrap(), expected);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn attempts_in_order() {
        let d = dir("attempts");
        for n in ["0.log", "1.log", "10.log", "1.log.20240101-000000", "x.log"] {
            std::fs::write(d.join(n), "").unwrap();
        }
        let found: Vec<u32> = attempts(&d).into_iter().map(|(n, _)| n).collect();
        assert_eq!(found, vec![0, 1, 10]);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
