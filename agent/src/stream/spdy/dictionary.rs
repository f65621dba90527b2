//! The SPDY/3 header compression dictionary (from the SPDY/3 draft, section
//! 2.6.10.1): length-prefixed common header names and values, then common
//! value fragments. Both ends must prime zlib with exactly these bytes.

/// The dictionary's pieces, in order.
const PIECES: [&[u8]; 73] = [
    b"\x00\x00\x00\x07options",
    b"\x00\x00\x00\x04head",
    b"\x00\x00\x00\x04post",
    b"\x00\x00\x00\x03put",
    b"\x00\x00\x00\x06delete",
    b"\x00\x00\x00\x05trace",
    b"\x00\x00\x00\x06accept",
    b"\x00\x00\x00\x0eaccept-charset",
    b"\x00\x00\x00\x0faccept-encoding",
    b"\x00\x00\x00\x0faccept-language",
    b"\x00\x00\x00\x0daccept-ranges",
    b"\x00\x00\x00\x03age",
    b"\x00\x00\x00\x05allow",
    b"\x00\x00\x00\x0dauthorization",
    b"\x00\x00\x00\x0dcache-control",
    b"\x00\x00\x00\x0aconnection",
    b"\x00\x00\x00\x0ccontent-base",
    b"\x00\x00\x00\x10content-encoding",
    b"\x00\x00\x00\x10content-language",
    b"\x00\x00\x00\x0econtent-length",
    b"\x00\x00\x00\x10content-location",
    b"\x00\x00\x00\x0bcontent-md5",
    b"\x00\x00\x00\x0dcontent-range",
    b"\x00\x00\x00\x0ccontent-type",
    b"\x00\x00\x00\x04date",
    b"\x00\x00\x00\x04etag",
    b"\x00\x00\x00\x06expect",
    b"\x00\x00\x00\x07expires",
    b"\x00\x00\x00\x04from",
    b"\x00\x00\x00\x04host",
    b"\x00\x00\x00\x08if-match",
    b"\x00\x00\x00\x11if-modified-since",
    b"\x00\x00\x00\x0dif-none-match",
    b"\x00\x00\x00\x08if-range",
    b"\x00\x00\x00\x13if-unmodified-since",
    b"\x00\x00\x00\x0dlast-modified",
    b"\x00\x00\x00\x08location",
    b"\x00\x00\x00\x0cmax-forwards",
    b"\x00\x00\x00\x06pragma",
    b"\x00\x00\x00\x12proxy-authenticate",
    b"\x00\x00\x00\x13proxy-authorization",
    b"\x00\x00\x00\x05range",
    b"\x00\x00\x00\x07referer",
    b"\x00\x00\x00\x0bretry-after",
    b"\x00\x00\x00\x06server",
    b"\x00\x00\x00\x02te",
    b"\x00\x00\x00\x07trailer",
    b"\x00\x00\x00\x11transfer-encoding",
    b"\x00\x00\x00\x07upgrade",
    b"\x00\x00\x00\x0auser-agent",
    b"\x00\x00\x00\x04vary",
    b"\x00\x00\x00\x03via",
    b"\x00\x00\x00\x07warning",
    b"\x00\x00\x00\x10www-authenticate",
    b"\x00\x00\x00\x06method",
    b"\x00\x00\x00\x03get",
    b"\x00\x00\x00\x06status",
    b"\x00\x00\x00\x06200 OK",
    b"\x00\x00\x00\x07version",
    b"\x00\x00\x00\x08HTTP/1.1",
    b"\x00\x00\x00\x03url",
    b"\x00\x00\x00\x06public",
    b"\x00\x00\x00\x0aset-cookie",
    b"\x00\x00\x00\x0akeep-alive",
    b"\x00\x00\x00\x06origin",
    b"100101201202205206300302303304305306307402405406407408409410411412413414",
    b"415416417502504505203 Non-Authoritative Information204 No Content301 Mov",
    b"ed Permanently400 Bad Request401 Unauthorized403 Forbidden404 Not Found5",
    b"00 Internal Server Error501 Not Implemented503 Service UnavailableJan Fe",
    b"b Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, ",
    b"Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,applic",
    b"ation/xml,application/xhtml+xml,text/plain,text/javascript,publicprivate",
    b"max-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
];

/// 1423 bytes; zlib identifies it by its Adler-32, 0xe3c6a7c2.
pub static DICTIONARY: &[u8] = &concat_pieces();

const fn total() -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < PIECES.len() {
        n += PIECES[i].len();
        i += 1;
    }
    n
}

const fn concat_pieces() -> [u8; total()] {
    let mut out = [0u8; total()];
    let (mut at, mut i) = (0, 0);
    while i < PIECES.len() {
        let mut j = 0;
        while j < PIECES[i].len() {
            out[at] = PIECES[i][j];
            at += 1;
            j += 1;
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn size_and_checksum() {
        assert_eq!(super::DICTIONARY.len(), 1423);
        assert_eq!(super::super::zlib::adler32(super::DICTIONARY), 0xe3c6a7c2);
    }
}
