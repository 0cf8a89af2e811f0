// The byte layouts of docs/SEALED.md, defined as cloister_types::{sealed, receipt, binding}
// define them, so the Rust and TypeScript sides agree byte for byte.

import { createHash } from "node:crypto";

const enc = new TextEncoder();

/** Bytes of a UTF-8 string. */
export function utf8(s: string): Uint8Array {
  return enc.encode(s);
}

/** Lowercase hex of `b`. */
export function toHex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}

/** Bytes of a hex string; throws on anything but an even number of hex digits. */
export function fromHex(s: string): Uint8Array {
  if (!/^([0-9a-fA-F]{2})*$/.test(s)) throw new Error(`not hex: ${s.slice(0, 16)}…`);
  return new Uint8Array(Buffer.from(s, "hex"));
}

/** 8-byte big-endian of a non-negative safe integer (or a bigint); throws on anything else. */
export function u64(n: number | bigint): Uint8Array {
  const out = new Uint8Array(8);
  const view = new DataView(out.buffer);
  if (typeof n === "bigint") {
    if (n < 0n || n >= 1n << 64n) throw new RangeError(`not a u64: ${n}`);
    view.setBigUint64(0, n);
  } else {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`not a u64: ${n}`);
    view.setUint32(0, Math.floor(n / 2 ** 32));
    view.setUint32(4, n >>> 0);
  }
  return out;
}

/** Fields each as a 4-byte big-endian length and its bytes (`cloister_crypto::Aad` layout),
 * strings as UTF-8, written straight into one buffer (receipts are checked on every call). */
export function lp32(fields: (Uint8Array | string)[]): Uint8Array {
  let total = 0;
  for (const f of fields) total += 4 + (typeof f === "string" ? Buffer.byteLength(f, "utf8") : f.length);
  const out = Buffer.alloc(total);
  let at = 0;
  for (const f of fields) {
    const len = typeof f === "string" ? out.write(f, at + 4, "utf8") : (out.set(f, at + 4), f.length);
    out.writeUInt32BE(len, at);
    at += 4 + len;
  }
  return out;
}

/** `bytes` with an 8-byte big-endian length in front (the bundle and registry layouts). */
function lp64(bytes: Uint8Array): Uint8Array {
  return Buffer.concat([u64(bytes.length), bytes]);
}

export const SUITE_ID = "hpke-0020-0001-0002";
export const INFO_DOMAIN = "cloister/sealed-invoke/v1";
export const RESPONSE_EXPORT_CONTEXT = utf8("cloister/sealed-invoke/response-key/v1");
export const RESPONSE_AAD_LABEL = "cloister/sealed-invoke/response/v1";
export const RECEIPT_DOMAIN = "cloister/receipt/v1";
export const RECEIPT_KEY_DOMAIN = "cloister/executor-receipt-key/v1";
export const OUTCOME_OK = "ok";

/** The visible fields of a sealed request (`cloister_types::sealed::SealedInput`). */
export interface SealedInput {
  suite: string;
  keyId: string;
  functionId: string;
  version: number;
  codeHash: string;
  manifestDigest: string;
  requestId: string;
  timestamp: number;
  ciphertext: string;
}

/** The HPKE `info` of a sealed request: every visible field, in order. */
export function sealedInfo(h: Omit<SealedInput, "ciphertext">): Uint8Array {
  return lp32([
    utf8(INFO_DOMAIN),
    utf8(h.suite),
    utf8(h.keyId),
    utf8(h.functionId),
    u64(h.version),
    utf8(h.codeHash),
    utf8(h.manifestDigest),
    utf8(h.requestId),
    u64(h.timestamp),
  ]);
}

/** The associated data of a sealed answer. */
export function responseAad(requestId: string, executionId: string, outcome: string): Uint8Array {
  return lp32([utf8(RESPONSE_AAD_LABEL), utf8(requestId), utf8(executionId), utf8(outcome)]);
}

/** What a receipt states (`cloister_types::receipt::ReceiptBody`). */
export interface ReceiptBody {
  functionId: string;
  version: number;
  codeHash: string;
  manifestDigest: string;
  inputSha256: string;
  outputSha256: string;
  outcome: string;
  executionId: string;
  time: number;
  nonce: string;
  fleetKeyId: string;
  requestId: string;
  /** The signatures keyvault made for the invocation (`context.sign`), in order; absent when
   * none. */
  keyUses?: ReceiptKeyUse[];
  /** The invocation's `fetch` requests by the allowlist entry they matched, in order of first
   * contact; absent when none. */
  egress?: ReceiptEgress[];
}

/** Outbound requests of an invocation under one allowlist entry, as its receipt lists them. */
export interface ReceiptEgress {
  /** The allowlist entry as the signed manifest writes it (`refused`: none matched). */
  origin: string;
  requests: number;
  bytesSent: number;
  bytesReceived: number;
}

