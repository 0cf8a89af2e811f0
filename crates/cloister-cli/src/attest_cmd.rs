//! `cloister attest verify|inspect|roots`: offline evidence verification for operators and scripts.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use cloister_attest::dcap::DcapQuote;
use cloister_attest::fetch::{DiskCache, Endpoints, Fetcher, Source, UreqClient};
use cloister_attest::snp::SnpReport;
use cloister_attest::time_fmt::{now, parse_rfc3339, rfc3339};
use cloister_attest::x509::{parse_certs, parse_crls};
use cloister_attest::{
    AttestError, Claims, Collateral, Format, Policy, TeeType, TrustStore, Verified, VerifierSet,
    Violation, decode_text_or_binary,
};
use serde_json::{Map, Value, json};

use crate::cli::{AttestCommand, AttestInspectArgs, AttestVerifyArgs, OnlineArgs};
use crate::output;

/// Exit code when evidence is authentic but the policy rejects it.
const EXIT_POLICY_REJECTED: u8 = 2;

/// Runs an `attest` subcommand; errors about the evidence itself are reported here with codes.
pub fn run(cmd: AttestCommand, json_mode: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        AttestCommand::Verify(args) => verify(*args, json_mode),
        AttestCommand::Inspect(args) => inspect(args, json_mode),
        AttestCommand::Roots => roots(json_mode),
        AttestCommand::Measure {
            role,
            trusted_dir,
            workers,
        } => measure(
            role.as_deref(),
            trusted_dir.as_deref(),
            workers.range()?,
            json_mode,
        ),
    }
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

/// Reports an evidence error with its stable code and exits 1.
fn rejected(e: &AttestError, json_mode: bool) -> ExitCode {
    if json_mode {
        output::json(
            &json!({ "verified": false, "error": { "code": e.code(), "message": e.to_string() } }),
        );
    }
    eprintln!("error[{}]: {e}", e.code());
    ExitCode::FAILURE
}

fn format_flag(s: &str) -> anyhow::Result<Option<Format>> {
    Ok(Format::parse_flag(s)?)
}

