//! `cloister fn new NAME --template T`: starter function files.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};

/// The templates, by name.
pub const TEMPLATES: [(&str, &str); 3] = [
    ("js-basic", include_str!("../templates/js-basic.js")),
    ("js-secret", include_str!("../templates/js-secret.js")),
    ("js-async", include_str!("../templates/js-async.js")),
];

/// Writes `DIR/NAME.js` from `template`.
pub fn write(
    name: &str,
    template: &str,
    dir: &Path,
    force: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    cloister_types::names::FunctionName::parse(name)
        .map_err(|e| anyhow::anyhow!("`{name}` is not a function name: {e}"))?;
    let Some((_, text)) = TEMPLATES.iter().find(|(t, _)| *t == template) else {
        bail!(
            "no template `{template}` (templates: {})",
            TEMPLATES.map(|(t, _)| t).join(", ")
        );
    };
    let path = dir.join(format!("{name}.js"));
    if path.exists() && !force {
        bail!("{} exists (pass --force to overwrite it)", path.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(&path, text.replace("__NAME__", name))
        .with_context(|| format!("cannot write {}", path.display()))?;
    if json {
        crate::output::json(&serde_json::json!({ "file": path, "template": template }));
    } else {
        println!("wrote {} ({template})", path.display());
        println!("  try it here:  cloister fn run {}", path.display());
        println!("  deploy it:    cloister fn deploy {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
