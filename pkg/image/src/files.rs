//! Reading the small files the puller trusts (policy.json, registries.conf,
//! auth.json, keys): whole, and never more than a bound.

use std::io::{self, Read};
use std::path::Path;

/// Why a configuration or key file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Opening or reading failed.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: io::Error,
    },
    /// The file is larger than such a file can be.
    #[error("{path}: larger than {max} bytes")]
    TooLarge {
        /// The file.
        path: String,
        /// The bound.
        max: u64,
    },
}

/// `path` opened to read one byte more than `max`, to see a larger file.
fn open(path: &Path, max: u64) -> io::Result<io::Take<std::fs::File>> {
    Ok(std::fs::File::open(path)?.take(max + 1))
}

fn read_error(path: &Path) -> impl FnOnce(io::Error) -> FileError + '_ {
    move |source| FileError::Read {
        path: path.display().to_string(),
        source,
    }
}

fn bounded<T: AsRef<[u8]>>(content: T, path: &Path, max: u64) -> Result<T, FileError> {
    if content.as_ref().len() as u64 > max {
        return Err(FileError::TooLarge {
            path: path.display().to_string(),
            max,
        });
    }
    Ok(content)
}

/// The bytes of `path`, at most `max`.
pub(crate) fn read_bytes(path: &Path, max: u64) -> Result<Vec<u8>, FileError> {
    let mut bytes = Vec::new();
    open(path, max)
        .and_then(|mut file| file.read_to_end(&mut bytes))
        .map_err(read_error(path))?;
    bounded(bytes, path, max)
}

/// The text of `path`, at most `max` bytes; None when it does not exist.
pub(crate) fn read_text_if_present(path: &Path, max: u64) -> Result<Option<String>, FileError> {
    let mut file = match open(path, max) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_error(path)(e)),
    };
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(read_error(path))?;
    bounded(text, path, max).map(Some)
}
