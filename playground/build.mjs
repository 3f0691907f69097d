// Builds the playground into dist/: the console (served at /) and the GraphiQL page, each one bundled
// script and stylesheet, plus the static HTML. Everything proctord serves at /playground comes from
// here, so the pages need nothing but the server's own origin.
import { build } from "esbuild";
import { generate } from "@graphql-codegen/cli";
import { cpSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";

const out = new URL("./dist/", import.meta.url).pathname;
// `node build.mjs --types-only` checks the operations against a schema and stops there;
// PROCTOR_UI_SCHEMA and PROCTOR_UI_TYPES_OUT point it elsewhere (the test that a schema change
// breaks this build uses them).
const typesOnly = process.argv.includes("--types-only");
const schema = process.env.PROCTOR_UI_SCHEMA ?? "../schema/schema.graphql";
const typesOut = process.env.PROCTOR_UI_TYPES_OUT ?? "generated/gql/";
if (!typesOnly) {
  // A failed build leaves no stale assets behind to be embedded.
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
}

// Typed operations from the server's committed SDL: every `graphql(...)` document in src/ is
// validated against schema/schema.graphql and gets its types, so a schema change that breaks
// an operation breaks this build (and the server's), not the page.
await generate(
  {
    schema,
    documents: ["src/**/*.js", "src/**/*.jsx"],
    ignoreNoDocuments: false,
    silent: true,
    generates: {
      [typesOut]: {
        preset: "client",
        presetConfig: { fragmentMasking: false },
        config: { documentMode: "string", useTypeImports: true, enumType: "const" },
      },
    },
  },
  true,
);
if (typesOnly) {
  console.log(`operations fit ${schema}`);
  process.exit(0);
}

await build({
  entryPoints: {
    graphiql: "src/graphiql.jsx",
    console: "src/console/main.jsx",
  },
  bundle: true,
  minify: true,
  sourcemap: true,
  format: "esm",
  jsx: "automatic",
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
