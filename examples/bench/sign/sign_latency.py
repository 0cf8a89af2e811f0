# Sequential latency of a warm function with and without one context.sign (Ed25519), in
# interleaved rounds over one keep-alive connection; medians and p99 per variant.
import http.client, json, statistics, sys, time
port, token = int(sys.argv[1]), open(sys.argv[2]).read().strip()
rounds, per = 8, 250
conn = http.client.HTTPConnection("127.0.0.1", port)
body = json.dumps({"params": {"msg": "transfer 5 to alice"}})
def call(name):
    t = time.perf_counter()
    conn.request("POST", f"/v1/functions/{name}/invoke", body, {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    r = conn.getresponse(); data = r.read()
    if r.status != 200: raise SystemExit(f"{name}: {r.status} {data[:300]}")
    return (time.perf_counter() - t) * 1e3
for n in ("plain", "signs"):
    for _ in range(50): call(n)
lat = {"plain": [], "signs": []}
for _ in range(rounds):
    for n in ("plain", "signs"):
        lat[n] += [call(n) for _ in range(per)]
def q(v, p): v = sorted(v); return v[min(len(v) - 1, int(len(v) * p))]
for n, v in lat.items():
    print(f"{n:6} p50 {statistics.median(v):.3f} ms  p99 {q(v, 0.99):.3f} ms  ({len(v)} calls)")
print(f"added p50 {statistics.median(lat['signs']) - statistics.median(lat['plain']):.3f} ms")
