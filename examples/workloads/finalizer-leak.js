// Isolation check: tries to leave a FinalizationRegistry callback behind that would run after
// the call, during a later call. With {"plant": true} it registers many objects for
// finalisation; every call reports whether the API exists and how many callbacks it saw run.
// In Cloister every call returns {"available": false, "observed": 0}.
function handler(params) {
  const g = globalThis;
  const available = typeof g.FinalizationRegistry === "function";
  if (available && params && params.plant) {
    const registry = new FinalizationRegistry(() => {
      g.__finalized = (g.__finalized || 0) + 1;
    });
    for (let i = 0; i < 10000; i++) registry.register({ payload: new Array(16) }, i);
    g.__registry = registry;
  }
  return { available, observed: g.__finalized || 0 };
}
