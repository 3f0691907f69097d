// Builds the playground into dist/: the GraphiQL page and the live view, each one bundled script
// and stylesheet, plus the static HTML. Everything proctord serves at /playground comes from
// here, so the pages need nothing but the server's own origin.
import { build } from "esbuild";
import { cpSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";

const out = new URL("./dist/", import.meta.url).pathname;
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

await build({
  entryPoints: {
    graphiql: "src/graphiql.jsx",
    live: "src/live.js",
  },
  bundle: true,
  minify: true,
  sourcemap: true,
  format: "esm",
  target: ["es2020"],
  outdir: out,
  loader: { ".woff": "file", ".woff2": "file", ".ttf": "file", ".svg": "file" },
  define: { "process.env.NODE_ENV": '"production"' },
  logLevel: "warning",
});
cpSync("static", out, { recursive: true });
// proctord embeds dist/ and answers clients that accept gzip with these copies (source maps
// are neither embedded nor compressed).
for (const name of readdirSync(out)) {
  if (!name.endsWith(".map")) {
    writeFileSync(`${out}${name}.gz`, gzipSync(readFileSync(`${out}${name}`), { level: 9 }));
  }
}
console.log(`playground built into ${out}`);
