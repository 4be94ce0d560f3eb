// The package as shipped: types generated from the server's committed API documents, the
// browser bundle's size and self-containment, a README naming every method, and an
// `npm pack` that installs and imports.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import { gzipSync } from "node:zlib";
import { generated, OUTPUT } from "../scripts/generate.mjs";

const PACKAGE = fileURLToPath(new URL("..", import.meta.url));

test("the generated types are those of openapi/openapi.json and openapi/asyncapi.json", async () => {
  for (const [name, text] of Object.entries(await generated())) {
    const committed = readFileSync(new URL(name, OUTPUT), "utf8");
    assert.ok(committed === text, `src/generated/${name} differs from the API document: run npm run generate`);
  }
});

test("the browser bundle is self-contained and at most 10 KB minified and gzipped", () => {
  const bundle = readFileSync(join(PACKAGE, "dist", "tidegate.min.js"), "utf8");
  assert.doesNotMatch(bundle, /\bimport\s*[{*"'(]|\brequire\(/, "no module left to load at run time");
  assert.match(bundle, /export\s*\{/, "an ES module");
  const gzipped = gzipSync(bundle, { level: 9 }).length;
  assert.ok(gzipped <= 10 * 1024, `${gzipped} bytes gzipped`);
});

test("the README documents every public method of the client", async () => {
  const { Tidegate } = await import("../dist/index.js");
  const declarations = readFileSync(join(PACKAGE, "dist", "index.d.ts"), "utf8");
  const readme = readFileSync(join(PACKAGE, "README.md"), "utf8");
  const methods = Object.getOwnPropertyNames(Tidegate.prototype).filter(
    (name) => name !== "constructor" && !new RegExp(`private ${name}\\b`).test(declarations),
  );
  assert.ok(methods.includes("cluster") && !methods.includes("call"), `methods: ${methods}`);
  const getter = (name) => Object.getOwnPropertyDescriptor(Tidegate.prototype, name).get !== undefined;
  const missing = methods.filter((name) => !readme.includes(getter(name) ? `\`${name}\`` : `\`${name}(`));
  assert.deepEqual(missing, [], "methods missing from README.md's table");
});

test("the bundle the example page and the console load is this build (npm run vendor)", () => {
  const built = readFileSync(join(PACKAGE, "dist", "tidegate.min.js"), "utf8");
  const vendored = readFileSync(join(PACKAGE, "..", "..", "examples", "browser", "tidegate.js"), "utf8");
  assert.ok(vendored === built, "examples/browser/tidegate.js is stale: run npm run build && npm run vendor");
});

test("npm pack gives a package that installs and imports with its types", () => {
  const scratch = mkdtempSync(join(tmpdir(), "tidegate-pack-"));
  try {
    const [{ filename, files }] = JSON.parse(
      execFileSync("npm", ["pack", "--json", "--pack-destination", scratch], { cwd: PACKAGE, encoding: "utf8" }),
    );
    const paths = files.map((f) => f.path);
    for (const path of ["dist/index.js", "dist/index.d.ts", "dist/tidegate.min.js", "README.md", "package.json"]) {
      assert.ok(paths.includes(path), `${path} is packed (${paths})`);
    }
    assert.ok(!paths.some((p) => p.startsWith("src/") || p.startsWith("test/")), "only what users run");
    const app = join(scratch, "app");
    execFileSync("mkdir", ["-p", app]);
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
    execFileSync("npm", ["install", "--no-audit", "--no-fund", "--offline", join(scratch, filename)], { cwd: app });
    const out = execFileSync(
      "node",
      ["--input-type=module", "-e", 'import { Tidegate, TidegateError } from "tidegate"; console.log(typeof Tidegate, new TidegateError("c", "m").code)'],
      { cwd: app, encoding: "utf8" },
    );
    assert.equal(out.trim(), "function c");
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
});
