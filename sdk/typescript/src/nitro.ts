// AWS Nitro Enclaves attestation documents (cloister-attest `nitro`, docs/ATTESTATION.md): a
// COSE_Sign1 (ES384) whose CBOR payload carries PCRs, the signing certificate and its CA
// bundle. Verified as AWS specifies: the chain leaf → cabundle (reversed) → a pinned AWS root,
// every certificate valid at the verification time, then the ES384 signature with the leaf's
// key. Signatures and validity are checked by Node (OpenSSL); the signature algorithm, CA and
// path length constraints, keyUsage and critical extensions by ./x509.ts (cloister-attest's
// rules); CBOR is cborg's.

import { X509Certificate, createHash, verify as cryptoVerify } from "node:crypto";
import { decode, encode } from "cborg";
import { EvidenceError, type VerifiedEvidence } from "./evidence.js";
import { toHex } from "./wire.js";
import { type CertificateProfile, certificateProfile, checkCertificate, checkIssuer } from "./x509.js";

/** SHA-256 (hex) of AWS's Nitro Enclaves root G1 (DER), the root Nitro evidence chains to. */
export const AWS_NITRO_ROOT_G1 = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b";

const ES384 = -35;
const MAX_FUTURE_SKEW_SECS = 60;

/** A verified Nitro document's own fields, beyond the common ones. */
export interface VerifiedNitro extends VerifiedEvidence {
  /** PCRs by index, hex. */
  pcrs: Map<number, string>;
  /** PCR0, PCR1 and PCR2 all zero: an enclave started in debug mode (its memory is readable). */
  debug: boolean;
  moduleId: string;
}

/** A byte-string field: required ones of 1 to `max` bytes, optional ones (absent, null or
 * bytes) of at most `max` (cloister-attest's rules). */
function bytesField(m: Map<unknown, unknown>, name: string, max: number, optional = false): Uint8Array | null {
  const v = m.get(name);
  if ((v === undefined || v === null) && optional) return null;
  const min = optional ? 0 : 1;
  if (!(v instanceof Uint8Array) || v.length < min || v.length > max) {
    throw new EvidenceError(`Nitro document: \`${name}\` must be ${min} to ${max} bytes`);
  }
  return v;
}

function decodeCbor(bytes: Uint8Array, what: string): unknown {
  const tags: ((x: unknown) => unknown)[] = [];
  tags[18] = (x) => x; // COSE_Sign1 may come tagged
  try {
    return decode(bytes, { tags, useMaps: true, rejectDuplicateMapKeys: true });
  } catch (e) {
    throw new EvidenceError(`${what} is not CBOR: ${(e as Error).message}`);
  }
}

function subjectOf(cert: X509Certificate): string {
  return cert.subject.replace(/\n/g, ", ");
}

function certificate(der: Uint8Array, what: string): X509Certificate {
  try {
    return new X509Certificate(Buffer.from(der));
  } catch (e) {
    throw new EvidenceError(`Nitro document: ${what} is not an X.509 certificate: ${(e as Error).message}`);
  }
}

/** Verifies a Nitro attestation document against the pinned root fingerprints (hex SHA-256
 * of the DER) at `at` (Unix seconds). `measurement` is PCR0 and `reportData` is `user_data`
 * (the report data a Cloister attester binds there), empty when the document has none. Debug
 * enclaves verify (their `debug` flag is set): refusing them is the caller's policy. */
