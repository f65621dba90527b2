//! SPDY/3 header-block compression: one zlib stream per direction for the
//! connection's life, each block ended with a sync flush. Clients compress
//! with SPDY's preset dictionary, which the pure-Rust inflater cannot be
//! given directly; deflate's only notion of a dictionary is history, so the
//! inflater is primed by feeding it the dictionary as one stored block of a
//! raw deflate stream and discarding that output. Our own blocks need no
//! dictionary: a zlib header without FDICT tells the peer none was used.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::io;

/// Inflates the peer's header blocks.
pub struct Inflater {
    z: Decompress,
    /// Whether the zlib header (with its dictionary id) was read.
    started: bool,
}

impl Default for Inflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Inflater {
    pub fn new() -> Self {
        let mut z = Decompress::new(false);
        let dict = super::dictionary::DICTIONARY;
        let len = dict.len() as u16;
        let mut primer = vec![0u8];
        primer.extend_from_slice(&len.to_le_bytes());
        primer.extend_from_slice(&(!len).to_le_bytes());
        primer.extend_from_slice(dict);
        let mut sink = vec![0u8; dict.len() + 64];
        // A stored block of ~1.4 KiB inflates in one call into a buffer that fits it.
        let _ = z.decompress(&primer, &mut sink, FlushDecompress::Sync);
        Inflater { z, started: false }
    }

    /// Decompresses one header block.
    pub fn inflate(&mut self, block: &[u8]) -> io::Result<Vec<u8>> {
        let mut input = block;
        if !self.started {
            let (cmf, flg) = match input {
                [a, b, ..] => (*a, *b),
                _ => return Err(invalid("short zlib header")),
            };
            if cmf & 0x0f != 8 || (u16::from(cmf) * 256 + u16::from(flg)) % 31 != 0 {
                return Err(invalid("not a zlib stream"));
            }
            input = &input[2..];
            if flg & 0x20 != 0 {
                let id = input.get(..4).ok_or_else(|| invalid("short zlib header"))?;
                let id = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
                if id != adler32(super::dictionary::DICTIONARY) {
                    return Err(invalid(&format!("unknown zlib dictionary {id:#010x}")));
                }
                input = &input[4..];
            }
            self.started = true;
        }
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        let mut buf = [0u8; 4096];
        loop {
            let (before_in, before_out) = (self.z.total_in(), self.z.total_out());
            let status = self
                .z
                .decompress(input, &mut buf, FlushDecompress::Sync)
                .map_err(|e| invalid(&e.to_string()))?;
            let read = (self.z.total_in() - before_in) as usize;
            let wrote = (self.z.total_out() - before_out) as usize;
            out.extend_from_slice(&buf[..wrote]);
            input = &input[read..];
            if out.len() > 1 << 20 {
                return Err(invalid("header block too large"));
            }
            if matches!(status, Status::StreamEnd) || (input.is_empty() && wrote < buf.len()) {
                return Ok(out);
            }
            if read == 0 && wrote == 0 {
                return Err(invalid("truncated header block"));
            }
        }
    }
}

/// Compresses our header blocks.
pub struct Deflater {
    z: Compress,
}

impl Default for Deflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Deflater {
    pub fn new() -> Self {
        Deflater {
            z: Compress::new(Compression::default(), true),
        }
    }

    pub fn deflate(&mut self, block: &[u8]) -> io::Result<Vec<u8>> {
        let mut input = block;
        let mut out = Vec::with_capacity(block.len() + 64);
        let mut buf = [0u8; 4096];
        loop {
            let (before_in, before_out) = (self.z.total_in(), self.z.total_out());
            self.z
                .compress(input, &mut buf, FlushCompress::Sync)
                .map_err(|e| invalid(&e.to_string()))?;
            let read = (self.z.total_in() - before_in) as usize;
            let wrote = (self.z.total_out() - before_out) as usize;
            out.extend_from_slice(&buf[..wrote]);
            input = &input[read..];
            if input.is_empty() && wrote < buf.len() {
                return Ok(out);
            }
        }
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("spdy headers: {what}"))
}

pub fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::spdy::dictionary::DICTIONARY;
    use crate::stream::spdy::frame::{header_block, parse_header_block};

    /// A header block compressed with the preset dictionary, as Go's
    /// `zlib.NewWriterLevelDict` writes it: the dictionary is deflate history.
    fn with_dictionary(blocks: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut z = Compress::new(Compression::best(), false);
        let mut sink = vec![0u8; 8192];
        z.compress(DICTIONARY, &mut sink, FlushCompress::Sync)
            .unwrap();
        let mut out = Vec::new();
        for (i, b) in blocks.iter().enumerate() {
            let mut buf = vec![0u8; 8192];
            let before = z.total_out();
            z.compress(b, &mut buf, FlushCompress::Sync).unwrap();
            let mut piece = Vec::new();
            if i == 0 {
                piece.extend_from_slice(&[0x78, 0xbb]);
                piece.extend_from_slice(&adler32(DICTIONARY).to_be_bytes());
            }
            piece.extend_from_slice(&buf[..(z.total_out() - before) as usize]);
            out.push(piece);
        }
        out
    }

    #[test]
    fn inflates_blocks_made_with_the_dictionary() {
        let a = header_block(&[("streamtype", "error"), ("port", "80"), ("requestid", "0")]);
        let b = header_block(&[("streamtype", "data"), ("port", "80"), ("requestid", "0")]);
        let wire = with_dictionary(&[a.clone(), b.clone()]);
        assert_eq!((0x78u16 * 256 + 0xbb) % 31, 0);
        let mut inf = Inflater::new();
        assert_eq!(inf.inflate(&wire[0]).unwrap(), a);
        assert_eq!(inf.inflate(&wire[1]).unwrap(), b);
    }

    #[test]
    fn deflated_blocks_read_back_in_one_stream() {
        let mut def = Deflater::new();
        let one = def.deflate(&header_block(&[])).unwrap();
        let two = def.deflate(&header_block(&[("a", "b")])).unwrap();
        let mut z = Decompress::new(true);
        let mut buf = vec![0u8; 256];
        z.decompress(&one, &mut buf, FlushDecompress::Sync).unwrap();
        assert_eq!(
            parse_header_block(&buf[..z.total_out() as usize]).unwrap(),
            vec![]
        );
        let start = z.total_out() as usize;
        let mut buf2 = vec![0u8; 256];
        z.decompress(&two, &mut buf2, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(
            parse_header_block(&buf2[..z.total_out() as usize - start]).unwrap(),
            vec![("a".to_string(), "b".to_string())]
        );
    }
}
