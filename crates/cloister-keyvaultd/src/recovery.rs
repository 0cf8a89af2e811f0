//! Handing the recovery key to the operator without it ever reaching a log.

use std::path::Path;

use anyhow::Context;

/// Writes the key into the 0600 file the operator named (never overwriting one), or shows
/// it on the interactive terminal.
pub fn show(key: &str, file: Option<&Path>) -> anyhow::Result<()> {
    if let Some(path) = file {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot create {} for the recovery key", path.display()))?;
        f.write_all(key.as_bytes())
            .and_then(|()| f.write_all(b"\n"))
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write the recovery key to {}", path.display()))?;
        tracing::warn!(
            file = %path.display(),
            "keyvault initialised; the recovery key was written to this 0600 file: move it offline"
        );
        return Ok(());
    }
    eprintln!();
    eprintln!("  ┌─ keyvault initialised ─────────────────────────────────────────────────");
    eprintln!("  │ Recovery key (shown ONCE, never stored by Cloister; keep it offline):");
    eprintln!("  │   {key}");
    eprintln!("  │ It is the only way to move secrets to a new keyvault build:");
    eprintln!("  │   cloister keyvault migrate --data-dir <dir> --recovery-key-file <file>");
    eprintln!("  └────────────────────────────────────────────────────────────────────────");
    eprintln!();
    Ok(())
}

/// Reads a recovery key from `file`, or from stdin.
pub fn read(file: Option<&Path>) -> anyhow::Result<cloister_keyvault::RecoveryKey> {
    use std::io::Read;
    let mut text = zeroize::Zeroizing::new(String::new());
    match file {
        Some(p) => {
            std::fs::File::open(p)
                .with_context(|| format!("cannot open {}", p.display()))?
                .take(4096)
                .read_to_string(&mut text)
                .with_context(|| format!("cannot read {}", p.display()))?;
        }
        None => {
            std::io::stdin()
                .take(4096)
                .read_to_string(&mut text)
                .context("cannot read the recovery key from stdin")?;
        }
    }
    Ok(cloister_keyvault::RecoveryKey::parse(&text)?)
}
