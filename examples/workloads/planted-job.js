// Isolation check: a call that queues a promise job and returns without awaiting it.
// With {"plant": true} the job would busy-loop for 2 s; a later call that awaits anything
// drives the job queue, so on a platform that reuses the worker it would wait for that job.
// Every call returns {"observed": 0} promptly.
async function handler(params) {
  if (params && params.plant) {
    Promise.resolve().then(() => {
      globalThis.__plantedRan = (globalThis.__plantedRan || 0) + 1;
      const end = Date.now() + 2000;
      while (Date.now() < end) {}
    });
    return { observed: 0 };
  }
  await null;
  return { observed: globalThis.__plantedRan || 0 };
}
