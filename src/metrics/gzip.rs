//! gzip for `/metrics`, assembled from independently compressed parts, so that the part of a
//! scrape that only changes when the store is re-read (see [`super::IntegrationGauges`]) is
//! compressed once per change instead of once per scrape.
//!
//! Each [`Part`] is a raw DEFLATE stream ended with a sync flush (byte-aligned, no final
//! block) plus the CRC-32 and length of its input. Such streams concatenate into one valid
//! DEFLATE stream (each part's back-references stay inside its own data), which an empty final
//! block ends; the gzip trailer's CRC is the parts' CRCs combined. The result is one ordinary
//! gzip member, which every client decodes (no multi-member support needed).

use std::io::Write as _;

use flate2::write::DeflateEncoder;
use flate2::Compression;

/// One compressed piece of a response.
#[derive(Debug, Clone)]
pub struct Part {
    deflate: Vec<u8>,
    crc: crc32fast::Hasher,
    len: u64,
}

impl Part {
    /// Compresses `data` at the fastest level: a scrape is latency-bound, and on the
    /// exposition text level 1 already shrinks it about tenfold.
    pub fn compress(data: &[u8]) -> Part {
        let mut encoder =
            DeflateEncoder::new(Vec::with_capacity(data.len() / 8 + 64), Compression::fast());
        // Writing to a Vec cannot fail.
        let _ = encoder.write_all(data);
        // `flush` is a sync flush: all input out, byte-aligned, no final block.
        let _ = encoder.flush();
        let deflate = std::mem::take(encoder.get_mut());
        let mut crc = crc32fast::Hasher::new();
        crc.update(data);
        Part {
            deflate,
            crc,
            len: data.len() as u64,
        }
    }

    /// Compressed bytes.
    pub fn compressed_len(&self) -> usize {
        self.deflate.len()
    }
}

/// One gzip member holding the parts' data, in order.
pub fn member(parts: &[&Part]) -> Vec<u8> {
    let size: usize = parts.iter().map(|p| p.deflate.len()).sum();
    let mut out = Vec::with_capacity(size + 20);
    // Magic, DEFLATE, no flags, no mtime, no extra flags, OS unknown.
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    let mut crc = crc32fast::Hasher::new();
    let mut len = 0u64;
    for part in parts {
        out.extend_from_slice(&part.deflate);
        crc.combine(&part.crc);
        len += part.len;
    }
    // An empty final block (fixed Huffman, end-of-block only).
    out.extend_from_slice(&[0x03, 0x00]);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn parts_make_one_member_every_decoder_reads() {
        let a = "catalogd_integration_up{tenant=\"a\"} 1\n".repeat(1000);
        let b = "catalogd_integration_status{tenant=\"b\"} 2\n".repeat(777);
        let parts = [
            Part::compress(a.as_bytes()),
            Part::compress(b.as_bytes()),
            Part::compress(b""),
        ];
        let gz = member(&parts.iter().collect::<Vec<_>>());
        let mut text = String::new();
        // A single-member decoder: the parts must form one member.
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, format!("{a}{b}"));
        assert!(gz.len() < (a.len() + b.len()) / 10);
        let empty = member(&[]);
        let mut text = String::new();
        flate2::read::GzDecoder::new(&empty[..])
            .read_to_string(&mut text)
            .unwrap();
        assert!(text.is_empty());
    }
}
