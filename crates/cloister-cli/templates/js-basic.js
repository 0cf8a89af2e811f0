// A Cloister function: `handler(params, secrets, context)` returns JSON.
// Run it here:   cloister fn run __NAME__.js --params '{"name":"Ada"}'
// Deploy it:     cloister fn deploy __NAME__.js && cloister fn invoke __NAME__ --params '{"name":"Ada"}'
function handler(params, secrets, context) {
  const name = (params && params.name) || "world";
  context.log(`greeting ${name}`);
  return { message: `Hello, ${name}!`, function: context.functionName };
}
