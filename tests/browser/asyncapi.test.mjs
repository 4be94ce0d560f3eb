// The committed AsyncAPI document (openapi/asyncapi.json, which a Rust test keeps equal to
// what the server serves) must be a valid AsyncAPI 3 document by the reference parser,
// so client generators accept it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { Parser } from "@asyncapi/parser";

const DOCUMENT = new URL("../../openapi/asyncapi.json", import.meta.url);

test("openapi/asyncapi.json is valid AsyncAPI 3", async () => {
  const text = await readFile(DOCUMENT, "utf8");
  const { document, diagnostics } = await new Parser().parse(text);
  // Severity 0 is an error, 1 a warning; both are refused so the document stays clean.
  const problems = diagnostics
    .filter((d) => d.severity <= 1)
    .map((d) => `${d.path.join("/")}: ${d.message}`);
  assert.deepEqual(problems, [], "the parser reports problems");
  assert.ok(document, "the parser produced a document");
  assert.equal(document.version(), "3.0.0");
  const names = document.allMessages().all().map((message) => message.name());
  for (const expected of ["subscribe", "records", "assignment", "error", "event"]) {
    assert.ok(names.includes(expected), `message ${expected} in ${names}`);
  }
});
