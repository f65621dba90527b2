//! Layer and archive compression, told by the stream's magic bytes rather
//! than by media type: registries and `docker save` label layers loosely
//! (a "tar" that is gzip, a "+gzip" that is plain), the bytes do not lie.

use std::io::{self, BufRead, BufReader, Read};

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// What the first bytes of a stream say. Formats nobody uses for images
    /// (bzip2, xz) are an error, since reading them as tar would only fail
    /// later with a confusing message.
    pub fn detect(head: &[u8]) -> io::Result<Compression> {
        Ok(match head {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            [b'B', b'Z', b'h', ..] => return Err(unsupported("bzip2")),
            [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => return Err(unsupported("xz")),
            _ => Compression::None,
        })
    }

    /// The OCI layer media type for a layer compressed this way.
    pub fn layer_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

fn unsupported(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{what}-compressed content is not supported (gzip, zstd or plain tar)"),
    )
}

/// A reader of the decompressed stream.
pub fn decompress<'a, R: Read + 'a>(reader: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let kind = Compression::detect(reader.fill_buf()?)?;
    Ok(match kind {
        Compression::None => Box::new(reader),
        // Multi-member: pigz and some registries write several gzip members.
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(ZstdReader::new(reader)),
    })
}

/// Decodes every zstd frame in a stream, skipping skippable frames (ruzstd's
/// own streaming decoder stops after the first frame).
struct ZstdReader<R> {
    source: R,
    decoder: FrameDecoder,
    in_frame: bool,
}

impl<R: BufRead> ZstdReader<R> {
    fn new(source: R) -> Self {
        ZstdReader {
            source,
            decoder: FrameDecoder::new(),
            in_frame: false,
        }
    }
}

impl<R: BufRead> Read for ZstdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.in_frame {
                let d = &mut self.decoder;
                while d.can_collect() < buf.len() && !d.is_finished() {
                    let want = buf.len() - d.can_collect();
                    d.decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBytes(want))
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                }
                let n = d.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                self.in_frame = false;
            }
            if self.source.fill_buf()?.is_empty() {
                return Ok(0);
            }
            match self.decoder.reset(&mut self.source) {
                Ok(()) => self.in_frame = true,
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let skipped =
                        io::copy(&mut (&mut self.source).take(length.into()), &mut io::sink())?;
                    if skipped != u64::from(length) {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        decompress(bytes).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn plain_and_gzip_by_magic() {
        assert_eq!(read_all(b"plain text"), b"plain text");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, b"hello ").unwrap();
        let mut two = gz.finish().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, b"world").unwrap();
        two.extend(gz.finish().unwrap());
        assert_eq!(read_all(&two), b"hello world");
        assert!(decompress(&b"BZh91AY"[..]).is_err());
    }

    #[test]
    fn zstd_frames_and_skippable_frames() {
        // Two raw-block frames written by hand: magic, header (single
        // segment, 1-byte content size), one last raw block of 3 bytes.
        let frame = |data: &[u8; 3]| {
            let mut f = vec![0x28, 0xb5, 0x2f, 0xfd, 0x20, 3];
            f.extend([0x19, 0x00, 0x00]); // last block, raw, size 3
            f.extend(data);
            f
        };
        let mut stream = frame(b"abc");
        stream.extend([0x50, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, 9, 9]); // skippable, 2 bytes
        stream.extend(frame(b"def"));
        assert_eq!(read_all(&stream), b"abcdef");
    }
}
