// Runs out of memory in the way `params.way` names; every way must end as
// `function_memory_limit` (and the worker is replaced), never as a function error.
// With {"way": "caught"} the code catches the failure and returns normally: still a memory
// limit failure, because the limit was reached during the call.
function handler(params) {
  const keep = [];
  switch (params.way) {
    case "string": {
      // Many distinct flat strings (doubling one string instead reaches the engine's
      // string-length limit first: a RangeError "invalid string length").
      for (let i = 0; ; i++) keep.push("x".repeat(1 << 16) + i);
    }
    case "array": {
      for (;;) keep.push(new Array(1 << 16).fill(1.5));
    }
    case "objects": {
      for (let i = 0; ; i++) keep.push({ i, a: i + 1, b: "k" + i });
    }
    case "map": {
      const m = new Map();
      for (let i = 0; ; i++) m.set(i, { i });
    }
    case "typed-array": {
      for (;;) keep.push(new Float64Array(1 << 17));
    }
    case "json": {
      const doc = "[" + "[1,2,3,4,5,6,7,8,9,10],".repeat(1 << 14) + "0]";
      for (;;) keep.push(JSON.parse(doc));
    }
    case "regex": {
      // The backtracking state of a lazy group over a long input, on a long-lived input set.
      let s = "ab".repeat(1 << 20);
      for (;;) { keep.push(s.replace(/(a|b)*?$/, "")); s = s + "ab"; keep.push(/((a)|(b))*c/.exec(s)); }
    }
    case "caught": {
      try {
        for (;;) keep.push(new Array(1 << 16).fill(2.5));
      } catch (e) {
        keep.length = 0;
        return { caught: String(e) };
      }
    }
    default:
      return { ways: ["string", "array", "objects", "map", "typed-array", "json", "regex", "caught"] };
  }
}
