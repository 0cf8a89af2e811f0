// A small client: verify before sealing, seal, invoke, open, verify the receipt.

import { randomBytes } from "node:crypto";
import { type TrustSettings, type TrustedKeyvault, verifyBundle } from "./bundle.js";
import { type SignedManifest, verifyManifest } from "./manifest.js";
import { knownSigner, verifyReceipt, ReceiptError } from "./receipt.js";
import { type SealedCall, SealedError, type Target, openAnswer, sealCall } from "./sealed.js";
import { type Bundle, type Receipt, type RegistryView, registryDigest, sha256, toHex } from "./wire.js";

/** The server's error body. */
export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly details: unknown) {
    super(`${code} (HTTP ${status}): ${message}`);
  }
}

/** A sealed call's function failed; its details were opened from the sealed answer. */
export class FunctionFailed extends Error {
  /** `cause`: the stable code the function's uncaught error carried (a refused host call's,
   * such as `key_not_declared`), the API's `details.code`. */
  constructor(
    readonly code: string,
    message: string,
    readonly stack_?: string,
    readonly logs: string[] = [],
    readonly cause?: string,
  ) {
    super(`${code}: ${message}`);
  }
}

/** The answer to a sealed call. */
export interface SealedResult {
  result: unknown;
  logs: string[];
  executionId: string;
  target: Target;
  receipt?: Receipt;
}

const now = () => Math.floor(Date.now() / 1000);

/** A Cloister client that verifies the platform before it sends anything sealed. */
export class Cloister {
  constructor(readonly url: string, readonly token: string, readonly trust: TrustSettings) {}

  private async call(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
    const r = await fetch(this.url + path, {
      method,
      headers: { authorization: `Bearer ${this.token}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    return { status: r.status, json: text ? JSON.parse(text) : null };
  }

  private async get<T>(path: string): Promise<T> {
    const r = await this.call("GET", path);
    if (r.status !== 200) throw new ApiError(r.status, r.json?.error?.code, r.json?.error?.message, r.json?.error?.details);
    return r.json as T;
  }

  /** keyvault's bundle, verified against the trust settings. */
  async keyvault(): Promise<TrustedKeyvault> {
    return verifyBundle(await this.get<Bundle>("/v1/attestation"), this.trust, now());
  }

  /** What a sealed call to `name` is sealed for: its manifest, checked against the registry. */
  async verifiedTarget(kv: TrustedKeyvault, name: string, version?: number): Promise<Target> {
    const registry = await this.get<RegistryView>("/v1/registry");
    if (registryDigest(registry) !== kv.registryDigest) {
      throw new SealedError("the registry relayed by the gateway is not the one keyvault's evidence binds");
    }
    const q = version === undefined ? "" : `?version=${version}`;
    const signed = await this.get<SignedManifest>(`/v1/functions/${encodeURIComponent(name)}/manifest${q}`);
    if (version !== undefined && signed.version !== version) throw new SealedError("the gateway sent another version's manifest");
    return verifyManifest(signed, registry, kv.instanceKey, name).target;
  }

  /** Invokes `name` sealed end to end; with `receipt`, the executor's receipt is verified too. */
  async invokeSealed(name: string, params: unknown, opts: { version?: number; receipt?: boolean } = {}): Promise<SealedResult> {
    let kv = await this.keyvault();
    const target = await this.verifiedTarget(kv, name, opts.version);
    for (let attempt = 0; ; attempt++) {
      const key = kv.fleetKeys[0];
      if (!key) throw new SealedError("keyvault's bundle holds no fleet key valid now");
      const call = await sealCall(key, target, JSON.stringify(params ?? null), now());
      const nonce = opts.receipt ? toHex(randomBytes(32)) : undefined;
      const r = await this.call("POST", `/v1/functions/${encodeURIComponent(name)}/invoke`, {
        sealed: call.input,
        ...(nonce ? { receiptNonce: nonce } : {}),
        ...(nonce && knownSigner(kv.rootFingerprint) ? { receiptSigner: knownSigner(kv.rootFingerprint) } : {}),
      });
      if (r.status === 200) {
        const a = r.json as { requestId: string; executionId: string; outcome: string; sealed: string; receipt?: Receipt };
        if (a.requestId !== call.input.requestId) throw new SealedError("the answer is for another request");
        const opened = openAnswer(call, a.executionId, a.outcome, a.sealed);
        const receipt = nonce ? this.checkReceipt(kv, call, target, nonce, a.receipt, a.executionId, a.outcome, a.sealed) : undefined;
        return { result: opened.result, logs: opened.logs, executionId: a.executionId, target, receipt };
      }
      const err = r.json?.error;
      const d = err?.details;
      if (r.status === 422 && d?.sealed) {
        if (d.requestId !== call.input.requestId) throw new SealedError("the answer is for another request");
        const opened = openAnswer(call, d.executionId, err.code, d.sealed);
        if (nonce) this.checkReceipt(kv, call, target, nonce, d.receipt, d.executionId, err.code, d.sealed);
        throw new FunctionFailed(err.code, opened.error?.message ?? "", opened.error?.stack, opened.logs, opened.error?.cause);
      }
      if (err?.code === "fleet_key_unknown" && attempt === 0) {
        const again = await this.keyvault();
        if (again.instanceKey !== kv.instanceKey) throw new SealedError("another keyvault instance answered");
        kv = again;
        continue;
      }
      throw new ApiError(r.status, err?.code, err?.message, d);
    }
  }

  private checkReceipt(kv: TrustedKeyvault, call: SealedCall, t: Target, nonce: string, r: Receipt | undefined,
      executionId: string, outcome: string, sealed: string): Receipt {
    if (!r) throw new ReceiptError("a receipt was asked for and the answer carries none");
    const whole = verifyReceipt(r, kv.rootFingerprint, kv.executorMeasurements);
    const b = r.body;
    const expect: [string, unknown, unknown][] = [
      ["nonce", b.nonce, nonce],
      ["input digest", b.inputSha256, toHex(sha256(Buffer.from(call.input.ciphertext, "base64")))],
      ["output digest", b.outputSha256, toHex(sha256(Buffer.from(sealed, "base64")))],
      ["outcome", b.outcome, outcome],
      ["execution id", b.executionId, executionId],
      ["function", b.functionId, t.functionId],
      ["version", b.version, t.version],
      ["code hash", b.codeHash, t.codeHash],
      ["manifest digest", b.manifestDigest, t.manifestDigest],
      ["fleet key id", b.fleetKeyId, call.input.keyId],
      ["request id", b.requestId, call.input.requestId],
    ];
    for (const [what, got, want] of expect) {
      if (got !== want) throw new ReceiptError(`the receipt is not this call's: its ${what} differs`);
    }
    return whole;
  }
}
