//! Byte-level plumbing under the parsers: gzip, byte-order marks and text encodings.
//!
//! Everything above this module sees UTF-8. For UTF-8 input the bytes pass through untouched (so an invalid
//! sequence can be reported on the row it belongs to); any other encoding is decoded on the fly with
//! `encoding_rs`, and the chosen [`TextEncoding`] is kept so the failures file can be written back in it.

use std::io::{self, BufReader, Read};

use encoding_rs::{Decoder, Encoding, UTF_8, UTF_16BE, UTF_16LE};

/// The text encoding of an input (and of the failures file written for it).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TextEncoding {
    encoding: &'static Encoding,
    /// Whether the input started with a byte-order mark (written back on the failures file).
    pub bom: bool,
}

impl std::fmt::Debug for TextEncoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.name(), if self.bom { " (BOM)" } else { "" })
    }
}

impl TextEncoding {
    pub const UTF8: TextEncoding = TextEncoding { encoding: UTF_8, bom: false };

    /// Resolves a user-supplied label (`windows-1252`, `latin1`, `utf-16`, `shift_jis`, ...).
    ///
    /// Labels follow the WHATWG Encoding Standard, so `latin1` and `iso-8859-1` mean windows-1252 as in every
    /// browser; `utf-16` means little-endian unless a byte-order mark says otherwise.
    pub fn from_label(label: &str) -> Option<TextEncoding> {
        let encoding = Encoding::for_label_no_replacement(label.trim().as_bytes())?;
        Some(TextEncoding { encoding, bom: false })
    }

    pub fn name(&self) -> &'static str {
        self.encoding.name()
    }

    pub fn is_utf8(&self) -> bool {
        self.encoding == UTF_8
    }

    /// When this is a legacy encoding (neither UTF-8 nor UTF-16) and `decoded`, text read with it, was UTF-8
    /// all along: the first character that shows it, as UTF-8 means it and as this encoding turned it
    /// (`('é', "Ã©")`). A UTF-8 export read with `--encoding windows-1252` would otherwise be sent garbled
    /// without a word.
    pub fn misread_utf8(&self, decoded: &str) -> Option<(char, String)> {
        if self.is_utf8() || self.encoding == UTF_16LE || self.encoding == UTF_16BE {
            return None;
        }
        let bytes = self.encode(decoded);
        // The sample may end inside a character: what comes before it is what counts.
        let text = match std::str::from_utf8(&bytes) {
            Ok(t) => t,
            Err(e) if e.error_len().is_none() => std::str::from_utf8(&bytes[..e.valid_up_to()]).ok()?,
            Err(_) => return None,
        };
        let c = text.chars().find(|c| !c.is_ascii())?;
        let mut buf = [0; 4];
        let (garbled, _, _) = self.encoding.decode(c.encode_utf8(&mut buf).as_bytes());
        Some((c, garbled.into_owned()))
    }

    /// Encodes UTF-8 text back into this encoding (for the failures file). Characters the encoding cannot
    /// represent become numeric character references, as encoding_rs does; they cannot occur for text that
    /// was decoded from this encoding in the first place.
    pub fn encode(&self, text: &str) -> Vec<u8> {
        if self.encoding == UTF_16LE {
            text.encode_utf16().flat_map(u16::to_le_bytes).collect()
        } else if self.encoding == UTF_16BE {
            text.encode_utf16().flat_map(u16::to_be_bytes).collect()
        } else {
            self.encoding.encode(text).0.into_owned()
        }
    }

    /// The byte-order mark to write at the start of a file in this encoding, when the input had one.
    pub fn bom_bytes(&self) -> &'static [u8] {
        if !self.bom {
            return b"";
        }
        if self.encoding == UTF_16LE {
            b"\xFF\xFE"
        } else if self.encoding == UTF_16BE {
            b"\xFE\xFF"
        } else if self.encoding == UTF_8 {
            b"\xEF\xBB\xBF"
        } else {
            b""
        }
    }
}

