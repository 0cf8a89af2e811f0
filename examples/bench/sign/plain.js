async function handler(p, s, c) {
  return { n: p.msg.length };
}
