// Browser scenarios against a running paybridge (started by the Rust test harness,
// crates/paybridge/tests/api/browser.rs), in Debian's headless Chromium.
//
//   BASE=http://127.0.0.1:4242 ADMIN_KEY=… PUBLISHABLE_KEY=… node run.mjs <scenario>
//
// Each scenario prints one JSON line with what it saw; the harness checks it against
// the API. A failed expectation exits non-zero with the reason (and a screenshot in
// $ARTIFACTS when set).
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { scenarios as checkoutScenarios } from "./checkout.mjs";
import { scenarios as authenticateScenarios } from "./authenticate.mjs";
import { PayBridge } from "../../crates/server/web/sdk/paybridge.js";

const BASE = process.env.BASE;
const scenario = process.argv[2];
const shots = process.env.SCREENSHOTS || "";
const artifacts = process.env.ARTIFACTS || "";

function expect(cond, message) {
  if (!cond) throw new Error(message);
}

async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
}

/** Records console errors and CSP violations: a page that breaks its own policy fails. */
function watchConsole(page, problems) {
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(m.text());
  });
  page.on("pageerror", (e) => problems.push(String(e)));
}

async function shot(page, name) {
  if (!shots) return;
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
}

/** In the storefront, buys the first one-time product with `card`; returns the status text. */
async function buyOnStorefront(page, card) {
  await page.goto(`${BASE}/`);
  const button = page.locator("#products article button", { hasText: "Buy" }).first();
  await button.waitFor();
  const [popup] = await Promise.all([page.waitForEvent("popup"), button.click()]);
  await popup.waitForURL(/\/sandbox\/pay\//);
  await popup.locator("#card").fill(card);
  await popup.locator("#pay").click();
  return popup;
}

const scenarios = {
  /** The first thing a new user sees: buy with 4242, watch it become paid. */
  async "storefront-purchase"(browser) {
    const page = await browser.newPage();
    const problems = [];
    watchConsole(page, problems);
    await buyOnStorefront(page, "4242 4242 4242 4242");
    await page.locator("#status.ok").waitFor({ timeout: 20000 });
    const status = await page.locator("#status").textContent();
    const events = await page.locator("#events li").evaluateAll((lis) => lis.map((li) => li.dataset.type));
    expect(status.startsWith("Paid:"), `status: ${status}`);
    expect(events.includes("payment.succeeded") && events.includes("order.paid"), `events: ${events}`);
    expect(problems.length === 0, `console errors: ${problems.join(" | ")}`);
    await shot(page, "storefront");
    const order = status.match(/order (order_[a-z0-9]+)/)[1];
    return { status, events, order };
  },

  /**
   * The demo shopper subscribes, then manages it in the customer portal the storefront
   * opens (through the demo shop's own server): cancels it there and comes back.
   */
  async "storefront-portal"(browser) {
    const page = await browser.newPage();
    const problems = [];
    watchConsole(page, problems);
    await page.goto(`${BASE}/`);
    await page.waitForFunction(() => document.getElementById("shopper").textContent.includes("@"));
    const shopper = (await page.locator("#shopper").textContent()).trim();
    const button = page.locator("#products article button", { hasText: "Subscribe" }).first();
    await button.waitFor();
    const [popup] = await Promise.all([page.waitForEvent("popup"), button.click()]);
    await popup.waitForURL(/\/sandbox\/pay\//);
    await popup.locator("#card").fill("4242 4242 4242 4242");
    await popup.locator("#pay").click();
    await page.locator("#status.ok").waitFor({ timeout: 20000 });
    const order = (await page.locator("#status").textContent()).match(/order (order_[a-z0-9]+)/)[1];
    // The storefront's page carries no server key: the portal comes from the shop's server.
    const html = await page.content();
    expect(!/pb_(sk|ak|rk)_/.test(html), "a secret key on the storefront");
    await Promise.all([page.waitForURL(/\/sandbox\/portal\//), page.locator("#portal").click()]);
    const portalUrl = page.url();
    const email = (await page.locator("#email").textContent()).trim();
    const subs = await page.locator("#subscriptions li.sub").count();
    const statusBefore = (await page.locator("#subscriptions li.sub .status").first().textContent()).trim();
    await shot(page, "storefront-portal");
    await Promise.all([page.waitForLoadState(), page.locator("#subscriptions button.cancel").first().click()]);
    await page.locator("#subscriptions li.sub .status", { hasText: "canceled" }).first().waitFor();
    const statusAfter = (await page.locator("#subscriptions li.sub .status").first().textContent()).trim();
    await Promise.all([page.waitForURL(`${BASE}/`), page.locator("#return").click()]);
    await page.locator("#products article").first().waitFor();
    expect(problems.length === 0, `console errors: ${problems.join(" | ")}`);
    // The SDK on a server (Node): an admin or server key opens the portal, the
    // publishable key is refused.
    const { customer } = await (await fetch(`${BASE}/store/session`, { method: "POST" })).json();
    const sdkPortal = await PayBridge({ baseUrl: BASE, key: process.env.ADMIN_KEY }).customers.createPortalSession(customer, { returnUrl: `${BASE}/` });
    const sdkRefused = await PayBridge({ baseUrl: BASE, key: process.env.PUBLISHABLE_KEY })
      .customers.createPortalSession(customer, { returnUrl: `${BASE}/` })
      .then(() => "opened", (e) => `${e.status} ${e.code}`);
    return { shopper, order, portalUrl, email, subs, statusBefore, statusAfter, back: page.url(), sdkPortal, sdkRefused };
  },

  /** A declined card is shown as declined, and nothing is paid. */
  async "storefront-declined"(browser) {
    const page = await browser.newPage();
    const popup = await buyOnStorefront(page, "4000 0000 0000 0002");
    // The hosted page says so itself (until the SDK closes it)…
    const pageSaid = await popup
      .locator("#error")
      .textContent({ timeout: 5000 })
      .catch(() => "(closed first)");
    // …and the storefront, from the webhook-confirmed payment.failed event.
    await page.locator("#status.error").waitFor({ timeout: 20000 });
    const status = await page.locator("#status").textContent();
    const events = await page.locator("#events li").evaluateAll((lis) => lis.map((li) => li.dataset.type));
    expect(status.startsWith("Declined:"), `status: ${status}`);
    expect(events.includes("payment.failed"), `events: ${events}`);
    expect(!events.includes("order.paid"), `events: ${events}`);
    await shot(page, "storefront-declined");
    return { status, events, pageSaid };
  },

  /** Sign in to the dashboard, open a payment, refund part of it. */
  async "dashboard-refund"(browser) {
    const page = await browser.newPage();
    const problems = [];
    watchConsole(page, problems);
    await page.goto(`${BASE}/admin`);
    await page.locator("#admin-key").fill(process.env.ADMIN_KEY);
    await page.locator("#login-button").click();
    await page.locator("#config-status").waitFor();
    const config = await page.locator("#config-status").textContent();
    expect(config.includes("sandbox"), `config: ${config}`);
    await shot(page, "dashboard-overview");
    await page.locator('#nav a[data-view="orders"]').click();
    await page.locator("#order-status").selectOption("paid");
    // Two sales were paid; the declined attempt's order stays open and is filtered out.
    await page.waitForFunction(() => location.hash.includes("status=paid") && document.querySelectorAll("tr[data-order]").length === 2, null, { timeout: 10000 });
    await page.locator('#nav a[data-view="payments"]').click();
    const row = page.locator(`tr[data-payment="${process.env.PAYMENT}"]`);
    await row.waitFor();
    await page.locator("#filter-status").selectOption("succeeded");
    await row.waitFor();
    await row.click();
    await page.locator("#refund-form").waitFor();
    await page.locator('#timeline li[data-kind="provider"]').first().waitFor();
    const kinds = await page.locator("#timeline li").evaluateAll((lis) => lis.map((li) => li.dataset.kind));
    expect(kinds.includes("ours") && kinds.includes("provider"), `timeline: ${kinds}`);
    // The form takes dollars and asks before money moves (backoffice.mjs tests both).
    await page.locator("#refund-amount").fill((Number(process.env.REFUND_AMOUNT) / 100).toFixed(2));
    await page.locator("#refund-button").click();
    await page.locator("#refund-confirm-yes").click();
    await page.locator("#refund-result.ok").waitFor({ timeout: 15000 });
    const result = await page.locator("#refund-result").textContent();
    const refund = result.match(/refund_[a-z0-9]+/)[0];
    // The page reloads the payment: the refund shows in its list.
    await page.locator("td code", { hasText: refund }).waitFor({ timeout: 15000 });
    const refunded = await page.locator("#amount-refunded").textContent();
    expect(refunded.replace(/[^0-9]/g, "") === process.env.REFUND_AMOUNT, `refunded: ${refunded}`);
    await page.locator("#timeline li[data-kind]").first().waitFor();
    await shot(page, "dashboard-payment");
    // Callback endpoints: add one; its secret is shown this once.
    await page.locator('#nav a[data-view="callbacks"]').click();
    await page.locator("#endpoint-url").fill(`${BASE}/healthz`);
    await page.locator("#endpoint-form button").click();
    const secret = await page.locator("#endpoint-created .secret").textContent({ timeout: 10000 });
    expect(secret.startsWith("whsec_"), `secret: ${secret}`);
    await page.locator("#endpoints section[data-endpoint]").first().waitFor();
    await page.locator('#nav a[data-view="subscriptions"]').click();
    await page.locator("h1", { hasText: "Subscriptions" }).waitFor();
    // The key is in sessionStorage only: not in localStorage, not in a cookie.
    const stored = await page.evaluate(() => ({ local: JSON.stringify(localStorage), session: sessionStorage.getItem("paybridge.adminKey"), cookie: document.cookie }));
    expect(stored.session === process.env.ADMIN_KEY, "the key is kept for this tab");
    expect(!stored.local.includes("pb_ak_") && !stored.cookie.includes("pb_ak_"), "the key is nowhere else");
    expect(problems.length === 0, `console errors: ${problems.join(" | ")}`);
    return { refund, result, timeline: kinds, endpointSecretShown: secret.startsWith("whsec_") };
  },

  /** The SDK from a page: classic <script> form, the module form, and checkout. */
  async "sdk-checkout"(browser) {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${BASE}/sdk/return?result=none`);
    // A plain <script src> defines window.PayBridge.
    await page.addScriptTag({ url: "/sdk/paybridge.js" });
    const classic = await page.evaluate(() => typeof window.PayBridge);
    expect(classic === "function", `window.PayBridge is ${classic}`);
    // As an ES module: configuration, products, then a checkout started by a click.
    const info = await page.evaluate(async (key) => {
      const { PayBridge, PayBridgeError } = await import("/sdk/paybridge.js");
      const pb = PayBridge({ baseUrl: location.origin, key });
      const products = await pb.getProducts();
      let error = null;
      try {
        await pb.request("GET", "/v1/orders/order_nope");
      } catch (e) {
        error = { isError: e instanceof Error && e instanceof PayBridgeError, type: e.type, code: e.code, status: e.status };
      }
      const product = products.find((p) => !p.recurring);
      window.__events = [];
      const button = document.createElement("button");
      button.id = "sdk-buy";
      button.textContent = "buy";
      button.addEventListener("click", () => {
        window.__result = pb
          .checkout({ line_items: [{ product: product.id, quantity: 2 }], onEvent: (e) => window.__events.push(e.type) })
          .then((r) => ({ ok: r }), (e) => ({ err: { type: e.type, code: e.code, message: e.message } }));
      });
      document.body.append(button);
      return { configured: await pb.isConfigured(), products: products.length, product, error };
    }, process.env.PUBLISHABLE_KEY);
    expect(info.configured === true, "isConfigured()");
    expect(info.error && info.error.isError && info.error.status === 404 && info.error.type === "invalid_request_error", `error: ${JSON.stringify(info.error)}`);
    const [popup] = await Promise.all([page.waitForEvent("popup"), page.locator("#sdk-buy").click()]);
    await popup.waitForURL(/\/sandbox\/pay\//);
    await popup.locator("#card").fill("4242 4242 4242 4242");
    await popup.locator("#pay").click();
    const outcome = await page.evaluate(() => window.__result);
    expect(outcome.ok, `checkout rejected: ${JSON.stringify(outcome.err)}`);
    const events = await page.evaluate(() => window.__events);
    return { ...outcome.ok, product: info.product, products: info.products, events };
  },
};

const browser = await launch();
try {
  const fn = scenarios[scenario] || checkoutScenarios[scenario] || authenticateScenarios[scenario];
  if (!fn) throw new Error(`no scenario ${scenario}`);
  const out = await fn(browser);
  console.log(JSON.stringify(out));
} catch (e) {
  if (artifacts) {
    mkdirSync(artifacts, { recursive: true });
    for (const [i, p] of browser.contexts().flatMap((c) => c.pages()).entries()) {
      await p.screenshot({ path: `${artifacts}/${scenario}-${i}.png` }).catch(() => {});
    }
  }
  console.error(`${scenario}: ${e.stack || e}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
