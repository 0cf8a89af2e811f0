// The parts of an X.509 certificate that chain validation needs and Node's X509Certificate
// does not expose: the signature algorithm, basicConstraints with its path length, keyUsage
// and which extensions are critical. Parsed by @peculiar/asn1-x509 (a maintained ASN.1
// schema for RFC 5280); signatures are still verified by Node (OpenSSL). The rules mirror
// cloister-attest's `x509::chain` so both SDKs accept the same chains.

import { AsnConvert } from "@peculiar/asn1-schema";
import {
  BasicConstraints, Certificate, KeyUsage, KeyUsageFlags, id_ce_basicConstraints, id_ce_keyUsage,
} from "@peculiar/asn1-x509";
import { EvidenceError } from "./evidence.js";

/** Critical extensions a chain may carry (as in cloister-attest); any other refuses it. */
const UNDERSTOOD_CRITICAL = new Set([
  id_ce_basicConstraints,
  id_ce_keyUsage,
  "2.5.29.37", // extKeyUsage
  "2.5.29.17", // subjectAltName
]);

/** Certificate signature algorithms a chain may use: ECDSA with SHA-256 or SHA-384, the ones
 * AWS, AMD and Intel sign attestation chains with. */
const ALLOWED_SIGNATURES: ReadonlyMap<string, string> = new Map([
  ["1.2.840.10045.4.3.2", "ecdsa-with-SHA256"],
  ["1.2.840.10045.4.3.3", "ecdsa-with-SHA384"],
]);

/** What chain validation reads from one certificate. */
export interface CertificateProfile {
  /** Subject, for error messages. */
  subject: string;
  /** OID of the algorithm the issuer signed this certificate with. */
  signatureAlgorithm: string;
  /** `null`: not a CA. Otherwise the path length constraint, `null` when unbounded. */
  ca: { pathLen: number | null } | null;
  /** keyUsage bits, `null` when the extension is absent (every use allowed). */
  keyUsage: number | null;
  /** OIDs of the critical extensions. */
  critical: string[];
}

/** Parses the chain-relevant parts of a DER certificate. */
export function certificateProfile(der: Uint8Array, subject: string): CertificateProfile {
  let cert: Certificate;
  try {
    cert = AsnConvert.parse(der, Certificate);
  } catch (e) {
    throw new EvidenceError(`\`${subject}\` is not an X.509 certificate: ${(e as Error).message}`);
  }
  const tbs = cert.tbsCertificate;
  if (tbs.signature.algorithm !== cert.signatureAlgorithm.algorithm) {
    throw new EvidenceError(`\`${subject}\` names two different signature algorithms`);
  }
  const extensions = tbs.extensions ?? [];
  const seen = new Set<string>();
  let ca: CertificateProfile["ca"] = null;
  let keyUsage: number | null = null;
  for (const ext of extensions) {
    if (seen.has(ext.extnID)) throw new EvidenceError(`\`${subject}\` repeats extension ${ext.extnID}`);
    seen.add(ext.extnID);
    try {
      if (ext.extnID === id_ce_basicConstraints) {
        const bc = AsnConvert.parse(ext.extnValue, BasicConstraints);
        ca = bc.cA ? { pathLen: bc.pathLenConstraint ?? null } : null;
      } else if (ext.extnID === id_ce_keyUsage) {
        keyUsage = AsnConvert.parse(ext.extnValue, KeyUsage).toNumber();
      }
    } catch (e) {
      throw new EvidenceError(`\`${subject}\` has a malformed extension ${ext.extnID}: ${(e as Error).message}`);
    }
  }
  return {
    subject,
    signatureAlgorithm: cert.signatureAlgorithm.algorithm,
    ca,
    keyUsage,
    critical: extensions.filter((e) => e.critical).map((e) => e.extnID),
  };
}

/** Checks what a signature check alone does not, for one certificate of a chain: it uses an
 * allowed signature algorithm and carries no critical extension this SDK does not know. */
export function checkCertificate(cert: CertificateProfile): void {
  if (!ALLOWED_SIGNATURES.has(cert.signatureAlgorithm)) {
    throw new EvidenceError(
      `\`${cert.subject}\` is signed with ${cert.signatureAlgorithm}, not ${[...ALLOWED_SIGNATURES.values()].join(" or ")}`,
    );
  }
  const unknown = cert.critical.find((oid) => !UNDERSTOOD_CRITICAL.has(oid));
  if (unknown !== undefined) {
    throw new EvidenceError(`\`${cert.subject}\` has an unknown critical extension ${unknown}`);
  }
}

/** Checks that `issuer` may issue a certificate with `below` intermediate CAs between it and
 * the leaf (0 when it issues the leaf): it is a CA, its path length constraint admits them and
 * its keyUsage, when present, allows certificate signing. */
export function checkIssuer(issuer: CertificateProfile, below: number): void {
  if (issuer.ca === null) throw new EvidenceError(`\`${issuer.subject}\` signs a certificate but is not a CA`);
  if (issuer.ca.pathLen !== null && below > issuer.ca.pathLen) {
    throw new EvidenceError(
      `\`${issuer.subject}\` allows ${issuer.ca.pathLen} intermediate CA(s) below it, the chain has ${below}`,
    );
  }
  if (issuer.keyUsage !== null && (issuer.keyUsage & KeyUsageFlags.keyCertSign) === 0) {
    throw new EvidenceError(`keyUsage of \`${issuer.subject}\` does not allow certificate signing`);
  }
}
