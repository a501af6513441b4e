//! File plumbing shared by every stage: transparent gzip input with a byte
//! counter for progress bars, and atomic writes (temporary name, then rename)
//! so that a crash never leaves a file that looks complete.
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};

/// Counts the bytes read through it (compressed bytes for `.gz`).
pub struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Open a plain or gzip file (recognised by its magic bytes, not its name).
/// `count` grows by the bytes read from disk.
pub fn open_input(path: &Path, count: Arc<AtomicU64>) -> Result<Box<dyn Read + Send>> {
    Ok(open_input_kind(path, count)?.0)
}

/// [`open_input`], also saying whether the file is gzip (so that a read error
/// can be told as a corrupt or truncated gzip stream).
pub fn open_input_kind(path: &Path, count: Arc<AtomicU64>) -> Result<(Box<dyn Read + Send>, bool)> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut magic = [0u8; 2];
    let n = read_fully(&mut file, &mut magic).map_err(|e| Error::io(path, e))?;
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let counted = CountingReader { inner: file, count };
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok((
            Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
                1 << 20,
                counted,
            ))),
            true,
        ))
    } else {
        Ok((Box::new(counted), false))
    }
}

/// The error of a failed read of input `path` after `lines` complete lines
/// and `offset` bytes (decompressed, for gzip): a gzip stream that ends early
/// or is corrupt says so, and where (an `Invalid` error, printed once, rather
/// than an `Io` one whose cause would repeat the message).
pub fn input_error(path: &Path, gzip: bool, e: std::io::Error, lines: u64, offset: u64) -> Error {
    use std::io::ErrorKind;
    let kind = e.kind();
    let after = if lines == 0 {
        "before the end of its first line".to_string()
    } else {
        format!("after line {lines}")
    };
    if gzip
        && matches!(
            kind,
            ErrorKind::UnexpectedEof | ErrorKind::InvalidInput | ErrorKind::InvalidData
        )
    {
        return Error::Invalid(format!(
            "{}: the gzip stream ends early (corrupt or truncated) {after} \
             (decompressed byte {offset}): {e}",
            path.display()
        ));
    }
    Error::io(
        path,
        std::io::Error::new(kind, format!("{e} ({after}, byte {offset})")),
    )
}

/// Like `read_exact`, but returns how much was read before end of file.
pub fn read_fully(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    match fill(r, buf) {
        (n, None) => Ok(n),
        (_, Some(e)) => Err(e),
    }
}

/// Fill `buf` from `r` like `read_exact`, but up to end of file; on an error,
/// also how much was read before it.
pub fn fill(r: &mut impl Read, buf: &mut [u8]) -> (usize, Option<std::io::Error>) {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return (filled, Some(e)),
        }
    }
    (filled, None)
}

/// The temporary name a file is written under before it is renamed into place:
/// hidden, in the same directory (so the rename is atomic), marked with `.tmp`.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Write `bytes` to `path` atomically.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Build the directory `out` atomically: `build` fills a temporary directory
/// beside it (see [`temp_path`]), which replaces `out` only when `build`
/// succeeds; on failure it is removed, so nothing half-built is left.
pub fn build_dir_atomically<T>(out: &Path, build: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let tmp = temp_path(out);
    let result = (|| {
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let value = build(&tmp)?;
        if out.exists() {
            std::fs::remove_dir_all(out).map_err(|e| Error::io(out, e))?;
        }
        std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
        Ok(value)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Serialise `value` as pretty JSON into `path`, atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| Error::json(path, e))?;
    text.push('\n');
    atomic_write(path, text.as_bytes())
}

/// Read and parse a JSON file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::json(path, e))
}
