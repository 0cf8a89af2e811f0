//! `cloister keyvault backup|restore`: copies of the platform's database, and putting one back
//! under an admin-signed new anti-rollback epoch, which keyvault's executable checks and
//! applies (`cloister-keyvaultd restore-plan` / `restore`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use cloister_authority::{SignOptions, sign};

use crate::cli::{BackupArgs, Conn, RestoreArgs};
use crate::output;
use cloister_role::files::{KEYVAULT_DATABASE_FILE, LEGACY_DATABASE_FILE};

/// What `backup` and `restore` report with `--json`.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Done {
    file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<String>,
}

/// keyvault's database in `data_dir` (the single-database file of an earlier build when it is
/// the only one).
fn database(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let db = data_dir.join(KEYVAULT_DATABASE_FILE);
    let legacy = data_dir.join(LEGACY_DATABASE_FILE);
    if !db.exists() && legacy.exists() {
        return Ok(legacy);
    }
    if !db.exists() {
        bail!(
            "{} does not exist: is {} a Cloister data directory?",
            db.display(),
            data_dir.display()
        );
    }
    Ok(db)
}

/// Runs `keyvault backup`.
pub fn backup(args: &BackupArgs, json_mode: bool) -> anyhow::Result<()> {
    let db = database(&args.data_dir)?;
    cloister_vault_store::SqliteVault::backup_file(&db, &args.out)
        .with_context(|| format!("cannot back up {} to {}", db.display(), args.out.display()))?;
    if json_mode {
        output::json(&Done {
            file: args.out.display().to_string(),
            epoch: None,
            previous: None,
        });
    } else {
        println!("backed up {} to {}", db.display(), args.out.display());
        println!(
            "  it holds ciphertext only; restoring it needs this data directory's sim platform \
             and this build (or the recovery key), plus an admin identity"
        );
    }
    Ok(())
}

/// The database and its WAL side files.
fn with_side_files(db: &Path) -> Vec<PathBuf> {
    let mut v = vec![db.to_owned()];
    for suffix in ["-wal", "-shm"] {
        let mut s = db.as_os_str().to_owned();
        s.push(suffix);
        v.push(PathBuf::from(s));
    }
    v
}

/// Moves the database (and side files) to `<db>.pre-restore-<unix>`; returns that path.
fn move_aside(db: &Path) -> anyhow::Result<PathBuf> {
    let stamp = cloister_authority::request::unix_now();
    let mut aside = db.as_os_str().to_owned();
    aside.push(format!(".pre-restore-{stamp}"));
    let aside = PathBuf::from(aside);
    for (from, to) in with_side_files(db).into_iter().zip(with_side_files(&aside)) {
        if from.exists() {
            std::fs::rename(&from, &to)
                .with_context(|| format!("cannot move {} aside", from.display()))?;
        }
    }
    Ok(aside)
}

/// Puts the database moved aside back after a failed restore.
fn put_back(db: &Path, aside: &Path) {
    for p in with_side_files(db) {
        let _ = std::fs::remove_file(p);
    }
    for (from, to) in with_side_files(aside).into_iter().zip(with_side_files(db)) {
        if from.exists() {
            let _ = std::fs::rename(&from, &to);
        }
    }
}

/// Runs `cloister-keyvaultd <sub> --data-dir DIR`, `input` on its stdin, and parses the JSON
/// it prints (its errors go to our stderr).
fn keyvaultd<T: serde::de::DeserializeOwned>(
    exe: &Path,
    sub: &str,
    data_dir: &Path,
    input: &[u8],
) -> anyhow::Result<T> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(exe)
        .arg(sub)
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input)?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "keyvault's `{sub}` failed ({}); its message is above",
            out.status
        );
    }
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("keyvault's `{sub}` printed something unexpected"))
}

/// Runs `keyvault restore`: the file is copied here; keyvault (its own executable, which
/// alone unseals the database) says what to sign, the admin identity signs it, keyvault
/// checks and applies it.
pub async fn restore(conn: &Conn, args: &RestoreArgs, json_mode: bool) -> anyhow::Result<()> {
    // A data directory (of this layout or the single-database one); the copy goes to
    // keyvault's own file either way (a backup of the old layout is taken over when opened).
    database(&args.data_dir)?;
    let db = args.data_dir.join(KEYVAULT_DATABASE_FILE);
    // The platform must be stopped, and stays stopped while the copy goes in.
    let _data_lock = crate::data_lock::acquire(&args.data_dir, "keyvault restore", "restoring")?;
    if !args.from.is_file() {
        bail!("{} is not a file", args.from.display());
    }
    let bins = cloister_role::trusted::TrustedBinaries::locate(args.trusted_dir.as_deref())?;
    bins.check_versions()?;
    // The admin identity is loaded first, so nothing is moved when there is none.
    let admin = crate::identity_cmd::require(conn.identity.as_deref())?;
    let aside = move_aside(&db)?;
    let result = async {
        std::fs::copy(&args.from, &db)
            .with_context(|| format!("cannot copy {} to {}", args.from.display(), db.display()))?;
        let plan: cloister_keyvaultd::RestorePlan =
            keyvaultd(&bins.keyvault, "restore-plan", &args.data_dir, b"")?;
        let signed = sign(
            &admin,
            &plan.restore,
            &SignOptions::for_platform(&plan.platform),
        )?;
        let done: cloister_keyvaultd::Restored =
            keyvaultd(&bins.keyvault, "restore", &args.data_dir, &signed)?;
        anyhow::Ok(done)
    }
    .await;
    let st = match result {
        Ok(st) => st,
        Err(e) => {
            put_back(&db, &aside);
            return Err(e.context("nothing was changed: the previous database is back in place"));
        }
    };
    if json_mode {
        output::json(&Done {
            file: db.display().to_string(),
            epoch: Some(st.epoch),
            previous: Some(aside.display().to_string()),
        });
    } else {
        println!(
            "restored {} from {} (anti-rollback epoch {}; the restore is in the audit log)",
            db.display(),
            args.from.display(),
            st.epoch
        );
        println!("  the previous database is kept in {}", aside.display());
        println!(
            "  clients see the new epoch in `cloister audit verify` and accept the shorter chain"
        );
    }
    Ok(())
}
