// Cloister client SDK (docs/SEALED.md).
export * from "./wire.js";
export * from "./evidence.js";
export * from "./nitro.js";
export * from "./verify.js";
export * from "./bundle.js";
export * from "./sealed.js";
export * from "./receipt.js";
export * from "./manifest.js";
export * from "./client.js";