/// Reads up to `n` bytes from the front of a stream and returns them with a reader that still yields them.
///
/// Works on pipes (stdin), where nothing can be sought back.
fn peek(mut inner: Box<dyn Read + Send>, n: usize) -> io::Result<(Vec<u8>, Box<dyn Read + Send>)> {
    let mut head = vec![0u8; n];
    let mut filled = 0;
    while filled < n {
        match inner.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    head.truncate(filled);
    let replay: Box<dyn Read + Send> = Box::new(io::Cursor::new(head.clone()).chain(inner));
    Ok((head, replay))
}

/// Wraps a raw input: undoes gzip when the bytes start with its magic number, whatever the file is called.
pub fn maybe_gunzip(inner: Box<dyn Read + Send>) -> io::Result<Box<dyn Read + Send>> {
    let (head, replay) = peek(inner, 2)?;
    if head == [0x1f, 0x8b] {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(64 * 1024, replay))))
    } else {
        Ok(replay)
    }
}

/// Detects a byte-order mark, strips it, and returns a reader producing UTF-8 and the encoding in effect.
///
/// A BOM wins over the requested encoding (as in browsers): a file saved by Excel as "Unicode text" or
/// "CSV UTF-8" reads correctly whatever `--encoding` says.
pub fn decode(
    inner: Box<dyn Read + Send>,
    requested: TextEncoding,
) -> io::Result<(Box<dyn Read + Send>, TextEncoding)> {
    let (head, replay) = peek(inner, 3)?;
    let (encoding, bom_len) = match Encoding::for_bom(&head) {
        Some((enc, len)) => (TextEncoding { encoding: enc, bom: true }, len),
        None => (requested, 0),
    };
    let mut stripped = replay;
    if bom_len > 0 {
        io::copy(&mut (&mut stripped).take(bom_len as u64), &mut io::sink())?;
    }
    if encoding.is_utf8() {
        return Ok((stripped, encoding));
    }
    let decoder = encoding.encoding.new_decoder_without_bom_handling();
    Ok((Box::new(DecodeReader::new(stripped, decoder)), encoding))
}

/// A `Read` adapter that decodes any encoding to UTF-8, streaming, replacing malformed sequences with U+FFFD.
struct DecodeReader<R> {
    inner: R,
    decoder: Decoder,
    input: Vec<u8>,
    input_pos: usize,
    input_len: usize,
    output: Vec<u8>,
    output_pos: usize,
    output_len: usize,
    eof: bool,
    finished: bool,
}

impl<R: Read> DecodeReader<R> {
    fn new(inner: R, decoder: Decoder) -> Self {
        DecodeReader {
            inner,
            decoder,
            input: vec![0; 32 * 1024],
            input_pos: 0,
            input_len: 0,
            output: vec![0; 64 * 1024],
            output_pos: 0,
            output_len: 0,
            eof: false,
            finished: false,
        }
    }

    /// Decodes the next chunk into `output`; leaves `output_len == 0` only at the end of the stream.
    fn refill(&mut self) -> io::Result<()> {
        self.output_pos = 0;
        self.output_len = 0;
        while !self.finished {
            if self.input_pos == self.input_len && !self.eof {
                self.input_pos = 0;
                self.input_len = loop {
                    match self.inner.read(&mut self.input) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    }
                };
                self.eof = self.input_len == 0;
            }
            let (result, read, written, _) =
                self.decoder.decode_to_utf8(&self.input[self.input_pos..self.input_len], &mut self.output, self.eof);
            self.input_pos += read;
            self.output_len = written;
            if self.eof && result == encoding_rs::CoderResult::InputEmpty {
                self.finished = true;
            }
            if written > 0 {
                break;
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for DecodeReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.output_pos == self.output_len {
            self.refill()?;
        }
        let n = buf.len().min(self.output_len - self.output_pos);
        buf[..n].copy_from_slice(&self.output[self.output_pos..self.output_pos + n]);
        self.output_pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8], enc: TextEncoding) -> (String, TextEncoding) {
        let (mut r, e) = decode(Box::new(io::Cursor::new(bytes.to_vec())), enc).unwrap();
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        (out, e)
    }

