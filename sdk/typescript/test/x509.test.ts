// Chain rules Node's X509Certificate does not check on its own (path length, critical
// extensions, signature algorithm, keyUsage), on Nitro documents built here: a root pinned by
// the test, intermediates and a leaf made with @peculiar/x509 (a dev dependency), the
// document signed ES384 by the leaf as AWS's are. Real AWS documents are in nitro.test.ts.

import "reflect-metadata";
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, webcrypto } from "node:crypto";
import { encode } from "cborg";
import * as x509 from "@peculiar/x509";
import { EvidenceError, verifyNitroEvidence } from "../src/index.js";

x509.cryptoProvider.set(webcrypto as unknown as Crypto);
const EC = { name: "ECDSA", namedCurve: "P-384" };
const NOW = Math.floor(Date.now() / 1000);
const PCR0 = new Uint8Array(48).fill(7);

interface Node { cert: x509.X509Certificate; keys: CryptoKeyPair; name: string }

interface CertSpec {
  name: string;
  /** `undefined`: not a CA. */
  pathLen?: number | null;
  keyUsage?: x509.KeyUsageFlags;
  hash?: "SHA-256" | "SHA-384" | "SHA-512";
  extra?: x509.Extension[];
}

async function issue(spec: CertSpec, issuer: Node | null): Promise<Node> {
  const keys = (await webcrypto.subtle.generateKey(EC, true, ["sign", "verify"])) as CryptoKeyPair;
  const extensions: x509.Extension[] = [];
  if (spec.pathLen !== undefined) {
    extensions.push(new x509.BasicConstraintsExtension(true, spec.pathLen ?? undefined, true));
  }
  extensions.push(new x509.KeyUsagesExtension(
    spec.keyUsage ?? (spec.pathLen !== undefined ? x509.KeyUsageFlags.keyCertSign : x509.KeyUsageFlags.digitalSignature), true,
  ));
  extensions.push(...(spec.extra ?? []));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: "01" + Buffer.from(spec.name).toString("hex"),
    subject: `CN=${spec.name}`,
    issuer: `CN=${issuer?.name ?? spec.name}`,
    notBefore: new Date((NOW - 3600) * 1000),
    notAfter: new Date((NOW + 3600) * 1000),
    publicKey: keys.publicKey,
    signingKey: (issuer?.keys ?? keys).privateKey,
    signingAlgorithm: { name: "ECDSA", hash: spec.hash ?? "SHA-384" },
    extensions,
  });
  return { cert, keys, name: spec.name };
}

/** Issues `specs` in order (root first, leaf last) and returns a Nitro document signed by the
 * leaf, with the root's fingerprint. */
async function nitroDocument(specs: CertSpec[]): Promise<{ doc: Uint8Array; root: string }> {
  const chain: Node[] = [];
  for (const spec of specs) chain.push(await issue(spec, chain[chain.length - 1] ?? null));
  const leaf = chain[chain.length - 1] as Node;
  const der = (n: Node) => new Uint8Array(n.cert.rawData);
  const payload = encode(new Map<string, unknown>([
    ["module_id", "i-test-enc0"],
    ["digest", "SHA384"],
    ["timestamp", NOW * 1000],
    ["pcrs", new Map([[0, PCR0], [1, new Uint8Array(48)], [2, new Uint8Array(48)]])],
    ["certificate", der(leaf)],
    ["cabundle", chain.slice(0, -1).map(der)],
    ["user_data", null],
  ]));
  const protectedBytes = encode(new Map([[1, -35]]));
  const tbs = encode(["Signature1", protectedBytes, new Uint8Array(0), payload]);
  const signature = new Uint8Array(await webcrypto.subtle.sign({ name: "ECDSA", hash: "SHA-384" }, leaf.keys.privateKey, tbs));
  const root = createHash("sha256").update(der(chain[0] as Node)).digest("hex");
  return { doc: encode([protectedBytes, new Map(), payload, signature]), root };
}

const ROOT: CertSpec = { name: "test root", pathLen: null };
const LEAF: CertSpec = { name: "test leaf" };

test("a chain built like AWS's verifies (the documents below differ from it in one rule each)", async () => {
  const { doc, root } = await nitroDocument([ROOT, { name: "zonal", pathLen: 1 }, { name: "instance", pathLen: 0 }, LEAF]);
  const ev = verifyNitroEvidence(doc, [root], NOW);
  assert.equal(ev.measurement, Buffer.from(PCR0).toString("hex"));
  // An intermediate with no path length constraint at all admits any depth.
  const open = await nitroDocument([ROOT, { name: "a", pathLen: null }, { name: "b", pathLen: null }, LEAF]);
  verifyNitroEvidence(open.doc, [open.root], NOW);
});

test("an intermediate below a CA whose path length is 0 is refused", async () => {
  const { doc, root } = await nitroDocument([ROOT, { name: "zonal", pathLen: 0 }, { name: "instance", pathLen: 0 }, LEAF]);
  assert.throws(() => verifyNitroEvidence(doc, [root], NOW), (e: unknown) =>
    e instanceof EvidenceError && /`CN=zonal` allows 0 intermediate CA\(s\) below it, the chain has 1/.test(e.message));
});

test("a certificate with a critical extension this SDK does not know is refused", async () => {
  const unknown = new x509.Extension("1.3.6.1.4.1.55555.1", true, new Uint8Array([5, 0]));
  const { doc, root } = await nitroDocument([ROOT, { name: "zonal", pathLen: 0 }, { ...LEAF, extra: [unknown] }]);
  assert.throws(() => verifyNitroEvidence(doc, [root], NOW), /`CN=test leaf` has an unknown critical extension 1\.3\.6\.1\.4\.1\.55555\.1/);
  // The same extension, not critical, is ignored.
  const known = new x509.Extension("1.3.6.1.4.1.55555.1", false, new Uint8Array([5, 0]));
  const ok = await nitroDocument([ROOT, { name: "zonal", pathLen: 0 }, { ...LEAF, extra: [known] }]);
  verifyNitroEvidence(ok.doc, [ok.root], NOW);
});

test("a certificate signed with an algorithm outside ECDSA SHA-256/384 is refused", async () => {
  const { doc, root } = await nitroDocument([ROOT, { name: "zonal", pathLen: 0, hash: "SHA-512" }, LEAF]);
  assert.throws(() => verifyNitroEvidence(doc, [root], NOW), /`CN=zonal` is signed with 1\.2\.840\.10045\.4\.3\.4/);
  const sha256 = await nitroDocument([ROOT, { name: "zonal", pathLen: 0, hash: "SHA-256" }, LEAF]);
  verifyNitroEvidence(sha256.doc, [sha256.root], NOW);
});

test("a CA whose keyUsage does not allow certificate signing is refused as an issuer", async () => {
  const { doc, root } = await nitroDocument([ROOT, { name: "zonal", pathLen: 0, keyUsage: x509.KeyUsageFlags.digitalSignature }, LEAF]);
  assert.throws(() => verifyNitroEvidence(doc, [root], NOW), /keyUsage of `CN=zonal` does not allow certificate signing/);
});

test("a non-CA certificate that issues the leaf is refused", async () => {
  const { doc, root } = await nitroDocument([ROOT, { name: "zonal", keyUsage: x509.KeyUsageFlags.keyCertSign }, LEAF]);
  assert.throws(() => verifyNitroEvidence(doc, [root], NOW), /`CN=zonal` signs a certificate but is not a CA/);
});
