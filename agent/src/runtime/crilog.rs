//! Container log files in the CRI format, the one kubelet, containerd and
//! every log shipper read: one line per record,
//! `<RFC 3339 time> <stdout|stderr> <F|P> <text>`, where `P` marks a partial
//! line (split because it was too long) and `F` the line's last piece.
//! Files rotate by size as kubelet's do: `0.log` is renamed to
//! `0.log.<YYYYmmdd-HHMMSS>` and the oldest rotated files are removed.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Longest piece of a line written as one record (containerd's default).
pub const MAX_RECORD: usize = 16 * 1024;

/// Kubelet's defaults: containerLogMaxSize 10Mi, containerLogMaxFiles 5.
pub const DEFAULT_MAX_SIZE: u64 = 10 * 1024 * 1024;
pub const DEFAULT_MAX_FILES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_files: usize,
}

impl LogWriter {
    pub fn open(path: &Path, max_size: u64, max_files: usize) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            size,
            max_size: max_size.max(1024),
            max_files: max_files.max(1),
        })
    }

    /// Writes one record; `partial` when the line goes on in the next one.
    pub fn record(&mut self, stream: Stream, partial: bool, text: &[u8]) -> io::Result<()> {
        let time = k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.%9fZ");
        let head = format!(
            "{time} {} {} ",
            stream.as_str(),
            if partial { 'P' } else { 'F' }
        );
        let mut line = Vec::with_capacity(head.len() + text.len() + 1);
        line.extend_from_slice(head.as_bytes());
        line.extend_from_slice(text);
        line.push(b'\n');
        if self.size > 0 && self.size + line.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let stamp = k8s_openapi::jiff::Timestamp::now().strftime("%Y%m%d-%H%M%S%.f");
        let mut rotated = self.path.as_os_str().to_owned();
        rotated.push(format!(".{stamp}"));
        std::fs::rename(&self.path, &rotated)?;
        let mut old = rotated_files(&self.path);
        while old.len() + 1 > self.max_files {
            let _ = std::fs::remove_file(old.remove(0));
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// The rotated files of `path`, oldest first.
pub fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    // The timestamp suffix sorts in time order.
    files.sort();
    files
}

/// Splits a stream into records: whole lines as `F`, pieces of lines longer
/// than [`MAX_RECORD`] as `P`. Keeps the unfinished tail between reads.
#[derive(Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes read from the stream; calls `emit(partial, text)` per record.
    pub fn feed(
        &mut self,
        mut data: &[u8],
        mut emit: impl FnMut(bool, &[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            self.pending.extend_from_slice(&data[..nl]);
            self.flush_long(&mut emit)?;
            emit(false, &self.pending)?;
            self.pending.clear();
            data = &data[nl + 1..];
        }
        self.pending.extend_from_slice(data);
        self.flush_long(&mut emit)
    }

    /// At end of stream: what is left is a last line without its newline.
    pub fn finish(
        &mut self,
        mut emit: impl FnMut(bool, &[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        if !self.pending.is_empty() {
            emit(false, &self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }

    fn flush_long(
        &mut self,
        emit: &mut impl FnMut(bool, &[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        while self.pending.len() > MAX_RECORD {
            let rest = self.pending.split_off(MAX_RECORD);
            emit(true, &self.pending)?;
            self.pending = rest;
        }
        Ok(())
    }
}

/// One parsed record of a CRI log file.
#[derive(Debug, PartialEq)]
pub struct Record<'a> {
    pub time: &'a str,
    pub stream: &'a str,
    pub partial: bool,
    pub text: &'a [u8],
}

/// Parses one line of a CRI log file (without its newline).
pub fn parse(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let stream = std::str::from_utf8(parts.next()?).ok()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or(b"");
    Some(Record {
        time,
        stream,
        partial: tag.first() == Some(&b'P'),
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_long_pieces() {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        s.feed(b"one\ntw", |p, t| {
            out.push((p, t.to_vec()));
            Ok(())
        })
        .unwrap();
        s.feed(b"o\nthree", |p, t| {
            out.push((p, t.to_vec()));
            Ok(())
        })
        .unwrap();
        s.finish(|p, t| {
            out.push((p, t.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            out,
            vec![
                (false, b"one".to_vec()),
                (false, b"two".to_vec()),
                (false, b"three".to_vec())
            ]
        );
        let long = vec![b'x'; MAX_RECORD * 2 + 5];
        let mut out = Vec::new();
        let mut s = LineSplitter::default();
        s.feed(&long, |p, t| {
            out.push((p, t.len()));
            Ok(())
        })
        .unwrap();
        s.feed(b"\n", |p, t| {
            out.push((p, t.len()));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            out,
            vec![(true, MAX_RECORD), (true, MAX_RECORD), (false, 5)]
        );
    }

    #[test]
    fn writes_parses_and_rotates() {
        let dir = std::env::temp_dir().join(format!("skiff-crilog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("0.log");
        let mut w = LogWriter::open(&path, 1024, 2).unwrap();
        for i in 0..100 {
            w.record(Stream::Stdout, false, format!("line {i}").as_bytes())
                .unwrap();
        }
        let text = std::fs::read(&path).unwrap();
        let last = text
            .split(|&b| b == b'\n')
            .rfind(|l| !l.is_empty())
            .unwrap();
        let r = parse(last).unwrap();
        assert_eq!(
            (r.stream, r.partial, r.text),
            ("stdout", false, &b"line 99"[..])
        );
        assert!(r.time.ends_with('Z'));
        assert!(std::fs::metadata(&path).unwrap().len() <= 1024);
        assert_eq!(
            rotated_files(&path).len(),
            1,
            "max 2 files: the live one and one rotated"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
