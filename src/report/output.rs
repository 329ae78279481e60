//! A report or export file on disk, plain or gzip: the one place that knows how such a file is written
//! and finished (gzip trailer written, buffers flushed, the file synced), so a caller that returns `Ok`
//! from [`OutputFile::finish`] has the whole file on disk.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// The byte stream of an output file, gzipped or not.
pub enum OutputFile {
    Plain(BufWriter<File>),
    Gzip(flate2::write::GzEncoder<BufWriter<File>>),
}

impl OutputFile {
    /// Wraps an open file, gzipping when `gzip` is set.
    pub fn new(file: File, gzip: bool) -> OutputFile {
        let file = BufWriter::with_capacity(64 * 1024, file);
        if gzip {
            OutputFile::Gzip(flate2::write::GzEncoder::new(file, flate2::Compression::default()))
        } else {
            OutputFile::Plain(file)
        }
    }

    /// Creates `path`, gzipped when its name ends in `.gz`.
    pub fn create(path: &Path) -> io::Result<OutputFile> {
        let gz = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz"));
        Ok(OutputFile::new(File::create(path)?, gz))
    }

    /// Writes the gzip trailer, flushes and syncs the file to disk.
    pub fn finish(self) -> io::Result<()> {
        let buffered = match self {
            OutputFile::Plain(w) => w,
            OutputFile::Gzip(gz) => gz.finish()?,
        };
        buffered.into_inner().map_err(|e| e.into_error())?.sync_all()
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            OutputFile::Plain(w) => w.write(buf),
            OutputFile::Gzip(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            OutputFile::Plain(w) => w.flush(),
            OutputFile::Gzip(w) => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_gz_name_is_gzipped_and_finish_leaves_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["out.csv", "out.csv.gz"] {
            let path = dir.path().join(name);
            let mut out = OutputFile::create(&path).unwrap();
            out.write_all(b"a,b\n1,2\n").unwrap();
            out.finish().unwrap();
            let raw = std::fs::read(&path).unwrap();
            let text = if name.ends_with(".gz") {
                let mut s = Vec::new();
                flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut s).unwrap();
                s
            } else {
                raw
            };
            assert_eq!(text, b"a,b\n1,2\n", "{name}");
        }
    }
}