    #[test]
    fn utf8_bom_is_stripped_and_remembered() {
        let (text, enc) = decode_all(b"\xEF\xBB\xBFa,b\n", TextEncoding::UTF8);
        assert_eq!(text, "a,b\n");
        assert!(enc.bom && enc.is_utf8());
        assert_eq!(enc.bom_bytes(), b"\xEF\xBB\xBF");
    }

    #[test]
    fn windows_1252_decodes_and_round_trips() {
        let latin1 = TextEncoding::from_label("latin1").unwrap();
        let (text, _) = decode_all(b"caf\xE9,\x80\n", latin1);
        assert_eq!(text, "café,€\n");
        assert_eq!(latin1.encode("café,€\n"), b"caf\xE9,\x80\n");
    }

    #[test]
    fn utf16_bom_overrides_requested_encoding() {
        let mut bytes = vec![0xFF, 0xFE];
        bytes.extend("Name,City\nZoë,東京\n".encode_utf16().flat_map(u16::to_le_bytes));
        let (text, enc) = decode_all(&bytes, TextEncoding::UTF8);
        assert_eq!(text, "Name,City\nZoë,東京\n");
        assert_eq!(enc.name(), "UTF-16LE");
        assert_eq!(enc.encode("Zoë"), "Zoë".encode_utf16().flat_map(u16::to_le_bytes).collect::<Vec<_>>());
    }

    #[test]
    fn large_input_decodes_across_buffer_boundaries() {
        let line = "Ünïcödé,ßtraße,€\n";
        let text: String = line.repeat(20_000);
        let latin = TextEncoding::from_label("windows-1252").unwrap();
        let (decoded, _) = decode_all(&latin.encode(&text), latin);
        assert_eq!(decoded, text);
    }

    #[test]
    fn gzip_is_detected_by_magic_bytes() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"a,b\n1,2\n").unwrap();
        let gz = enc.finish().unwrap();
        let mut r = maybe_gunzip(Box::new(io::Cursor::new(gz))).unwrap();
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        assert_eq!(out, "a,b\n1,2\n");
        let mut plain = maybe_gunzip(Box::new(io::Cursor::new(b"x".to_vec()))).unwrap();
        let mut out = String::new();
        plain.read_to_string(&mut out).unwrap();
        assert_eq!(out, "x");
    }

    #[test]
    fn unknown_label_is_rejected() {
        assert!(TextEncoding::from_label("klingon").is_none());
        assert!(TextEncoding::from_label("utf-16").is_some());
    }

    #[test]
    fn utf8_read_as_a_legacy_encoding_is_noticed_and_real_legacy_text_is_not() {
        let cp1252 = TextEncoding::from_label("windows-1252").unwrap();
        // "Hélène" in UTF-8 bytes, decoded as windows-1252: what the reader holds after a wrong --encoding.
        let (garbled, _, _) = encoding_rs::WINDOWS_1252.decode("Hélène;Besançon\n".as_bytes());
        assert_eq!(cp1252.misread_utf8(&garbled), Some(('é', "Ã©".to_string())));
        // Real windows-1252 ("Café" with the byte E9): its bytes are no UTF-8.
        let (real, _, _) = encoding_rs::WINDOWS_1252.decode(b"Caf\xE9;M\xFCnchen\n");
        assert_eq!(cp1252.misread_utf8(&real), None);
        assert_eq!(cp1252.misread_utf8("plain ascii"), None, "nothing to tell");
        assert_eq!(TextEncoding::UTF8.misread_utf8("Hélène"), None);
        let utf16 = TextEncoding::from_label("utf-16").unwrap();
        assert_eq!(utf16.misread_utf8("Hélène"), None);
    }
}
