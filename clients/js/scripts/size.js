// `npm run size`: legato.js minified (esbuild) and minified + gzipped, in bytes.
// The budget is 4 KiB min+gzip: a page pays for it on every cold load.
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { transform } from "esbuild";

const BUDGET = 4096;
const source = readFileSync(new URL("../legato.js", import.meta.url), "utf8");
const { code } = await transform(source, { minify: true, format: "esm", target: "es2022" });
const gzipped = gzipSync(code, { level: 9 }).length;
console.log(`legato.js: ${source.length} B source, ${code.length} B minified, ` +
  `${gzipped} B minified+gzip (budget ${BUDGET} B)`);
if (gzipped > BUDGET) {
  console.error("over budget");
  process.exitCode = 1;
}
