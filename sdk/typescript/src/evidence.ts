// Simulated-TEE evidence (cloister-attest `sim`): a tagged COSE_Sign1 (ES384) whose CBOR
// payload names the role, measurement, report data, time and the platform root (DER) that
// signed it. Verified against a pinned root fingerprint, at a given time.

import { X509Certificate, createHash, verify as cryptoVerify } from "node:crypto";
import { decode, encode } from "cborg";
import { toHex } from "./wire.js";

/** Evidence whose signature, root and time checked out. */
export interface VerifiedEvidence {
  role: string;
  measurement: string;
  reportData: Uint8Array;
  /** Production time, Unix seconds. */
  timestamp: number;
  /** SHA-256 (hex) of the root that signed it. */
  rootFingerprint: string;
  /** Unix seconds after which the root certificate is no longer valid. */
  validUntil: number;
}

/** Why evidence is not accepted. */
export class EvidenceError extends Error {}

const MAX_FUTURE_SKEW_SECS = 60;
const ES384 = -35;

function field(m: Map<unknown, unknown> | Record<string, unknown>, k: string): unknown {
  return m instanceof Map ? m.get(k) : (m as Record<string, unknown>)[k];
}

/** Verifies sim evidence (base64) against `pinnedRoot` (hex SHA-256 of the root DER) at `at`. */
export function verifySimEvidence(b64: string, pinnedRoot: string, at: number): VerifiedEvidence {
  const bytes = new Uint8Array(Buffer.from(b64, "base64"));
  const tags: ((x: unknown) => unknown)[] = [];
  tags[18] = (x) => x;
  let sign1: unknown;
  try {
    sign1 = decode(bytes, { tags, useMaps: true });
  } catch (e) {
    throw new EvidenceError(`evidence is not CBOR: ${(e as Error).message}`);
  }
  if (!Array.isArray(sign1) || sign1.length !== 4) throw new EvidenceError("not a COSE_Sign1");
  const [protectedBytes, , payload, signature] = sign1 as [Uint8Array, unknown, Uint8Array, Uint8Array];
  if (!(protectedBytes instanceof Uint8Array) || !(payload instanceof Uint8Array) || !(signature instanceof Uint8Array)) {
    throw new EvidenceError("malformed COSE_Sign1");
  }
  const header = decode(protectedBytes, { useMaps: true }) as Map<number, unknown>;
  if (header.get(1) !== ES384) throw new EvidenceError("COSE algorithm is not ES384");
  const claims = decode(payload, { useMaps: true }) as Map<string, unknown>;
  const role = field(claims, "role");
  const measurement = field(claims, "measurement");
  const reportData = field(claims, "report_data");
  const ts = field(claims, "timestamp_ms");
  const cert = field(claims, "platform_cert");
  if (field(claims, "tee") !== "sim" || typeof role !== "string" || !(measurement instanceof Uint8Array) ||
      !(reportData instanceof Uint8Array) || reportData.length !== 64 || typeof ts !== "number" ||
      !(cert instanceof Uint8Array)) {
    throw new EvidenceError("sim evidence fields are missing or mistyped");
  }
  const fingerprint = createHash("sha256").update(cert).digest("hex");
  if (fingerprint !== pinnedRoot.trim().toLowerCase()) {
    throw new EvidenceError(`evidence chains to root ${fingerprint}, not the pinned ${pinnedRoot}`);
  }
  const x509 = new X509Certificate(Buffer.from(cert));
  const from = Date.parse(x509.validFrom) / 1000;
  const to = Date.parse(x509.validTo) / 1000;
  if (!(from <= at && at <= to)) throw new EvidenceError("the platform root is not valid at that time");
  if (signature.length !== 96) throw new EvidenceError("ES384 signature is not 96 bytes");
  const tbs = encode(["Signature1", protectedBytes, new Uint8Array(0), payload]);
  const ok = cryptoVerify("sha384", tbs, { key: x509.publicKey, dsaEncoding: "ieee-p1363" }, signature);
  if (!ok) throw new EvidenceError("the evidence signature does not verify");
  const timestamp = Math.floor(ts / 1000);
  if (timestamp > at + MAX_FUTURE_SKEW_SECS) throw new EvidenceError("evidence is dated after the verification time");
  return { role, measurement: toHex(measurement), reportData, timestamp, rootFingerprint: fingerprint, validUntil: to };
}
