// GitHub's own expression evaluator (@actions/expressions, pinned in package.json) as an
// oracle for kiln's. Reads JSON lines {expr, ctx, status?} on stdin; writes one JSON line
// per case: {ok:true, kind, value, str} or {ok:false, error}.
//   status: "success" (default), "failure" or "cancelled" — what the status functions say.
// hashFiles() is declared (so that its argument counts are checked as GitHub does) but
// cannot be evaluated here: it reads files on the runner.
import { createInterface } from "node:readline";
import { Lexer, Parser, Evaluator, data } from "@actions/expressions";

const statuses = {
  success: { success: true, failure: false, cancelled: false },
  failure: { success: false, failure: true, cancelled: false },
  cancelled: { success: false, failure: false, cancelled: true },
};
const fn = (name, minArgs, maxArgs, call) => ({ name, minArgs, maxArgs, call });

function extensions(status) {
  const s = statuses[status ?? "success"];
  if (!s) throw new Error(`unknown status ${status}`);
  return [
    fn("success", 0, 0, () => new data.BooleanData(s.success)),
    fn("failure", 0, 0, () => new data.BooleanData(s.failure)),
    fn("cancelled", 0, 0, () => new data.BooleanData(s.cancelled)),
    fn("always", 0, 0, () => new data.BooleanData(true)),
    fn("hashFiles", 1, 255, () => { throw new Error("hashFiles is not available in the oracle"); }),
  ];
}

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
  if (!line.trim()) continue;
  let out;
  try {
    const { expr, ctx = {}, status } = JSON.parse(line);
    const ext = extensions(status);
    const funcs = new Map(ext.map(f => [f.name.toLowerCase(), f]));
    const c = JSON.parse(JSON.stringify(ctx), data.reviver);
    const { tokens } = new Lexer(expr).lex();
    const ast = new Parser(tokens, Object.keys(ctx), ext).parse();
    const r = new Evaluator(ast, c, funcs).evaluate();
    out = {
      ok: true,
      kind: data.Kind[r.kind],
      value: JSON.parse(JSON.stringify(r, data.replacer) ?? "null"),
      str: r.coerceString(),
    };
  } catch (e) {
    out = { ok: false, error: `${e?.constructor?.name}: ${e?.message}` };
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}
