// Verifying receipts (docs/SEALED.md#receipts): the signer's evidence at the receipt's time,
// an allowed executor build, the key bound, the signature; then that it names this call.

import { type KeyObject, createPublicKey, verify as cryptoVerify } from "node:crypto";
import { verifyEvidence } from "./verify.js";
import { type Receipt, fromHex, receiptKeyReportData, receiptMessage, toHex } from "./wire.js";

/** Why a receipt is refused. */
export class ReceiptError extends Error {}

const ED25519_SPKI = Buffer.from("302a300506032b6570032100", "hex");

/** A signer whose evidence verified, and the span of receipt times it is valid for: from
 * the earliest time it verified at to its root's expiry (one interval), as the Rust SDK. */
interface Signer {
  /** The evidence that certified it (compared whole on every receipt). */
  evidence: string;
  key: KeyObject;
  measurement: string;
  from: number;
  until: number;
}

/** Verified signers, keyed by TEE, key and root (bounded; cleared when full). */
const signers = new Map<string, Signer>();
const MAX_SIGNERS = 256;
/** The last signer met: the root it was verified under, its key (hex), its TEE. */
let last: { root: string; publicKey: string; tee: string } | undefined;

/** The receipt key (hex) of the last signer verified under `rootFingerprint`: sent as
 * `receiptSigner`, it lets that executor leave its evidence (about 5 KB) out of the receipt.
 * Only while that signer is still cached and verified for now, so a receipt without evidence
 * is always one this client can check. */
export function knownSigner(rootFingerprint: string): string | undefined {
  const root = rootFingerprint.trim().toLowerCase();
  if (!last || last.root !== root) return undefined;
  const s = signers.get(JSON.stringify([last.tee, last.publicKey, root]));
  const now = Math.floor(Date.now() / 1000);
  return s && s.from <= now + 60 && now < s.until ? last.publicKey : undefined;
}

/** Verifies `r` against the pinned root and the executor builds keyvault allows, and returns
 * it whole (with the signer's evidence filled back in when the answer left it out). After an
 * executor's first receipt, its signer is cached and a receipt costs one Ed25519 check. */
export function verifyReceipt(r: Receipt, rootFingerprint: string, executorMeasurements: string[]): Receipt {
  const root = rootFingerprint.trim().toLowerCase();
  const id = JSON.stringify([r.signer.tee, r.signer.publicKey, root]);
  let signer = signers.get(id);
  const leftOut = r.signer.evidence === undefined || r.signer.evidence === "";
  const covers = (s: Signer) => (leftOut || s.evidence === r.signer.evidence) && s.from <= r.body.time && r.body.time <= s.until;
  if (!signer || !covers(signer)) {
    if (leftOut) {
      throw new ReceiptError("the receipt leaves out its signer's evidence and this client has not verified that signer for the receipt's time");
    }
    const fresh = verifySigner(r, rootFingerprint);
    if (signer && signer.evidence === fresh.evidence) {
      fresh.from = Math.min(fresh.from, signer.from);
      fresh.until = Math.max(fresh.until, signer.until);
    }
    if (signers.size >= MAX_SIGNERS) signers.clear();
    signers.set(id, fresh);
    signer = fresh;
  }
  // The allowlist is checked on every receipt (the cache holds what the evidence says).
  const m = signer.measurement;
  if (!executorMeasurements.some((x) => x.toLowerCase() === m)) {
    throw new ReceiptError(`the signer runs executor build ${m}, which keyvault does not allow`);
  }
  const sig = fromHex(r.signature);
  if (!cryptoVerify(null, receiptMessage(r.body), signer.key, sig)) {
    throw new ReceiptError("the receipt's signature does not verify (a byte was changed)");
  }
  last = { root, publicKey: r.signer.publicKey, tee: r.signer.tee };
  return leftOut ? { ...r, signer: { ...r.signer, evidence: signer.evidence } } : r;
}

function verifySigner(r: Receipt, rootFingerprint: string): Signer {
  let ev;
  try {
    ev = verifyEvidence(r.signer.tee, r.signer.evidence ?? "", [rootFingerprint], r.body.time);
  } catch (e) {
    throw new ReceiptError(`the signer's evidence at the receipt's time: ${(e as Error).message}`);
  }
  if (r.signer.tee === "sim" && ev.role !== "executor") {
    throw new ReceiptError(`the signer's evidence is for role ${ev.role}`);
  }
  const pk = fromHex(r.signer.publicKey);
  if (pk.length !== 32) throw new ReceiptError("publicKey is not an Ed25519 key");
  if (toHex(receiptKeyReportData(pk)) !== toHex(ev.reportData)) {
    throw new ReceiptError("the signer's evidence does not certify the key that signed");
  }
  const key = createPublicKey({ key: Buffer.concat([ED25519_SPKI, pk]), format: "der", type: "spki" });
  return { evidence: r.signer.evidence ?? "", key, measurement: ev.measurement, from: r.body.time, until: ev.validUntil };
}