/** One signature keyvault made for an invocation, as its receipt lists it. */
export interface ReceiptKeyUse {
  /** The key as the manifest declares it (`NAME` or `FUNCTION/NAME`). */
  key: string;
  version: number;
  algorithm: string;
  hash: string;
  /** Hex SHA-256 of the message. */
  messageSha256: string;
}

/** A signed receipt. */
export interface Receipt {
  body: ReceiptBody;
  signature: string;
  /** `evidence` is absent when the request's `receiptSigner` named this key (the caller
   * verified it before); `verifyReceipt` fills it back in. */
  signer: { tee: string; publicKey: string; evidence?: string };
}

/** The bytes a receipt's signature covers. */
export function receiptMessage(b: ReceiptBody): Uint8Array {
  return lp32([
    RECEIPT_DOMAIN,
    b.functionId,
    u64(b.version),
    b.codeHash,
    b.manifestDigest,
    b.inputSha256,
    b.outputSha256,
    b.outcome,
    b.executionId,
    u64(b.time),
    b.nonce,
    b.fleetKeyId,
    b.requestId,
    // Key uses follow only when there are any: a count, then each use's fields.
    ...(b.keyUses && b.keyUses.length > 0
      ? [u64(b.keyUses.length), ...b.keyUses.flatMap((k) => [k.key, u64(k.version), k.algorithm, k.hash, k.messageSha256])]
      : []),
    // Outbound requests follow only when there are any: a tag, a count, each origin.
    ...(b.egress && b.egress.length > 0
      ? ["egress", u64(b.egress.length), ...b.egress.flatMap((e) => [e.origin, u64(e.requests), u64(e.bytesSent), u64(e.bytesReceived)])]
      : []),
  ]);
}

/** The report data of the evidence certifying receipt key `publicKey`. */
export function receiptKeyReportData(publicKey: Uint8Array): Uint8Array {
  return sha512(lp32([utf8(RECEIPT_KEY_DOMAIN), publicKey]));
}

/** SHA-256. */
export function sha256(b: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(b).digest());
}

/** SHA-512. */
export function sha512(b: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha512").update(b).digest());
}

/** One fleet key as `GET /v1/attestation` lists it. */
export interface FleetKey {
  keyId: string;
  epoch: number;
  publicKey: string;
  suite: string;
  notBefore: number;
  notAfter: number;
}

/** `GET /v1/attestation`. */
export interface Bundle {
  tee: string;
  teeLabel: string;
  keyvault: {
    evidence: string;
    hpkePublicKey: string;
    hpkeSuite: string;
    auditPublicKey: string;
    registryDigest: string;
    admins: string[];
    fleetKeys: FleetKey[];
  };
  executorMeasurements: string[];
  simRootFingerprint?: string;
}

/** The report data keyvault's bundle evidence carries (`bundle_report_data`). */
export function bundleReportData(b: Bundle): Uint8Array {
  const parts: Uint8Array[] = [
    lp64(utf8("cloister/attestation-bundle/v2")),
    lp64(fromHex(b.keyvault.hpkePublicKey)),
    lp64(fromHex(b.keyvault.auditPublicKey)),
    u64(b.executorMeasurements.length),
  ];
  for (const m of b.executorMeasurements) parts.push(lp64(utf8(m)));
  parts.push(lp64(fromHex(b.keyvault.registryDigest)), u64(b.keyvault.fleetKeys.length));
  for (const k of b.keyvault.fleetKeys) {
    parts.push(
      lp64(fromHex(k.keyId)),
      u64(k.epoch),
      lp64(fromHex(k.publicKey)),
      lp64(utf8(k.suite)),
      u64(k.notBefore),
      u64(k.notAfter),
    );
  }
  return sha512(Buffer.concat(parts));
}

/** One identity of `GET /v1/registry`. */
export interface IdentityInfo {
  id: string;
  publicKey: string;
  role: string;
  label: string;
  revoked: boolean;
  compromised: boolean;
  rotatedTo?: string;
  expires?: number;
}

/** `GET /v1/registry`. */
export interface RegistryView {
  identities: IdentityInfo[];
  executorPolicy?: { version: number; policy: string; measurements: string[]; setBy: string };
}

/** The registry digest keyvault's evidence binds (docs/SEALED.md, "Registry digest"). */
export function registryDigest(v: RegistryView): string {
  const h = createHash("sha256");
  h.update(utf8("cloister/registry/v2"));
  const sorted = [...v.identities].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  for (const e of sorted) {
    for (const part of [e.id, e.publicKey, e.role, e.rotatedTo ?? ""]) h.update(lp64(utf8(part)));
    h.update(new Uint8Array([e.compromised ? 2 : e.revoked ? 1 : 0]));
    h.update(u64(e.expires ?? 0));
  }
  if (v.executorPolicy) {
    h.update(utf8("executor-policy"));
    h.update(u64(v.executorPolicy.version));
    h.update(sha256(utf8(v.executorPolicy.policy)));
  }
  return h.digest("hex");
}
