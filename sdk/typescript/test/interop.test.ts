// Interoperability with the real server: `cloister serve --dev` (CLOISTER_BIN, with the
// trusted executables next to it) is started; this SDK verifies its bundle and the function's
// manifest, seals, opens, and verifies receipts, which the Rust CLI verifies too.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer } from "node:net";
import { createHash, createPublicKey, verify as cryptoVerify } from "node:crypto";
import { Cloister, FunctionFailed, knownSigner, verifyReceipt, ReceiptError, receiptMessage, type Receipt } from "../src/index.js";

const BIN = process.env.CLOISTER_BIN ?? "";
const ECHO =
  "function handler(p, s, ctx) { ctx.log('saw ' + p.m); if (p.fail) { throw new Error('failing on ' + p.m); } return { echo: p.m }; }";

let server: ChildProcess | undefined;
let dir = "";
let url = "";
let root = "";
let token = "";
let measurement = "";

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      const port = typeof a === "object" && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

function cli(args: string[]): string {
  return execFileSync(BIN, ["--url", url, ...args], { cwd: dir, env: { ...process.env, CLOISTER_CONFIG: join(dir, "cfg.json") } }).toString();
}

before(async () => {
  assert.ok(BIN && existsSync(BIN), "set CLOISTER_BIN to a built `cloister` (with the trusted executables next to it)");
  dir = mkdtempSync(join(tmpdir(), "cloister-ts-"));
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  server = spawn(BIN, ["serve", "--dev", "--listen", `127.0.0.1:${port}`], { cwd: dir, env: { ...process.env, CLOISTER_CONFIG: join(dir, "cfg.json") } });
  let out = "";
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start:\n${out}`)), 60_000);
    const on = (b: Buffer) => {
      out += b.toString();
      if (out.includes("Ctrl-C stops the platform")) {
        clearTimeout(timer);
        resolve();
      }
    };
    server!.stdout!.on("data", on);
    server!.stderr!.on("data", on);
    server!.on("exit", (c) => reject(new Error(`serve exited (${c}):\n${out}`)));
  });
  root = /CLOISTER_SIM_ROOT=([0-9a-f]{64})/.exec(out)?.[1] ?? "";
  assert.ok(root, out);
  token = readFileSync(join(dir, ".cloister", "admin.token"), "utf8").trim();
  measurement = JSON.parse(cli(["--json", "attest", "measure", "--role", "keyvault"])).measurement;
  writeFileSync(join(dir, "echo.js"), ECHO);
  cli(["fn", "deploy", "echo.js", "--name", "echo"]);
});

after(() => {
  server?.kill("SIGINT");
});

function client(executors: string[] = []): Cloister {
  return new Cloister(url, token, {
    roots: [root],
    keyvaultMeasurements: [measurement],
    executorMeasurements: executors,
    maxBundleAgeSecs: 300,
  });
}

/** Retries while the executor is still fetching its fleet keys right after start. */
async function settle<T>(f: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await f();
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (i > 40 || (code !== "fleet_key_unknown" && code !== "unavailable")) throw e;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

test("a sealed call round-trips and its receipt verifies here and in the Rust CLI", async () => {
  const c = client();
  const r = await settle(() => c.invokeSealed("echo", { m: "from-ts" }, { receipt: true }));
  assert.deepEqual(r.result, { echo: "from-ts" });
  assert.deepEqual(r.logs, ["saw from-ts"]);
  assert.ok(r.receipt);
  // The Rust CLI verifies the receipt the TypeScript SDK obtained, offline.
  const bundle = await (await fetch(`${url}/v1/attestation`, { headers: { authorization: `Bearer ${token}` } })).json();
  const file = join(dir, "ts-receipt.json");
  writeFileSync(file, JSON.stringify({ url, receipt: r.receipt, bundle }));
  const out = JSON.parse(cli(["--json", "receipt", "verify", file, "--sim-root", root, "--keyvault-measurement", measurement]));
  assert.equal(out.valid, true);
  assert.equal(out.body.requestId, r.receipt!.body.requestId);
  // Any flipped byte of the receipt fails here.
  const kv = await c.keyvault();
  const flip = (s: string) => (s[0] === "0" ? "1" : "0") + s.slice(1);
  const tampered: Receipt[] = [
    { ...r.receipt!, signature: flip(r.receipt!.signature) },
    { ...r.receipt!, body: { ...r.receipt!.body, outputSha256: flip(r.receipt!.body.outputSha256) } },
    { ...r.receipt!, body: { ...r.receipt!.body, time: r.receipt!.body.time + 1 } },
    { ...r.receipt!, signer: { ...r.receipt!.signer, publicKey: flip(r.receipt!.signer.publicKey) } },
  ];
  verifyReceipt(r.receipt!, kv.rootFingerprint, kv.executorMeasurements);
  // With the signer cached, a receipt costs one Ed25519 check. Printed for
  // docs/PERFORMANCE.md (median of 5 batches of 400 after a warm-up), not asserted.
  const per = (fn: () => void, n: number) => {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) fn();
    return Number(process.hrtime.bigint() - t0) / 1000 / n;
  };
  const verifyOne = () => verifyReceipt(r.receipt!, kv.rootFingerprint, kv.executorMeasurements);
  per(verifyOne, 400);
  const batches = [0, 1, 2, 3, 4].map(() => per(verifyOne, 400)).sort((a, b) => a - b);
  const key = createPublicKey({ key: Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), Buffer.from(r.receipt!.signer.publicKey, "hex")]), format: "der", type: "spki" });
  const msg = receiptMessage(r.receipt!.body);
  const sig = Buffer.from(r.receipt!.signature, "hex");
  const ed = [0, 1, 2, 3, 4].map(() => per(() => cryptoVerify(null, msg, key, sig), 400)).sort((a, b) => a - b);
  console.log(`receipt verify (signer cached): ${batches[2]!.toFixed(1)} µs, of which Node's Ed25519 verify ${ed[2]!.toFixed(1)} µs`);
  // A build keyvault does not allow is refused even with the signer cached.
  assert.throws(() => verifyReceipt(r.receipt!, kv.rootFingerprint, ["cd".repeat(48)]), ReceiptError);
  for (const t of tampered) {
    assert.throws(() => verifyReceipt(t, kv.rootFingerprint, kv.executorMeasurements), ReceiptError);
  }
  // The next call names the signer it verified: the executor leaves the evidence out of the
  // wire and the SDK hands the receipt back whole.
  assert.equal(knownSigner(kv.rootFingerprint), r.receipt!.signer.publicKey);
  const next = await settle(() => c.invokeSealed("echo", { m: "again" }, { receipt: true }));
  assert.equal(next.receipt!.signer.evidence, r.receipt!.signer.evidence);
  const slim = await (await fetch(`${url}/v1/functions/echo/invoke`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ params: { m: 1 }, receiptNonce: "ab", receiptSigner: r.receipt!.signer.publicKey }),
  })).json() as { receipt: Receipt };
  assert.equal(slim.receipt.signer.evidence, undefined);
  assert.equal(verifyReceipt(slim.receipt, kv.rootFingerprint, kv.executorMeasurements).signer.evidence, r.receipt!.signer.evidence);
  // Without evidence, a signer not verified under this root is refused.
  assert.throws(() => verifyReceipt(slim.receipt, "ab".repeat(32), kv.executorMeasurements), /leaves out its signer's evidence/);
});

