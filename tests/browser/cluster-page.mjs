// What the console's cluster page shows, for a test in another language (the Kafka
// failover test, tests/python/test_kafka_failover.py, which kills brokers): opens
// `URL/#/cluster` in headless Chromium with TOKEN, waits until the page shows EXPECT_SHORT
// under-replicated partitions (or 20 s pass), and prints one JSON line: the nodes, the
// controller, the flagged (highlighted) rows of "All partitions" as [topic, partition,
// leader, replicas, isr], the rows of "Under-replicated partitions", and the count in the
// navigation. With SCREENSHOT, the page is saved there too.
//
//   node cluster-page.mjs URL TOKEN EXPECT_SHORT [SCREENSHOT]
import { launchChromium } from "./harness.mjs";

const [url, jwt, expectShort, screenshot] = process.argv.slice(2);
const browser = await launchChromium();
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: "en-US" });
  const page = await context.newPage();
  await page.goto(`${url}/`);
  await page.evaluate((token) => sessionStorage.setItem("tidegate.token", token), jwt);
  await page.goto(`${url}/#/cluster`);
  const card = (title) =>
    page.locator(".card").filter({ has: page.getByRole("heading", { level: 2, name: title, exact: true }) });
  await card("All partitions").locator("tbody tr").first().waitFor({ timeout: 20_000 });
  // The page refreshes every 5 s and the gateway's view is cached for 1 s: wait for it.
  const deadline = Date.now() + 20_000;
  const flaggedRows = card("All partitions").locator("tr.flagged");
  while ((await flaggedRows.count()) !== Number(expectShort) && Date.now() < deadline) {
    await page.waitForTimeout(250);
  }
  const cells = (rows) => rows.evaluateAll((trs) => trs.map((tr) => [...tr.cells].map((td) => td.textContent)));
  const seen = {
    nodes: (await cells(card("Nodes").locator("tbody tr"))).map(([id, address, role]) => ({ id, address, role })),
    controller: await page.locator(".stat", { hasText: "Controller" }).locator(".stat-value").textContent(),
    flagged: await cells(flaggedRows),
    under_replicated: await cells(card("Under-replicated partitions").locator("tbody tr")),
    nav_count: (await page.locator("#under-replicated").isHidden())
      ? null
      : await page.locator("#under-replicated").textContent(),
  };
  if (screenshot) await page.screenshot({ path: screenshot, animations: "disabled", mask: [page.locator(".card code")], maskColor: "#d9dee6" });
  console.log(JSON.stringify(seen));
} finally {
  await browser.close();
}
