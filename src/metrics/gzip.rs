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

/// The DEFLATE level of every part. zlib-rs's level 1 codes with fixed Huffman tables, about
/// 8 bits for each of a UUID's random hex digits; level 2 builds the tables per block, about 4,
/// for the same CPU. Measured on 100k integrations' per-integration families: level 1
/// 8.5 MB, 2 5.6 MB, 4 5.5 MB in twice the time, 6 5.4 MB in three times, 9 5.7 MB.
pub const LEVEL: u32 = 2;

/// Pieces larger than this are split (at a line) to be compressed on several threads. Each
/// piece loses at most DEFLATE's 32 KiB window of context: nothing at this size.
const PIECE: usize = 4 << 20;

impl Part {
    /// Compresses `data` at [`LEVEL`].
    pub fn compress(data: &[u8]) -> Part {
        let mut encoder = DeflateEncoder::new(
            Vec::with_capacity(data.len() / 8 + 64),
            Compression::new(LEVEL),
        );
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

/// Each text compressed as one or more parts (in order), the pieces spread over the
/// machine's cores: a scrape after a change waits for the largest piece, not for the sum.
pub fn compress_all(texts: &[&[u8]]) -> Vec<Vec<Part>> {
    let pieces: Vec<(usize, &[u8])> = texts
        .iter()
        .enumerate()
        .flat_map(|(text, data)| split(data).into_iter().map(move |piece| (text, piece)))
        .collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(pieces.len())
        .max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, Part)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((_, piece)) = pieces.get(i) else {
                            return done;
                        };
                        done.push((i, Part::compress(piece)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap_or_default())
            .collect()
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    let mut out: Vec<Vec<Part>> = texts.iter().map(|_| Vec::new()).collect();
    for (i, part) in done {
        out[pieces[i].0].push(part);
    }
    out
}

/// `data` cut into pieces of about [`PIECE`] bytes, each ending at a line's end.
fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    let mut rest = data;
    while rest.len() > PIECE {
        let cut = rest[PIECE..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(rest.len(), |at| PIECE + at + 1);
        let (piece, after) = rest.split_at(cut);
        pieces.push(piece);
        rest = after;
    }
    pieces.push(rest);
    pieces
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

    #[test]
    fn texts_split_into_pieces_still_make_the_same_text() {
        let line = "catalogd_integration_status{tenant=\"a\",integration=\"x\"} 2\n";
        let big = line.repeat(3 * PIECE / line.len());
        let small = "x 1\n";
        let parts = compress_all(&[big.as_bytes(), b"", small.as_bytes()]);
        assert!(parts[0].len() >= 3, "{}", parts[0].len());
        let all: Vec<&Part> = parts.iter().flatten().collect();
        let gz = member(&all);
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .unwrap();
        assert!(text == format!("{big}{small}"));
    }
}