fn verify(args: AttestVerifyArgs, json_mode: bool) -> anyhow::Result<ExitCode> {
    let evidence = decode_text_or_binary(&read(&args.file, "evidence")?);
    let at = match &args.at {
        Some(s) => {
            parse_rfc3339(s).with_context(|| format!("--at `{s}` is not an RFC 3339 time"))?
        }
        None => now(),
    };
    let policy = match &args.policy {
        Some(path) => {
            let text = String::from_utf8(read(path, "policy")?).context("policy is not UTF-8")?;
            Some(Policy::from_yaml(&text).with_context(|| format!("in {}", path.display()))?)
        }
        None => None,
    };
    let mut store = TrustStore::builtin()?;
    for spec in &args.extra_roots {
        let (tee, file) = spec
            .split_once('=')
            .with_context(|| format!("--extra-root `{spec}` must be TEE=FILE"))?;
        let tee: TeeType = tee.parse()?;
        store.add_extra(tee, &read(Path::new(file), "extra root")?, file)?;
    }
    let mut collateral = Collateral::default();
    for path in &args.certs {
        collateral
            .certs
            .extend(parse_certs(&read(path, "certificate")?)?);
    }
    for path in &args.crls {
        collateral.crls.extend(parse_crls(&read(path, "CRL")?)?);
    }
    if let Some(path) = &args.collateral {
        collateral.dcap = Some(cloister_attest::dcap::parse_collateral(&read(
            path,
            "collateral",
        )?)?);
    }
    let mut set = VerifierSet::new(&store);
    if let Some(fp) = &args.sim_root {
        // The sim root is pinned by fingerprint: trust the embedded root only if it matches.
        if let Ok(ev) = cloister_attest::sim::SimEvidence::parse(&evidence) {
            use sha2::Digest;
            let found = hex::encode(sha2::Sha256::digest(&ev.platform_cert));
            if !found.eq_ignore_ascii_case(fp.trim()) {
                let e = cloister_attest::AttestError::Chain(format!(
                    "sim platform root sha256 {found} is not the pinned {}",
                    fp.trim()
                ));
                return Ok(rejected(&e, json_mode));
            }
            set.insert(std::sync::Arc::new(
                cloister_attest::sim::SimVerifier::pinning(&ev.platform_cert)?,
            ));
        }
    }
    let verifier = match set.for_evidence(&evidence, format_flag(&args.format)?) {
        Ok(v) => v,
        // Simulated-TEE evidence is trusted only under a pinned root: say how to pin one.
        Err(cloister_attest::AttestError::Unsupported(_))
            if args.sim_root.is_none()
                && cloister_attest::sim::SimEvidence::parse(&evidence).is_ok() =>
        {
            let e = cloister_attest::AttestError::Unsupported(
                "this is simulated-TEE evidence, trusted only under a pinned sim root: pass \
                 --sim-root FINGERPRINT (printed by `cloister serve --dev` as \
                 CLOISTER_SIM_ROOT)"
                    .into(),
            );
            return Ok(rejected(&e, json_mode));
        }
        Err(e) => return Ok(rejected(&e, json_mode)),
    };
    let mut fetched = FetchReport::default();
    if args.online.online {
        let fetcher = fetcher(&args.online)?;
        if let Err(e) = fetch_missing(
            &fetcher,
            verifier.tee(),
            &evidence,
            &mut collateral,
            &mut fetched,
        ) {
            return Ok(rejected(&e, json_mode));
        }
        if !json_mode {
            for s in &fetched.sources {
                let how = if s.cached { "cached " } else { "fetched" };
                eprintln!("collateral: {how} {}", s.url);
            }
        }
        for w in &fetched.warnings {
            eprintln!("warning: {w}");
        }
    }
    let verified = match verifier.verify(&evidence, &collateral, at) {
        Ok(v) => v,
        Err(e) => return Ok(rejected(&e, json_mode)),
    };
    let violations = policy.as_ref().map(|p| p.evaluate(&verified, at));
    if json_mode {
        let mut out = verified_json(&verified, violations.as_deref());
        if args.online.online
            && let Value::Object(obj) = &mut out
        {
            obj.insert("collateral_sources".into(), json!(fetched.sources));
            obj.insert("warnings".into(), json!(fetched.warnings));
        }
        output::json(&out);
    } else {
        print_verified(&verified, violations.as_deref());
    }
    Ok(match violations {
        Some(v) if !v.is_empty() => ExitCode::from(EXIT_POLICY_REJECTED),
        _ => ExitCode::SUCCESS,
    })
}

/// What online fetching did, for the report.
#[derive(Default)]
struct FetchReport {
    sources: Vec<Source>,
    warnings: Vec<String>,
}

/// The collateral cache directory: explicit, else `$XDG_CACHE_HOME` or `~/.cache`.
fn cache_dir(args: &OnlineArgs) -> Option<PathBuf> {
    if let Some(dir) = &args.collateral_cache {
        return Some(dir.clone());
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("cloister").join("collateral"))
}

fn fetcher(args: &OnlineArgs) -> anyhow::Result<Fetcher> {
    let http = UreqClient::new(Duration::from_secs(args.fetch_timeout.max(1)));
    let endpoints = Endpoints {
        amd_kds: args.kds_url.clone(),
        intel_pcs: args.pcs_url.clone(),
        intel_root_crl: args.intel_root_crl_url.clone(),
    };
    let mut fetcher = Fetcher::new(Box::new(http), endpoints);
    if !args.no_cache {
        let dir = cache_dir(args).context("no cache directory: set --collateral-cache or HOME")?;
        fetcher = fetcher.with_cache(DiskCache::new(dir), args.cache_max_age.max(0));
    }
    Ok(fetcher)
}

