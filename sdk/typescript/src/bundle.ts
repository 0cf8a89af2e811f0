// Checking keyvault's attestation bundle before trusting any key in it (docs/SEALED.md).

import { type Bundle, type FleetKey, bundleReportData, fromHex, sha256, toHex } from "./wire.js";
import { verifyEvidence } from "./verify.js";

/** What the client accepts (`cloister trust`). */
export interface TrustSettings {
  /** Platform root fingerprints (hex SHA-256). */
  roots: string[];
  /** keyvault measurements (hex). */
  keyvaultMeasurements: string[];
  /** Executor measurements the client lets read its inputs; empty: any keyvault allows. */
  executorMeasurements: string[];
  /** Maximum age of keyvault's evidence, seconds. */
  maxBundleAgeSecs: number;
}

/** A bundle whose evidence checked out. */
export interface TrustedKeyvault {
  teeLabel: string;
  measurement: string;
  rootFingerprint: string;
  /** keyvault's instance key (hex): the platform signed requests name. */
  instanceKey: string;
  registryDigest: string;
  executorMeasurements: string[];
  /** Fleet keys valid at verification time, newest epoch first. */
  fleetKeys: FleetKey[];
  /** Evidence production time (Unix seconds). */
  time: number;
}

/** Why a bundle is refused. */
export class BundleError extends Error {}

const has = (list: string[], v: string) => list.some((x) => x.trim().toLowerCase() === v.toLowerCase());

/** Verifies `bundle` at `now` (Unix seconds) against `trust`. */
export function verifyBundle(bundle: Bundle, trust: TrustSettings, now: number): TrustedKeyvault {
  let ev;
  try {
    ev = verifyEvidence(bundle.tee, bundle.keyvault.evidence, trust.roots, now);
  } catch (e) {
    throw new BundleError(`keyvault's evidence: ${(e as Error).message}`);
  }
  // Sim evidence names its role; a hardware report does not, and keyvault's measurement
  // (checked next) is what tells it from an executor's.
  if (bundle.tee === "sim" && ev.role !== "keyvault") throw new BundleError(`the evidence is for role ${ev.role}`);
  // Hardware evidence names no role: keyvault's and the executors' builds must differ, or an
  // executor's report could stand in for keyvault's.
  if (has(bundle.executorMeasurements, ev.measurement)) {
    throw new BundleError(`measurement ${ev.measurement} is both keyvault's and an executor's`);
  }
  if (!has(trust.keyvaultMeasurements, ev.measurement)) {
    throw new BundleError(`keyvault runs measurement ${ev.measurement}, which is not trusted`);
  }
  const age = now - ev.timestamp;
  if (age > trust.maxBundleAgeSecs) throw new BundleError(`keyvault's evidence is ${age} s old`);
  for (const k of bundle.keyvault.fleetKeys) {
    if (k.keyId !== toHex(sha256(fromHex(k.publicKey)).slice(0, 8))) {
      throw new BundleError(`fleet key id ${k.keyId} is not its key's`);
    }
  }
  if (toHex(bundleReportData(bundle)) !== toHex(ev.reportData)) {
    throw new BundleError("the bundle's keys or allowlist are not the ones keyvault's evidence binds");
  }
  if (trust.executorMeasurements.length > 0) {
    const other = bundle.executorMeasurements.find((m) => !has(trust.executorMeasurements, m));
    if (other) throw new BundleError(`keyvault's policy lets executor build ${other} read sealed inputs`);
  }
  return {
    teeLabel: bundle.teeLabel,
    measurement: ev.measurement,
    rootFingerprint: ev.rootFingerprint,
    instanceKey: bundle.keyvault.auditPublicKey.toLowerCase(),
    registryDigest: bundle.keyvault.registryDigest.toLowerCase(),
    executorMeasurements: [...bundle.executorMeasurements],
    fleetKeys: bundle.keyvault.fleetKeys
      .filter((k) => k.notBefore <= now && now < k.notAfter)
      .sort((a, b) => b.epoch - a.epoch),
    time: ev.timestamp,
  };
}
