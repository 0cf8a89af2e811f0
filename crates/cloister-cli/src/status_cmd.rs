//! `cloister status`: each role of the platform at --url — the gateway's health and release,
//! the executor as the gateway reports it (its word), and keyvault's attestation verified
//! here against this machine's trust settings (evidence, not a claim).

use std::process::ExitCode;

use serde::Serialize;

use crate::cli::{Conn, TrustArgs};
use crate::output;

/// What `status --json` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    url: String,
    gateway_healthy: bool,
    /// The gateway's account (unverified), when it answered.
    platform: Option<cloister_types::wire::PlatformStatus>,
    /// keyvault's evidence as verified here, or why it was not.
    keyvault: KeyvaultReport,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct KeyvaultReport {
    verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tee: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    measurement: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    evidence_age_secs: Option<i64>,
    executor_measurements: Vec<String>,
    fleet_keys: Vec<String>,
    admins: usize,
}

/// Runs `status`; exits non-zero when any role is unhealthy or keyvault does not verify.
pub async fn run(conn: Conn, trust: TrustArgs, json: bool) -> anyhow::Result<ExitCode> {
    let mut c = crate::client_cmds::client(&conn)?;
    let gateway_healthy = c.health().await.is_ok();
    let platform = if gateway_healthy {
        c.status().await.ok()
    } else {
        None
    };
    let keyvault = match crate::secret_cmd::verified_bundle(&mut c, &conn.url, &trust).await {
        Ok((kv, _)) => KeyvaultReport {
            verified: true,
            error: None,
            tee: Some(kv.tee_label.clone()),
            measurement: Some(kv.measurement.clone()),
            evidence_age_secs: Some(kv.age_secs),
            executor_measurements: kv.executor_measurements.clone(),
            fleet_keys: kv
                .fleet_keys
                .iter()
                .map(|k| {
                    format!(
                        "{} (epoch {}, until {})",
                        hex::encode(k.key_id),
                        k.epoch,
                        k.not_after
                    )
                })
                .collect(),
            admins: kv.admins.len(),
        },
        Err(e) => KeyvaultReport {
            verified: false,
            error: Some(format!("{e:#}")),
            tee: None,
            measurement: None,
            evidence_age_secs: None,
            executor_measurements: Vec::new(),
            fleet_keys: Vec::new(),
            admins: 0,
        },
    };
    let healthy = gateway_healthy
        && keyvault.verified
        && platform.as_ref().is_some_and(|p| p.executor.reachable);
    let r = Report {
        url: conn.url.clone(),
        gateway_healthy,
        platform,
        keyvault,
    };
    if json {
        output::json(&r);
    } else {
        print(&r);
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn mark(ok: bool) -> &'static str {
    if ok { "ok  " } else { "DOWN" }
}

fn print(r: &Report) {
    // Gateway text is shown with control characters escaped: a hostile gateway cannot hide
    // lines or fake a verified one.
    let esc = |t: &str| crate::output::printable(t).into_owned();
    println!("platform at {}", esc(&r.url));
    match &r.platform {
        Some(st) => {
            println!(
                "  {} gateway    release {} (keyvault {})  [the gateway's word]",
                mark(r.gateway_healthy),
                esc(&st.gateway_version),
                if st.keyvault_configured {
                    "configured"
                } else {
                    "NOT configured"
                }
            );
            let e = &st.executor;
            if e.reachable {
                let link = match (&e.attested_link, &e.link_measurement) {
                    (true, Some(m)) if r.keyvault.executor_measurements.is_empty() => {
                        format!("attested link, measurement {}", esc(m))
                    }
                    (true, Some(m)) => {
                        let allowed = r
                            .keyvault
                            .executor_measurements
                            .iter()
                            .any(|x| x.eq_ignore_ascii_case(m));
                        format!(
                            "attested link, measurement {}{}",
                            esc(m),
                            if allowed {
                                " (on keyvault's allowlist)"
                            } else {
                                " (NOT on keyvault's allowlist)"
                            }
                        )
                    }
                    (true, None) => "attested link not made yet".to_owned(),
                    (false, _) => "no attested link".to_owned(),
                };
                println!(
                    "  {} executor   {} warm workers ({} started, {} retired); filesystem {}; {link}  [the gateway's word]",
                    mark(true),
                    e.workers,
                    e.workers_spawned,
                    e.workers_retired,
                    if e.filesystem_isolated {
                        "isolated"
                    } else {
                        "NOT isolated"
                    },
                );
            } else {
                println!(
                    "  {} executor   {}  [the gateway's word]",
                    mark(false),
                    esc(e.error.as_deref().unwrap_or("unreachable"))
                );
            }
        }
        None => println!("  {} gateway    not answering", mark(r.gateway_healthy)),
    }
    let k = &r.keyvault;
    if k.verified {
        println!(
            "  {} keyvault   {} — measurement {}, evidence {} s old  [verified here]",
            mark(true),
            k.tee.as_deref().unwrap_or("?"),
            k.measurement.as_deref().unwrap_or("?"),
            k.evidence_age_secs.unwrap_or_default()
        );
        println!(
            "               executor builds it allows: {}",
            k.executor_measurements.join(", ")
        );
        println!("               fleet keys: {}", k.fleet_keys.join("; "));
        println!("               admins: {}", k.admins);
    } else {
        println!(
            "  {} keyvault   {}",
            mark(false),
            esc(k.error.as_deref().unwrap_or("not verified"))
        );
    }
}