/// Fetches what the files on the command line did not supply: the SEV-SNP VCEK (and CRL)
/// when no `--cert` was given, the DCAP collateral when no `--collateral` was given.
fn fetch_missing(
    fetcher: &Fetcher,
    tee: TeeType,
    evidence: &[u8],
    collateral: &mut Collateral,
    report: &mut FetchReport,
) -> Result<(), AttestError> {
    let now = now();
    match tee {
        TeeType::SevSnp if collateral.certs.is_empty() => {
            let got = fetcher.snp_collateral(&SnpReport::parse(evidence)?, now)?;
            collateral.certs.extend(got.value.certs);
            collateral.crls.extend(got.value.crls);
            report.sources.extend(got.sources);
            report.warnings.extend(got.warnings);
        }
        TeeType::Sgx | TeeType::Tdx if collateral.dcap.is_none() => {
            let got = fetcher.dcap_collateral(&DcapQuote::parse(evidence, tee)?, now)?;
            collateral.dcap = Some(got.value);
            report.sources.extend(got.sources);
            report.warnings.extend(got.warnings);
        }
        _ => report.warnings.push(format!(
            "--online: nothing to fetch for this {tee} evidence"
        )),
    }
    Ok(())
}

fn inspect(args: AttestInspectArgs, json_mode: bool) -> anyhow::Result<ExitCode> {
    let evidence = decode_text_or_binary(&read(&args.file, "evidence")?);
    let set = VerifierSet::new(&TrustStore::builtin()?);
    let claims = match set
        .for_evidence(&evidence, format_flag(&args.format)?)
        .and_then(|v| v.inspect(&evidence))
    {
        Ok(c) => c,
        Err(e) => return Ok(rejected(&e, json_mode)),
    };
    if json_mode {
        let mut obj = claims_json(&claims);
        obj.insert("verified".into(), Value::Bool(false));
        output::json(&Value::Object(obj));
    } else {
        println!(
            "NOT VERIFIED: decoded {} evidence; nothing below has been checked",
            claims.tee.label()
        );
        print_claims(&claims);
    }
    Ok(ExitCode::SUCCESS)
}

fn roots(json_mode: bool) -> anyhow::Result<ExitCode> {
    let store = TrustStore::builtin()?;
    let rows = store.fingerprints();
    if json_mode {
        let list: Vec<Value> = rows
            .iter()
            .map(|(tee, name, fp)| json!({ "tee": tee, "name": name, "sha256": fp }))
            .collect();
        output::json(&list);
    } else {
        for (tee, name, fp) in rows {
            println!("{tee:<8} {name:<20} {fp}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Claims as a flat JSON object: common fields plus the format-specific ones.
fn claims_json(claims: &Claims) -> Map<String, Value> {
    match serde_json::to_value(claims) {
        Ok(Value::Object(mut obj)) => {
            obj.insert("tee_label".into(), Value::String(claims.tee.label().into()));
            obj
        }
        _ => Map::new(),
    }
}

fn verified_json(v: &Verified, violations: Option<&[Violation]>) -> Value {
    let mut obj = claims_json(v.claims());
    obj.insert("verified".into(), Value::Bool(true));
    obj.insert("anchor".into(), Value::String(v.anchor().into()));
    obj.insert(
        "chain".into(),
        serde_json::to_value(v.chain()).unwrap_or(Value::Null),
    );
    obj.insert(
        "verified_at".into(),
        Value::String(rfc3339(v.verified_at())),
    );
    obj.insert(
        "valid_until".into(),
        Value::String(rfc3339(v.valid_until())),
    );
    obj.insert(
        "evidence_sha256".into(),
        Value::String(v.evidence_sha256().to_hex()),
    );
    // `verdict`, not `policy`: SEV-SNP claims already have a `policy` field (the guest policy).
    obj.insert(
        "verdict".into(),
        match violations {
            None => json!({ "evaluated": false }),
            Some(list) => {
                json!({ "evaluated": true, "accepted": list.is_empty(), "violations": list })
            }
        },
    );
    Value::Object(obj)
}

fn print_claims(c: &Claims) {
    println!("  tee           {}", c.tee.label());
    println!("  platform      {}", c.platform);
    println!("  measurement   {}", c.measurement.to_hex());
    if let Some(rd) = &c.report_data {
        println!("  report_data   {}", rd.to_hex());
    }
    println!("  debug         {}", c.debug);
    println!("  tcb_status    {}", c.tcb_status.as_deref().unwrap_or("-"));
    if !c.advisory_ids.is_empty() {
        println!("  advisories    {}", c.advisory_ids.join(", "));
    }
    if let Some(ts) = c.timestamp {
        println!("  timestamp     {}", rfc3339(ts));
    }
    if let Ok(Value::Object(detail)) = serde_json::to_value(&c.detail) {
        for (k, v) in detail {
            print_field(&k, &v, 2);
        }
    }
}

fn print_field(key: &str, value: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            println!("{pad}{key}");
            for (k, v) in map {
                print_field(k, v, indent + 2);
            }
        }
        Value::Null => println!("{pad}{key:<13} -"),
        Value::String(s) => println!("{pad}{key:<13} {s}"),
        other => println!("{pad}{key:<13} {other}"),
    }
}

fn print_verified(v: &Verified, violations: Option<&[Violation]>) {
    let c = v.claims();
    println!(
        "AUTHENTIC: {} evidence verified at {} (chain to pinned root `{}`)",
        c.tee.label(),
        rfc3339(v.verified_at()),
        v.anchor()
    );
    print_claims(c);
    println!("  chain");
    for cert in v.chain() {
        println!("    {} (sha256 {})", cert.subject, cert.sha256);
    }
    println!("  valid_until   {}", rfc3339(v.valid_until()));
    match violations {
        None => println!("policy: not evaluated (authenticity only; pass --policy FILE)"),
        Some([]) => println!("policy: ACCEPTED"),
        Some(list) => {
            println!("policy: REJECTED ({} violation(s))", list.len());
            for violation in list {
                println!("  - {}: {}", violation.rule, violation.message);
            }
        }
    }
}

/// One trusted executable in `attest measure --json`.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct MeasuredRole {
    /// Role it attests as.
    role: &'static str,
    /// Its sim measurement (hex): what allowlists hold.
    measurement: String,
    /// The executable measured.
    executable: String,
    /// Digest of the configuration the measurement covers (hex).
    config_digest: String,
}

/// `attest measure --json`.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct MeasureReport {
    /// Always `sim`.
    tee: &'static str,
    /// Its label.
    tee_label: &'static str,
    /// keyvault.
    keyvault: MeasuredRole,
    /// The executor, configured as `serve --dev` runs it.
    executor: MeasuredRole,
    /// The worker executable the executor's configuration names.
    worker: String,
    /// Its SHA-384 (hex).
    worker_sha384: String,
}

