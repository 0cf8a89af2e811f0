async function handler(p, s, c) {
  const r = await c.sign("k", p.msg);
  return { n: r.signature.length };
}