test("a receipt lists the signatures keyvault made for the call, under the executor's signature", async () => {
  writeFileSync(
    join(dir, "signer.js"),
    "async function handler(p, s, ctx) { const r = await ctx.sign('k', p.m, { hash: 'sha256' }); return { n: r.signature.length }; }",
  );
  cli(["fn", "deploy", "signer.js", "--name", "signer", "--key", "k"]);
  cli(["key", "create", "k", "--function", "signer", "--sim-root", root]);
  const c = client();
  const r = await settle(() => c.invokeSealed("signer", { m: "pay 5 to bob" }, { receipt: true }));
  assert.deepEqual(r.result, { n: 64 });
  const uses = r.receipt!.body.keyUses ?? [];
  assert.equal(uses.length, 1);
  assert.deepEqual(uses[0], {
    key: "k",
    version: 1,
    algorithm: "ed25519",
    hash: "sha256",
    messageSha256: createHash("sha256").update("pay 5 to bob").digest("hex"),
  });
  const kv = await c.keyvault();
  verifyReceipt(r.receipt!, kv.rootFingerprint, kv.executorMeasurements);
  // A use left out, or changed, breaks the signature.
  const body = r.receipt!.body;
  for (const keyUses of [[], [{ ...uses[0]!, messageSha256: "00".repeat(32) }], [{ ...uses[0]!, version: 2 }], [uses[0]!, uses[0]!]]) {
    assert.throws(() => verifyReceipt({ ...r.receipt!, body: { ...body, keyUses } }, kv.rootFingerprint, kv.executorMeasurements), ReceiptError);
  }
  // The Rust CLI reads and verifies the same receipt.
  const bundle = await (await fetch(`${url}/v1/attestation`, { headers: { authorization: `Bearer ${token}` } })).json();
  const file = join(dir, "ts-receipt-keys.json");
  writeFileSync(file, JSON.stringify({ url, receipt: r.receipt, bundle }));
  const out = JSON.parse(cli(["--json", "receipt", "verify", file, "--sim-root", root, "--keyvault-measurement", measurement]));
  assert.equal(out.valid, true);
  assert.deepEqual(out.body.keyUses, uses);
});

test("a failure of the function comes back sealed and opens only here", async () => {
  const c = client();
  await assert.rejects(
    settle(() => c.invokeSealed("echo", { m: "secret-marker", fail: true }, { receipt: true })),
    (e: unknown) => e instanceof FunctionFailed && e.code === "function_error" && e.message.includes("secret-marker"),
  );
});

test("a bundle outside the trust settings is refused before anything is sealed", async () => {
  await assert.rejects(client(["cd".repeat(48)]).invokeSealed("echo", { m: "x" }), /read sealed inputs/);
  const wrongRoot = new Cloister(url, token, { roots: ["ab".repeat(32)], keyvaultMeasurements: [measurement], executorMeasurements: [], maxBundleAgeSecs: 300 });
  await assert.rejects(wrongRoot.invokeSealed("echo", { m: "x" }), /pinned/);
});
