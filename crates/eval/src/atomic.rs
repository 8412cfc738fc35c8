//! Files written whole or not at all.

use std::io::Write;
use std::path::Path;

use crate::error::EvalError;

/// Writes `bytes` to `path` through a flushed temporary file and a rename: `path` is either the
/// old complete file or the new complete file, never a partial one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), EvalError> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let mut f = std::fs::File::create(&tmp).map_err(EvalError::io(&tmp))?;
    f.write_all(bytes).map_err(EvalError::io(&tmp))?;
    f.sync_all().map_err(EvalError::io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(EvalError::io(path))
}
