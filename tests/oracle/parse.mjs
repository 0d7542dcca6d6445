// GitHub's own workflow parser (@actions/workflow-parser), as an oracle for kiln's.
//
// usage: node --import ./json-hook.mjs parse.mjs FILE
//          -> JSON {errors:[...], template:<raw token tree>, workflow:<converted WorkflowTemplate>}
//        node --import ./json-hook.mjs parse.mjs --batch FILE...
//          -> one JSON line per file: {file, errors:[...]} with every error, schema and semantic
//             (unknown needs, cycles, cron...), as GitHub would refuse the file for.
import { readFileSync } from "node:fs";
import { parseWorkflow, convertWorkflowTemplate, NoOperationTraceWriter } from "@actions/workflow-parser";

async function check(name) {
  const result = parseWorkflow({ name, content: readFileSync(name, "utf8") }, new NoOperationTraceWriter());
  const errors = result.context.errors.getErrors().map(e => e.message);   // schema + YAML + expression syntax
  let workflow = null;
  if (result.value) workflow = JSON.parse(JSON.stringify(await convertWorkflowTemplate(result.context, result.value)));
  return { result, errors, workflow };
}

const args = process.argv.slice(2);
if (args[0] === "--batch") {
  for (const file of args.slice(1)) {
    let out;
    try {
      const { errors, workflow } = await check(file);
      // convertWorkflowTemplate repeats the context's errors in workflow.errors; keep each once
      const all = [...errors];
      for (const e of (workflow && workflow.errors) || []) if (!all.includes(e.Message)) all.push(e.Message);
      out = { file, errors: all };
    } catch (e) {
      out = { file, errors: [`oracle crashed: ${e.message}`], crashed: true };
    }
    process.stdout.write(JSON.stringify(out) + "\n");
  }
} else {
  const { result, errors, workflow } = await check(args[0]);
  const template = result.value ? result.value.toJSON() : null;               // intermediate TemplateToken tree
  console.log(JSON.stringify({ errors, template, workflow }, null, 1));
}
