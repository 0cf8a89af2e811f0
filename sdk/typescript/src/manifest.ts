// Checking a version's owner-signed manifest (COSE_Sign1, EdDSA, kid = signer key) against
// keyvault's registry before sealing to it (docs/SEALED.md).

import { createPublicKey, verify as cryptoVerify } from "node:crypto";
import { decode, encode } from "cborg";
import type { Target } from "./sealed.js";
import { type RegistryView, sha256, toHex } from "./wire.js";

/** Why a manifest is refused. */
export class ManifestError extends Error {}

const ED25519_SPKI = Buffer.from("302a300506032b6570032100", "hex");
const EDDSA = -8;

/** `GET /v1/functions/{name}/manifest`. */
export interface SignedManifest {
  functionId: string;
  version: number;
  manifest: string;
}

/** Verifies `signed` as function `name`'s manifest on platform `instanceKey` (hex), signed
 * by an identity of `registry` (already checked against the bundle's registry digest). */
export function verifyManifest(signed: SignedManifest, registry: RegistryView, instanceKey: string, name: string):
    { target: Target; signer: string } {
  const bytes = new Uint8Array(Buffer.from(signed.manifest, "base64"));
  const tags: ((x: unknown) => unknown)[] = [];
  tags[18] = (x) => x;
  const sign1 = decode(bytes, { tags, useMaps: true }) as unknown[];
  if (!Array.isArray(sign1) || sign1.length !== 4) throw new ManifestError("not a COSE_Sign1");
  const [prot, unprot, payload, sig] = sign1 as [Uint8Array, Map<unknown, unknown>, Uint8Array, Uint8Array];
  if (!(unprot instanceof Map) || unprot.size !== 0) throw new ManifestError("the unprotected header must be empty");
  const header = decode(prot, { useMaps: true }) as Map<number, unknown>;
  const kid = header.get(4);
  if (header.get(1) !== EDDSA || !(kid instanceof Uint8Array) || kid.length !== 32) {
    throw new ManifestError("the manifest must be EdDSA-signed with the signer's key as kid");
  }
  const key = createPublicKey({ key: Buffer.concat([ED25519_SPKI, kid]), format: "der", type: "spki" });
  const tbs = encode(["Signature1", prot, new Uint8Array(0), payload]);
  if (!cryptoVerify(null, tbs, key, sig)) throw new ManifestError("the manifest's signature does not verify");
  const env = decode(payload, { useMaps: true }) as Map<string, unknown>;
  if (env.get("domain") !== "cloister/deploy/v1") throw new ManifestError("not a deploy manifest");
  if (String(env.get("platform")).toLowerCase() !== instanceKey.toLowerCase()) {
    throw new ManifestError("the manifest is for another platform");
  }
  const body = env.get("body") as Map<string, unknown>;
  const signerId = toHex(sha256(kid).slice(0, 16));
  const who = registry.identities.find((i) => i.id === signerId && i.publicKey.toLowerCase() === toHex(kid));
  if (!who) throw new ManifestError(`the manifest is signed by ${signerId}, not an identity of keyvault's registry`);
  const functionId = body.get("function_id");
  const maySign = who.role === "admin" || who.role === "developer" || (who.role === "machine" && functionId != null);
  if (who.compromised || !maySign) throw new ManifestError(`the manifest's signer ${signerId} cannot vouch for code`);
  if (body.get("name") !== name) throw new ManifestError(`the manifest is for ${String(body.get("name"))}, not ${name}`);
  if (functionId != null && functionId !== signed.functionId) throw new ManifestError("the manifest is another function's");
  const codeHash = body.get("code_hash");
  if (typeof codeHash !== "string") throw new ManifestError("the manifest names no code hash");
  return {
    target: { functionId: signed.functionId, version: signed.version, codeHash, manifestDigest: toHex(sha256(bytes)) },
    signer: signerId,
  };
}
