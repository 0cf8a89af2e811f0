// Baseline for `cloister bench --node`: a plain Node.js HTTP server that runs a function in a
// fresh V8 context per request (vm.createContext), the cheapest isolation Node offers. No
// per-call timeout (that would add a watchdog thread per call): the strongest baseline.
// Usage: node node-baseline.js <port> <function.js>
"use strict";
const http = require("http");
const fs = require("fs");
const vm = require("vm");

const port = Number(process.argv[2]);
const script = new vm.Script(fs.readFileSync(process.argv[3], "utf8"), { filename: "function.js" });

http
  .createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", async () => {
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}");
        const ctx = vm.createContext({});
        script.runInContext(ctx);
        const context = { functionName: "baseline", log: () => {} };
        const result = await ctx.handler(body.params, Object.freeze({}), context);
        const out = JSON.stringify({ result });
        res.writeHead(200, { "content-type": "application/json" });
        res.end(out);
      } catch (e) {
        res.writeHead(422, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { code: "function_error", message: String(e) } }));
      }
    });
  })
  .listen(port, "127.0.0.1", () => console.log("ready"));
