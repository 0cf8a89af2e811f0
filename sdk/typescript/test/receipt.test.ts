// The bytes a receipt's signature covers, against the vector the Rust side checks too
// (crates/cloister-types/src/receipt.rs): key uses and outbound requests included.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { receiptMessage, type ReceiptBody } from "../src/index.js";

const vector = JSON.parse(
  readFileSync(join(import.meta.dirname, "..", "..", "test", "vectors", "receipt.json"), "utf8"),
) as { body: ReceiptBody; messageHex: string };

test("the receipt message matches the Rust vector, egress and key uses included", () => {
  assert.equal(Buffer.from(receiptMessage(vector.body)).toString("hex"), vector.messageHex);
  // Every egress field is covered.
  const e = vector.body.egress![0]!;
  for (const changed of [
    { ...e, origin: "https://api.example.net" },
    { ...e, requests: e.requests + 1 },
    { ...e, bytesSent: e.bytesSent + 1 },
    { ...e, bytesReceived: e.bytesReceived + 1 },
  ]) {
    const other = Buffer.from(receiptMessage({ ...vector.body, egress: [changed] })).toString("hex");
    assert.notEqual(other, vector.messageHex);
  }
  assert.notEqual(Buffer.from(receiptMessage({ ...vector.body, egress: [] })).toString("hex"), vector.messageHex);
});