export function verifyNitroEvidence(bytes: Uint8Array, pinnedRoots: string[], at: number): VerifiedNitro {
  const sign1 = decodeCbor(bytes, "evidence");
  if (!Array.isArray(sign1) || sign1.length !== 4) throw new EvidenceError("not a COSE_Sign1");
  const [protectedBytes, , payload, signature] = sign1 as [unknown, unknown, unknown, unknown];
  if (!(protectedBytes instanceof Uint8Array) || !(payload instanceof Uint8Array) || !(signature instanceof Uint8Array)) {
    throw new EvidenceError("malformed COSE_Sign1");
  }
  const header = decodeCbor(protectedBytes, "the protected header");
  if (!(header instanceof Map) || header.get(1) !== ES384) throw new EvidenceError("COSE algorithm is not ES384");
  const doc = decodeCbor(payload, "the payload");
  if (!(doc instanceof Map)) throw new EvidenceError("Nitro document: the payload is not a map");

  const moduleId = doc.get("module_id");
  if (typeof moduleId !== "string" || moduleId.length === 0) throw new EvidenceError("Nitro document: `module_id` is missing");
  if (doc.get("digest") !== "SHA384") throw new EvidenceError("Nitro document: `digest` is not SHA384");
  const ts = doc.get("timestamp");
  if (typeof ts !== "number" || !Number.isSafeInteger(ts) || ts <= 0) {
    throw new EvidenceError("Nitro document: `timestamp` is missing");
  }
  const pcrMap = doc.get("pcrs");
  if (!(pcrMap instanceof Map) || pcrMap.size === 0 || pcrMap.size > 32) {
    throw new EvidenceError("Nitro document: `pcrs` must be a map of 1 to 32 entries");
  }
  const pcrs = new Map<number, string>();
  for (const [k, v] of pcrMap) {
    if (typeof k !== "number" || !Number.isInteger(k) || k < 0 || k > 31) {
      throw new EvidenceError("Nitro document: a PCR index is not 0..31");
    }
    if (!(v instanceof Uint8Array) || ![32, 48, 64].includes(v.length)) {
      throw new EvidenceError(`Nitro document: PCR${k} is not 32, 48 or 64 bytes`);
    }
    pcrs.set(k, toHex(v));
  }
  const pcr0 = pcrs.get(0);
  if (pcr0 === undefined) throw new EvidenceError("Nitro document: PCR0 is missing");
  const leafDer = bytesField(doc, "certificate", 1024) as Uint8Array;
  const bundle = doc.get("cabundle");
  if (!Array.isArray(bundle) || bundle.length === 0) throw new EvidenceError("Nitro document: `cabundle` is empty");
  const caDers = bundle.map((c, i) => {
    if (!(c instanceof Uint8Array) || c.length === 0 || c.length > 1024) {
      throw new EvidenceError(`Nitro document: cabundle[${i}] must be 1 to 1024 bytes`);
    }
    return c;
  });
  const userData = bytesField(doc, "user_data", 512, true);
  bytesField(doc, "nonce", 512, true);
  bytesField(doc, "public_key", 1024, true);

  // leaf, then the bundle from the intermediate nearest the leaf up to the root.
  const ders = [leafDer, ...caDers.slice().reverse()];
  const path = ders.map((d, i) => certificate(d, i === 0 ? "the certificate" : `cabundle entry ${ders.length - 1 - i}`));
  const root = path[path.length - 1] as X509Certificate;
  const rootFingerprint = createHash("sha256").update(root.raw).digest("hex");
  if (!pinnedRoots.some((r) => r.trim().toLowerCase() === rootFingerprint)) {
    throw new EvidenceError(`evidence chains to root ${rootFingerprint}, which is not pinned`);
  }
  const profiles = ders.map((d, i) => certificateProfile(d, subjectOf(path[i] as X509Certificate)));
  let validUntil = Number.POSITIVE_INFINITY;
  for (let i = 0; i < path.length; i++) {
    const cert = path[i] as X509Certificate;
    const from = Date.parse(cert.validFrom) / 1000;
    const to = Date.parse(cert.validTo) / 1000;
    if (!(from <= at && at <= to)) {
      throw new EvidenceError(`certificate ${subjectOf(cert)} is not valid at that time`);
    }
    validUntil = Math.min(validUntil, to);
    const issuer = (path[i + 1] ?? cert) as X509Certificate;
    checkCertificate(profiles[i] as CertificateProfile);
    // The issuer of certificate i has i intermediate CAs below it (the leaf is not one).
    if (i + 1 < path.length) checkIssuer(profiles[i + 1] as CertificateProfile, i);
    if (!cert.checkIssued(issuer) || !cert.verify(issuer.publicKey)) {
      throw new EvidenceError(`certificate ${subjectOf(cert)} is not signed by its issuer`);
    }
  }
  if (signature.length !== 96) throw new EvidenceError("ES384 signature is not 96 bytes");
  const tbs = encode(["Signature1", protectedBytes, new Uint8Array(0), payload]);
  const leaf = path[0] as X509Certificate;
  if (!cryptoVerify("sha384", tbs, { key: leaf.publicKey, dsaEncoding: "ieee-p1363" }, signature)) {
    throw new EvidenceError("the evidence signature does not verify");
  }
  const timestamp = Math.floor(ts / 1000);
  if (timestamp > at + MAX_FUTURE_SKEW_SECS) throw new EvidenceError("evidence is dated after the verification time");
  const zero = (i: number) => /^0*$/.test(pcrs.get(i) ?? "");
  return {
    role: "",
    measurement: pcr0,
    reportData: userData ?? new Uint8Array(0),
    timestamp,
    rootFingerprint,
    validUntil,
    pcrs,
    debug: zero(0) && zero(1) && zero(2),
    moduleId,
  };
}
