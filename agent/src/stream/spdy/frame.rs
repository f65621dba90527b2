//! SPDY/3.1 frames: reading them off a byte stream and encoding the few a
//! server sends (SYN_REPLY, DATA, RST_STREAM, PING, GOAWAY). Header blocks
//! are kept compressed here; [`super::zlib`] turns them into name/value
//! pairs.

use std::io;
use tokio::io::{AsyncRead, AsyncReadExt};

pub const VERSION: u16 = 3;

pub const SYN_STREAM: u16 = 1;
pub const SYN_REPLY: u16 = 2;
pub const RST_STREAM: u16 = 3;
pub const SETTINGS: u16 = 4;
pub const PING: u16 = 6;
pub const GOAWAY: u16 = 7;
pub const HEADERS: u16 = 8;
pub const WINDOW_UPDATE: u16 = 9;

pub const FLAG_FIN: u8 = 0x01;

/// RST_STREAM status codes.
pub const PROTOCOL_ERROR: u32 = 1;
pub const REFUSED_STREAM: u32 = 3;
pub const CANCEL: u32 = 5;

/// Largest frame payload accepted (SPDY lengths are 24 bits).
const MAX_FRAME: usize = 1 << 24;

#[derive(Debug, PartialEq)]
pub enum Frame {
    SynStream {
        id: u32,
        fin: bool,
        /// The compressed header block.
        headers: Vec<u8>,
    },
    Data {
        id: u32,
        fin: bool,
        data: Vec<u8>,
    },
    RstStream {
        id: u32,
        status: u32,
    },
    Ping(u32),
    GoAway,
    /// A frame the server has no use for (SETTINGS, WINDOW_UPDATE, HEADERS, …);
    /// the HEADERS frame's block still has to go through the decompressor.
    Other {
        kind: u16,
        headers: Option<Vec<u8>>,
    },
}

/// Reads one frame; `None` at a clean end of the stream.
pub async fn read<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<Frame>> {
    let mut head = [0u8; 8];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let flags = head[4];
    let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    if len > MAX_FRAME {
        return Err(invalid("frame too large"));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    let word = |b: &[u8], at: usize| -> io::Result<u32> {
        b.get(at..at + 4)
            .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
            .ok_or_else(|| invalid("short frame"))
    };
    if head[0] & 0x80 == 0 {
        let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7fff_ffff;
        return Ok(Some(Frame::Data {
            id,
            fin: flags & FLAG_FIN != 0,
            data: body,
        }));
    }
    let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
    if version != VERSION {
        return Err(invalid(&format!("unsupported SPDY version {version}")));
    }
    let kind = u16::from_be_bytes([head[2], head[3]]);
    Ok(Some(match kind {
        SYN_STREAM => {
            if body.len() < 10 {
                return Err(invalid("short SYN_STREAM"));
            }
            Frame::SynStream {
                id: word(&body, 0)? & 0x7fff_ffff,
                fin: flags & FLAG_FIN != 0,
                headers: body[10..].to_vec(),
            }
        }
        RST_STREAM => Frame::RstStream {
            id: word(&body, 0)? & 0x7fff_ffff,
            status: word(&body, 4)?,
        },
        PING => Frame::Ping(word(&body, 0)?),
        GOAWAY => Frame::GoAway,
        SYN_REPLY | HEADERS => Frame::Other {
            kind,
            headers: Some(body.get(4..).unwrap_or_default().to_vec()),
        },
        other => Frame::Other {
            kind: other,
            headers: None,
        },
    }))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("spdy: {what}"))
}

fn control(kind: u16, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(body);
    out
}

/// SYN_REPLY with an already compressed header block.
pub fn syn_reply(id: u32, fin: bool, compressed_headers: &[u8]) -> Vec<u8> {
    let mut body = (id & 0x7fff_ffff).to_be_bytes().to_vec();
    body.extend_from_slice(compressed_headers);
    control(SYN_REPLY, if fin { FLAG_FIN } else { 0 }, &body)
}

pub fn data(id: u32, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
    out.push(if fin { FLAG_FIN } else { 0 });
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(payload);
    out
}

pub fn rst_stream(id: u32, status: u32) -> Vec<u8> {
    let mut body = (id & 0x7fff_ffff).to_be_bytes().to_vec();
    body.extend_from_slice(&status.to_be_bytes());
    control(RST_STREAM, 0, &body)
}

pub fn ping(id: u32) -> Vec<u8> {
    control(PING, 0, &id.to_be_bytes())
}

pub fn goaway(last_good: u32) -> Vec<u8> {
    let mut body = (last_good & 0x7fff_ffff).to_be_bytes().to_vec();
    body.extend_from_slice(&0u32.to_be_bytes());
    control(GOAWAY, 0, &body)
}

/// Name/value pairs as a (not yet compressed) SPDY/3 header block.
pub fn header_block(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_be_bytes().to_vec();
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// Parses a decompressed header block; names are lowercased, several
/// values (NUL-separated) become several pairs.
pub fn parse_header_block(block: &[u8]) -> io::Result<Vec<(String, String)>> {
    fn take<'a>(block: &'a [u8], at: &mut usize, n: usize) -> io::Result<&'a [u8]> {
        let s = block
            .get(*at..*at + n)
            .ok_or_else(|| invalid("short header block"))?;
        *at += n;
        Ok(s)
    }
    fn length(block: &[u8], at: &mut usize) -> io::Result<usize> {
        let l = take(block, at, 4)?;
        Ok(u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
    }
    let mut at = 0usize;
    let count = length(block, &mut at)?;
    let mut out = Vec::new();
    for _ in 0..count {
        let n = length(block, &mut at)?;
        let name = String::from_utf8_lossy(take(block, &mut at, n)?).to_ascii_lowercase();
        let n = length(block, &mut at)?;
        let value = take(block, &mut at, n)?;
        for v in value.split(|&b| b == 0) {
            out.push((name.clone(), String::from_utf8_lossy(v).into_owned()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_what_it_writes() {
        let mut wire = data(3, true, b"hi");
        wire.extend(rst_stream(5, CANCEL));
        wire.extend(ping(7));
        let mut r = &wire[..];
        assert_eq!(
            read(&mut r).await.unwrap(),
            Some(Frame::Data {
                id: 3,
                fin: true,
                data: b"hi".to_vec()
            })
        );
        assert_eq!(
            read(&mut r).await.unwrap(),
            Some(Frame::RstStream {
                id: 5,
                status: CANCEL
            })
        );
        assert_eq!(read(&mut r).await.unwrap(), Some(Frame::Ping(7)));
        assert_eq!(read(&mut r).await.unwrap(), None);
    }

    #[test]
    fn header_blocks_round_trip() {
        let block = header_block(&[("StreamType", "data"), ("port", "80")]);
        assert_eq!(
            parse_header_block(&block).unwrap(),
            vec![
                ("streamtype".to_string(), "data".to_string()),
                ("port".to_string(), "80".to_string())
            ]
        );
        assert!(parse_header_block(&block[..6]).is_err());
    }
}
