// One entry point for the evidence kinds this SDK checks in JavaScript: `sim` (the labelled
// simulated TEE) and `nitro` (AWS Nitro Enclaves). SEV-SNP and TDX evidence needs AMD's and
// Intel's collateral, which this SDK does not fetch: bundles from those platforms are refused.

import { EvidenceError, type VerifiedEvidence, verifySimEvidence } from "./evidence.js";
import { verifyNitroEvidence } from "./nitro.js";

/** The TEE kinds whose evidence this SDK verifies. */
export const SUPPORTED_TEES = ["sim", "nitro"] as const;

/** Verifies `b64` evidence of kind `tee` at `at` (Unix seconds) against any of `roots` (hex
 * SHA-256 of a root certificate). A Nitro enclave in debug mode is refused: the host can read
 * its memory. */
export function verifyEvidence(tee: string, b64: string, roots: string[], at: number): VerifiedEvidence {
  if (roots.length === 0) throw new EvidenceError("no platform root is trusted");
  switch (tee) {
    case "sim": {
      let last: unknown = null;
      for (const r of roots) {
        try {
          return verifySimEvidence(b64, r, at);
        } catch (e) {
          last = e;
        }
      }
      throw last;
    }
    case "nitro": {
      const ev = verifyNitroEvidence(new Uint8Array(Buffer.from(b64, "base64")), roots, at);
      if (ev.debug) throw new EvidenceError("the Nitro enclave runs in debug mode (PCR0-2 are zero): its memory is readable");
      return ev;
    }
    default:
      throw new EvidenceError(`this SDK verifies ${SUPPORTED_TEES.join(" and ")} evidence, not ${tee}`);
  }
}
