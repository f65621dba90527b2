//! The protobuf wire format: keys, varints, fixed-width and length-delimited
//! values. Only what decoding needs: no Kubernetes field is a 32-bit scalar,
//! so those are only skipped; groups (deprecated, never emitted by
//! Kubernetes) are rejected.

use super::DecodeError;

/// How a field's value is laid out on the wire (the low 3 bits of its key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WireType {
    Varint,
    Fixed64,
    Len,
    Fixed32,
}

/// A cursor over one message's bytes.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The next field's number and wire type, or `None` at the end.
    pub(super) fn key(&mut self) -> Result<Option<(u32, WireType)>, DecodeError> {
        if self.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let wire_type = match key & 7 {
            0 => WireType::Varint,
            1 => WireType::Fixed64,
            2 => WireType::Len,
            5 => WireType::Fixed32,
            other => {
                return Err(DecodeError::malformed(format!(
                    "unsupported wire type {other}"
                )))
            }
        };
        let number = key >> 3;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return Err(DecodeError::malformed(format!(
                "invalid field number {number}"
            )));
        }
        Ok(Some((number as u32, wire_type)))
    }

    pub(super) fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.buf.get(self.pos).ok_or_else(DecodeError::truncated)?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::malformed("varint longer than 10 bytes"))
    }

    pub(super) fn fixed64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    /// A length-delimited value: a string, bytes, an embedded message or a
    /// packed run of scalars.
    pub(super) fn len_delimited(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| DecodeError::truncated())?;
        self.take(len)
    }

    /// Passes over a value of a field the schema does not know, as protobuf
    /// requires of readers of newer senders.
    pub(super) fn skip(&mut self, wire_type: WireType) -> Result<(), DecodeError> {
        match wire_type {
            WireType::Varint => self.varint().map(drop),
            WireType::Fixed64 => self.take(8).map(drop),
            WireType::Len => self.len_delimited().map(drop),
            WireType::Fixed32 => self.take(4).map(drop),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.buf.len());
        let end = end.ok_or_else(DecodeError::truncated)?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_varints_keys_and_fixed_values() {
        // field 1 varint 300, field 2 len "hi", field 3 fixed64 1, field 4 fixed32 2
        let buf = [
            0x08, 0xac, 0x02, 0x12, 0x02, b'h', b'i', 0x19, 1, 0, 0, 0, 0, 0, 0, 0, 0x25, 2, 0, 0,
            0,
        ];
        let mut r = Reader::new(&buf);
        assert_eq!(r.key().unwrap(), Some((1, WireType::Varint)));
        assert_eq!(r.varint().unwrap(), 300);
        assert_eq!(r.key().unwrap(), Some((2, WireType::Len)));
        assert_eq!(r.len_delimited().unwrap(), b"hi");
        assert_eq!(r.key().unwrap(), Some((3, WireType::Fixed64)));
        assert_eq!(r.fixed64().unwrap(), 1);
        assert_eq!(r.key().unwrap(), Some((4, WireType::Fixed32)));
        r.skip(WireType::Fixed32).unwrap();
        assert_eq!(r.key().unwrap(), None);
    }

    #[test]
    fn negative_int32_is_a_ten_byte_varint() {
        let buf = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(Reader::new(&buf).varint().unwrap() as i64, -1);
    }

    #[test]
    fn skips_every_wire_type() {
        let buf = [
            0x08, 0x01, 0x12, 0x01, 0x00, 0x19, 0, 0, 0, 0, 0, 0, 0, 0, 0x25, 0, 0, 0, 0,
        ];
        let mut r = Reader::new(&buf);
        while let Some((_, wt)) = r.key().unwrap() {
            r.skip(wt).unwrap();
        }
        assert!(r.is_empty());
    }

    #[test]
    fn rejects_truncated_and_malformed_input() {
        assert!(matches!(
            Reader::new(&[0x80]).varint(),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            Reader::new(&[0x12, 0x05, b'a']).skip_field(),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            Reader::new(&[0x0b]).key(),
            Err(DecodeError::Malformed { .. })
        ));
        assert!(matches!(
            Reader::new(&[0xff; 11]).varint(),
            Err(DecodeError::Malformed { .. })
        ));
        assert!(matches!(
            Reader::new(&[0x00]).key(),
            Err(DecodeError::Malformed { .. })
        ));
    }

    impl Reader<'_> {
        fn skip_field(&mut self) -> Result<(), DecodeError> {
            let (_, wt) = self.key()?.expect("a key");
            self.skip(wt)
        }
    }
}
