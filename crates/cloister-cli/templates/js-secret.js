// A Cloister function that reads a secret. Only secrets the deploy declares are passed in,
// read-only; values never appear in logs unless the function writes them there.
// Run it here:   cloister fn run __NAME__.js --secret API_KEY=dev-value
// Deploy it:     cloister fn deploy __NAME__.js --secret API_KEY
//                cloister secret put API_KEY --function __NAME__      (asks for the value, hidden)
//                cloister fn invoke __NAME__
function handler(params, secrets, context) {
  const key = secrets.API_KEY;
  if (!key) throw new Error("API_KEY is not set (declare it with --secret API_KEY)");
  // Use the key; return only what is safe to show.
  return { keyLength: key.length, configured: true };
}
