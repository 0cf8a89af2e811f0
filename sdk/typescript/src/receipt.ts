// Verifying receipts (docs/SEALED.md#receipts): the signer's evidence at the receipt's time,
// an allowed executor build, the key bound, the signature; then that it names this call.

import { createPublicKey, verify as cryptoVerify } from "node:crypto";
import { verifySimEvidence } from "./evidence.js";
import { type Receipt, fromHex, receiptKeyReportData, receiptMessage, toHex } from "./wire.js";

/** Why a receipt is refused. */
export class ReceiptError extends Error {}

const ED25519_SPKI = Buffer.from("302a300506032b6570032100", "hex");

/** Verifies `r` against the pinned root and the executor builds keyvault allows. */
export function verifyReceipt(r: Receipt, rootFingerprint: string, executorMeasurements: string[]): void {
  if (r.signer.tee !== "sim") throw new ReceiptError(`this SDK verifies sim receipts; the signer runs ${r.signer.tee}`);
  let ev;
  try {
    ev = verifySimEvidence(r.signer.evidence, rootFingerprint, r.body.time);
  } catch (e) {
    throw new ReceiptError(`the signer's evidence at the receipt's time: ${(e as Error).message}`);
  }
  if (ev.role !== "executor") throw new ReceiptError(`the signer's evidence is for role ${ev.role}`);
  if (!executorMeasurements.some((m) => m.toLowerCase() === ev.measurement)) {
    throw new ReceiptError(`the signer runs executor build ${ev.measurement}, which keyvault does not allow`);
  }
  const pk = fromHex(r.signer.publicKey);
  if (pk.length !== 32) throw new ReceiptError("publicKey is not an Ed25519 key");
  if (toHex(receiptKeyReportData(pk)) !== toHex(ev.reportData)) {
    throw new ReceiptError("the signer's evidence does not certify the key that signed");
  }
  const key = createPublicKey({ key: Buffer.concat([ED25519_SPKI, pk]), format: "der", type: "spki" });
  const sig = fromHex(r.signature);
  if (!cryptoVerify(null, receiptMessage(r.body), key, sig)) {
    throw new ReceiptError("the receipt's signature does not verify (a byte was changed)");
  }
}
