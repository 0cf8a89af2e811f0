// Sealing an invocation to a fleet key and opening the answer (docs/SEALED.md).

import { Aes256Gcm, CipherSuite, HkdfSha256 } from "@hpke/core";
import { DhkemX25519HkdfSha256 } from "@hpke/dhkem-x25519";
import { createDecipheriv, randomBytes } from "node:crypto";
import {
  type FleetKey, OUTCOME_OK, RESPONSE_EXPORT_CONTEXT, SUITE_ID, type SealedInput,
  fromHex, responseAad, sealedInfo, toHex, utf8,
} from "./wire.js";

/** What the caller agrees to run (from a verified manifest). */
export interface Target {
  functionId: string;
  version: number;
  codeHash: string;
  manifestDigest: string;
}

/** Why an answer is not trusted. */
export class SealedError extends Error {}

/** A fresh, exactly sized ArrayBuffer holding `u` (Node Buffers may share a pool). */
const ab = (u: Uint8Array): ArrayBuffer => new Uint8Array(u).buffer as ArrayBuffer;

const suite = new CipherSuite({
  kem: new DhkemX25519HkdfSha256(),
  kdf: new HkdfSha256(),
  aead: new Aes256Gcm(),
});

/** A sealed call in flight: the request's `sealed` field and the key its answer opens with. */
export interface SealedCall {
  input: SealedInput;
  responseKey: Uint8Array;
}

/** Seals `paramsJson` for `target` to fleet key `key` at `now` (Unix seconds). */
export async function sealCall(key: FleetKey, target: Target, paramsJson: string, now: number): Promise<SealedCall> {
  const header = {
    suite: SUITE_ID,
    keyId: key.keyId,
    functionId: target.functionId,
    version: target.version,
    codeHash: target.codeHash,
    manifestDigest: target.manifestDigest,
    requestId: toHex(randomBytes(16)),
    timestamp: now,
  };
  const recipientPublicKey = await suite.kem.importKey("raw", ab(fromHex(key.publicKey)), true);
  const sender = await suite.createSenderContext({ recipientPublicKey, info: ab(sealedInfo(header)) });
  const ct = new Uint8Array(await sender.seal(ab(utf8(paramsJson))));
  const responseKey = new Uint8Array(await sender.export(ab(RESPONSE_EXPORT_CONTEXT), 32));
  const ciphertext = Buffer.concat([new Uint8Array(sender.enc), ct]).toString("base64");
  return { input: { ...header, ciphertext }, responseKey };
}

/** An opened answer. */
export interface Opened {
  outcome: string;
  result?: unknown;
  error?: { message: string; stack?: string; cause?: string };
  logs: string[];
}

/** Opens the answer (base64 `sealed`) shown for `executionId` under `outcome`. */
export function openAnswer(call: SealedCall, executionId: string, outcome: string, sealed: string): Opened {
  const blob = Buffer.from(sealed, "base64");
  if (blob.length < 1 + 12 + 16 || blob[0] !== 1) throw new SealedError("malformed sealed answer");
  const nonce = blob.subarray(1, 13);
  const body = blob.subarray(13, blob.length - 16);
  const tag = blob.subarray(blob.length - 16);
  let plain: Buffer;
  try {
    const d = createDecipheriv("aes-256-gcm", call.responseKey, nonce);
    d.setAAD(responseAad(call.input.requestId, executionId, outcome));
    d.setAuthTag(tag);
    plain = Buffer.concat([d.update(body), d.final()]);
  } catch {
    throw new SealedError("the sealed answer does not open for this request (altered, swapped or relabelled)");
  }
  const o = JSON.parse(plain.toString("utf8")) as Opened;
  if (o.outcome !== outcome) throw new SealedError(`the answer shows ${outcome} but the sealed one is ${o.outcome}`);
  if (outcome === OUTCOME_OK && !("result" in o)) throw new SealedError("no result in the answer");
  return { ...o, logs: o.logs ?? [] };
}
