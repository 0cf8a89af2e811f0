// Nitro evidence in JavaScript, against real documents from AWS hardware
// (crates/cloister-attest/testdata/nitro: provenance and validity windows in its README).

import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { decode, encode } from "cborg";
import {
  AWS_NITRO_ROOT_G1, BundleError, EvidenceError, verifyBundle, verifyEvidence, verifyNitroEvidence, type Bundle,
} from "../src/index.js";

const repo = new URL("../../../../", import.meta.url);
const read = (p: string) => readFileSync(new URL(p, repo));
const PROD = new Uint8Array(read("crates/cloister-attest/testdata/nitro/nitro_evervault_2022-10-13_prod.cbor"));
const DEBUG = new Uint8Array(Buffer.from(read("crates/cloister-attest/testdata/nitro/nitro_evervault_2023-09-18_debug.cbor.b64").toString().trim(), "base64"));
const PROD_AT = Date.parse("2022-10-13T09:00:00Z") / 1000;
const DEBUG_AT = Date.parse("2023-09-18T15:05:00Z") / 1000;
const PCR0 = "f4d48b81a460c9916d1e685119074bf24660afd3e34fae9fca0a0d28d9d5599936332687e6f66fc890ac8cf150142d8b";
const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");

/** PROD with its cabundle rewritten by `f` (the signature no longer matches, but the chain is
 * checked first, so the error names the chain check that refused). */
function withCabundle(f: (cabundle: Uint8Array[], leaf: Uint8Array) => Uint8Array[]): Uint8Array {
  const sign1 = decode(PROD, { useMaps: true }) as unknown[];
  const doc = decode(sign1[2] as Uint8Array, { useMaps: true }) as Map<string, unknown>;
  doc.set("cabundle", f(doc.get("cabundle") as Uint8Array[], doc.get("certificate") as Uint8Array));
  return encode([sign1[0], sign1[1], encode(doc), sign1[3]]);
}

test("the pinned AWS root constant is the fingerprint of the committed AWS root", () => {
  const pem = read("crates/cloister-attest/roots/aws_nitro_root_g1.pem").toString();
  const der = new X509Certificate(pem).raw;
  assert.equal(createHash("sha256").update(der).digest("hex"), AWS_NITRO_ROOT_G1);
});

test("a production document verifies inside its window, with PCR0 as the measurement", () => {
  const ev = verifyNitroEvidence(PROD, [AWS_NITRO_ROOT_G1], PROD_AT);
  assert.equal(ev.measurement, PCR0);
  assert.equal(ev.debug, false);
  assert.equal(ev.moduleId, "i-020b6af9246d90e92-enc0183d09086c24190");
  assert.equal(ev.timestamp, 1665651482);
  assert.equal(ev.reportData.length, 0, "this document binds no user_data");
  assert.equal(ev.validUntil, Date.parse("2022-10-13T11:58:02Z") / 1000);
  assert.equal(ev.rootFingerprint, AWS_NITRO_ROOT_G1);
  // The same through the dispatcher, from base64.
  assert.equal(verifyEvidence("nitro", b64(PROD), [AWS_NITRO_ROOT_G1], PROD_AT).measurement, PCR0);
});

test("outside the chain's window, under another root, or with any byte changed, it is refused", () => {
  for (const at of [Date.parse("2022-10-13T08:57:00Z") / 1000, Date.parse("2022-10-13T12:00:00Z") / 1000]) {
    assert.throws(() => verifyNitroEvidence(PROD, [AWS_NITRO_ROOT_G1], at), /not valid at that time/);
  }
  assert.throws(() => verifyNitroEvidence(PROD, ["00".repeat(32)], PROD_AT), /not pinned/);
  assert.throws(() => verifyEvidence("nitro", b64(PROD), [], PROD_AT), /no platform root/);
  let refused = 0;
  for (let i = 0; i < PROD.length; i += 7) {
    const t = PROD.slice();
    t[i] = (t[i] as number) ^ 0x01;
    assert.throws(() => verifyNitroEvidence(t, [AWS_NITRO_ROOT_G1], PROD_AT), EvidenceError, `byte ${i}`);
    refused++;
  }
  assert.ok(refused > 500);
});

test("a chain that is not leaf → intermediates → pinned root, each issued by a CA, is refused", () => {
  const at = PROD_AT;
  const refuses = (doc: Uint8Array, why: RegExp) => assert.throws(() => verifyNitroEvidence(doc, [AWS_NITRO_ROOT_G1], at), why);
  // Unchanged but re-encoded, only the signature check refuses it: the chain passes.
  refuses(withCabundle((b) => b), /signature does not verify/);
  // An intermediate left out: the next certificate did not issue it.
  refuses(withCabundle((b) => [b[0]!, ...b.slice(2)]), /not signed by its issuer/);
  // The bundle in the wrong order.
  refuses(withCabundle((b) => [b[0]!, ...b.slice(1).reverse()]), /not signed by its issuer/);
  // A non-CA certificate (the leaf itself) as the leaf's issuer.
  refuses(withCabundle((b, leaf) => [...b, leaf]), /is not a CA/);
  // Something else where the root should be.
  refuses(withCabundle((b, leaf) => [leaf, ...b]), /not pinned/);
  // An empty bundle.
  refuses(withCabundle(() => []), /cabundle/);
});

test("a debug-mode enclave verifies as evidence but is refused as a TEE", () => {
  const ev = verifyNitroEvidence(DEBUG, [AWS_NITRO_ROOT_G1], DEBUG_AT);
  assert.equal(ev.debug, true);
  assert.equal(ev.reportData.length, 91);
  assert.throws(() => verifyEvidence("nitro", b64(DEBUG), [AWS_NITRO_ROOT_G1], DEBUG_AT), /debug mode/);
});

test("a Nitro bundle is refused unless its document binds the bundle's keys in user_data", () => {
  const bundle: Bundle = {
    tee: "nitro",
    teeLabel: "AWS Nitro",
    keyvault: {
      evidence: b64(PROD),
      hpkePublicKey: "11".repeat(32),
      hpkeSuite: "hpke-0020-0001-0002",
      auditPublicKey: "22".repeat(32),
      registryDigest: "33".repeat(32),
      admins: [],
      fleetKeys: [],
    },
    executorMeasurements: [],
  };
  const trust = { roots: [AWS_NITRO_ROOT_G1], keyvaultMeasurements: [PCR0], executorMeasurements: [], maxBundleAgeSecs: 300 };
  // Chain, signature, measurement and age pass; the binding does not (no user_data here).
  assert.throws(() => verifyBundle(bundle, trust, PROD_AT), (e: unknown) =>
    e instanceof BundleError && /not the ones keyvault's evidence binds/.test(e.message));
  // Each earlier check refuses on its own.
  assert.throws(() => verifyBundle(bundle, { ...trust, keyvaultMeasurements: ["ab".repeat(48)] }, PROD_AT), /not trusted/);
  assert.throws(() => verifyBundle(bundle, { ...trust, maxBundleAgeSecs: 10 }, PROD_AT), /old/);
  // Hardware evidence names no role: a keyvault build that is also an executor build is refused.
  assert.throws(() => verifyBundle({ ...bundle, executorMeasurements: [PCR0] }, trust, PROD_AT), /both keyvault's and an executor's/);
  assert.throws(() => verifyBundle({ ...bundle, tee: "sev-snp" }, trust, PROD_AT), /verifies sim and nitro evidence, not sev-snp/);
  assert.throws(() => verifyBundle({ ...bundle, tee: "sim" }, trust, PROD_AT), BundleError);
});
