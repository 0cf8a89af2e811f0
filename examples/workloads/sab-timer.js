// Timing-channel check: tries to build a counter clock on a SharedArrayBuffer (the usual way
// around coarse timers) and to carry the buffer from one call to the next.
// With {"plant": true} it writes a mark into a buffer kept on globalThis; every call reports
// whether the APIs exist and whether an earlier call's mark is visible.
// In Cloister every call returns {"available": false, "carried": false}.
function handler(params) {
  const g = globalThis;
  const available =
    typeof g.SharedArrayBuffer === "function" && typeof g.Atomics === "object";
  let carried = false;
  if (available) {
    if (g.__sab) carried = Atomics.load(new Int32Array(g.__sab), 0) === 0x5ab;
    if (params && params.plant) {
      g.__sab = new SharedArrayBuffer(8);
      Atomics.store(new Int32Array(g.__sab), 0, 0x5ab);
    }
  }
  return { available, carried };
}
