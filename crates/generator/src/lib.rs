//! A deterministic generator of session-event files in exactly the format of
//! the real dataset (bzip2-compressed JSON Lines, see `DATA.md`), with a seed,
//! a size knob and an anomaly rate, plus the exact ground truth ([`Truth`])
//! that a correct pipeline must reproduce from the file.
//!
//! ```text
//! GeneratorConfig --plan--> lines (valid + anomalies, in file order) --format+bzip2--> file
//!                                 \--------------------------------------------------> Truth
//! ```
//!
//! The same configuration always gives the same bytes.

mod countries;
mod format;
mod junk;
mod plan;
mod truth;
mod write;

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub use truth::Truth;

/// The most sessions a file may have (keeps memory bounded).
pub const MAX_SESSIONS: u64 = 50_000_000;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorConfig {
    /// Number of sessions planned (default 500,000, the real file's size).
    /// Anomalies may remove a start or an end, never a whole session.
    pub sessions: u64,
    /// Seed of the random generator: same config, same bytes.
    pub seed: u64,
    /// Approximate fraction (0.0..=1.0) of lines that are anomalous; at any
    /// positive rate every kind of anomaly appears at least once.
    pub anomaly_rate: f64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self { sessions: 500_000, seed: 2016, anomaly_rate: 0.0 }
    }
}

impl GeneratorConfig {
    fn validate(&self) -> Result<(), GeneratorError> {
        if !(0.0..=1.0).contains(&self.anomaly_rate) {
            return Err(GeneratorError::InvalidConfig(format!(
                "anomaly_rate must be within 0.0..=1.0, got {}",
                self.anomaly_rate
            )));
        }
        if self.sessions > MAX_SESSIONS {
            return Err(GeneratorError::InvalidConfig(format!(
                "sessions must be at most {MAX_SESSIONS}, got {}",
                self.sessions
            )));
        }
        Ok(())
    }
}

/// Why a file could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum GeneratorError {
    /// The configuration is out of range.
    #[error("invalid generator configuration: {0}")]
    InvalidConfig(String),
    /// Writing the output failed.
    #[error("cannot write the generated file: {0}")]
    Io(#[from] std::io::Error),
}

/// Generates the file described by `config`, writing its bzip2-compressed
/// bytes to `out`, and returns its ground truth.
pub fn generate<W: Write>(config: &GeneratorConfig, mut out: W) -> Result<Truth, GeneratorError> {
    config.validate()?;
    let plan = plan::build(config);
    let truth = truth::compute(&plan);
    write::write_compressed(&plan, &mut out)?;
    out.flush()?;
    Ok(truth)
}

/// Generates the file into `path`: written to a temporary file in the same
/// directory, then renamed, so `path` never holds a partial file.
pub fn generate_file(config: &GeneratorConfig, path: &Path) -> Result<Truth, GeneratorError> {
    config.validate()?;
    let name = path
        .file_name()
        .ok_or_else(|| GeneratorError::InvalidConfig(format!("`{}` does not name a file", path.display())))?;
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let temp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut writer = BufWriter::with_capacity(1 << 20, File::create(&temp)?);
        let truth = generate(config, &mut writer)?;
        let file = writer.into_inner().map_err(|error| error.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)?;
        Ok(truth)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}
