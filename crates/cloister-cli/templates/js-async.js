// An asynchronous Cloister function: the handler may return a Promise.
// Run it here:   cloister fn run __NAME__.js --params '{"items":[3,1,2]}'
// Deploy it:     cloister fn deploy __NAME__.js && cloister fn invoke __NAME__ --params '{"items":[3,1,2]}'
async function handler(params, secrets, context) {
  const items = Array.isArray(params && params.items) ? params.items : [];
  const sorted = await Promise.resolve([...items].sort((a, b) => a - b));
  context.log(`sorted ${sorted.length} items`);
  return { sorted, deadlineMs: context.deadlineMs };
}