fn measure(
    role: Option<&str>,
    dir: Option<&Path>,
    worker_uids: std::ops::Range<u32>,
    json_mode: bool,
) -> anyhow::Result<ExitCode> {
    let bins = cloister_role::trusted::TrustedBinaries::locate(dir)?;
    let m = bins.measure(
        cloister_executor::config::DEFAULT_SECRETS_TTL_SECS,
        worker_uids,
    )?;
    let label = cloister_attest::TeeType::Sim.label();
    let report = MeasureReport {
        tee: "sim",
        tee_label: label,
        keyvault: MeasuredRole {
            role: "keyvault",
            measurement: hex::encode(m.keyvault),
            executable: bins.keyvault.display().to_string(),
            config_digest: hex::encode(m.keyvault_config),
        },
        executor: MeasuredRole {
            role: "executor",
            measurement: hex::encode(m.executor),
            executable: bins.executor.display().to_string(),
            config_digest: hex::encode(m.executor_config),
        },
        worker: bins.worker.display().to_string(),
        worker_sha384: hex::encode(m.worker),
    };
    let one = match role {
        Some("keyvault") => Some(&report.keyvault),
        Some(_) => Some(&report.executor),
        None => None,
    };
    match (one, json_mode) {
        (Some(r), true) => output::json(r),
        (None, true) => output::json(&report),
        (Some(r), false) => {
            println!("{}", r.measurement);
            eprintln!(
                "(sim measurement of {} as {}; tee: {label})",
                r.executable, r.role
            );
        }
        (None, false) => {
            println!("tee: {label}");
            for r in [&report.keyvault, &report.executor] {
                println!("{:<9} {}", r.role, r.measurement);
                println!("          {} (config {})", r.executable, r.config_digest);
            }
            println!(
                "worker    sha384 {}\n          {} (covered by the executor's measurement)",
                report.worker_sha384, report.worker
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
