//! Where the keys for PII at rest come from when `pii_keys` is not set (docs/pii.md): the demo
//! and Gavel's private PostgreSQL keep a generated key in `data_dir/pii-keys` (readable by its
//! owner only) and say so; `serve` on a configured database has none and refuses to start.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use gavel::config::Settings;
use gavel::pii::PiiKeys;

/// The file of the generated key, in `data_dir`.
pub fn key_file(settings: &Settings) -> PathBuf {
    settings.data_dir.join("pii-keys")
}

/// Fills `settings.pii_keys` from the key file (created with a new key when missing) when they
/// are not set and `generated_allowed` (the demo, the private PostgreSQL).
pub fn fill_in(settings: &mut Settings, generated_allowed: bool) -> Result<()> {
    if settings.pii_keys.is_some() || !generated_allowed {
        return Ok(());
    }
    let path = key_file(settings);
    let (text, created) = read_or_create(&path)?;
    let keys = PiiKeys::parse(&text)
        .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?
        .with_context(|| format!("{} holds no key", path.display()))?;
    // Said at every start, as information: a generated key is the demo's and development's way.
    tracing::info!(
        file = %path.display(),
        key_id = keys.active_id(),
        created,
        "pii_keys is not set: posted leads' PII is sealed with the generated key kept in this \
         file; keep it with the database (without it their PII cannot be read), or set \
         GAVEL_PII_KEYS"
    );
    settings.pii_keys = Some(keys);
    Ok(())
}

fn read_or_create(path: &Path) -> Result<(String, bool)> {
    match std::fs::read_to_string(path) {
        Ok(text) => return Ok((text.trim().to_owned(), false)),
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(error).with_context(|| format!("cannot read {}", path.display()));
        }
        Err(_) => {}
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = PiiKeys::generate(&PiiKeys::dated_id());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "{text}").with_context(|| format!("cannot write {}", path.display()))?;
    Ok((text, true))
}
