// The customer's side of a checkout (issue 15, items 1–4 and 7), in headless Chromium
// at the width in $WIDTH (1280 or 390). Run through run.mjs, driven from
// crates/paybridge/tests/api/browser_checkout.rs, which checks each result again
// through the API.
import { mkdirSync } from "node:fs";

const BASE = process.env.BASE;
const WIDTH = Number(process.env.WIDTH || 1280);
const shots = process.env.SCREENSHOTS || "";

function expect(cond, message) {
  if (!cond) throw new Error(message);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function page(browser) {
  const context = await browser.newContext({ viewport: { width: WIDTH, height: WIDTH > 600 ? 900 : 844 } });
  const p = await context.newPage();
  const problems = [];
  p.on("console", (m) => {
    if (m.type() === "error") problems.push(m.text());
  });
  p.on("pageerror", (e) => problems.push(String(e)));
  return { context, page: p, problems };
}

async function shot(p, name) {
  if (!shots) return;
  mkdirSync(shots, { recursive: true });
  await p.screenshot({ path: `${shots}/${name}-${WIDTH}.png`, fullPage: true });
}

/** No sideways scroll: the page fits the window's width. */
async function fits(p, what) {
  const { scroll, inner } = await p.evaluate(() => ({ scroll: document.documentElement.scrollWidth, inner: window.innerWidth }));
  expect(scroll <= inner, `${what} scrolls sideways at ${WIDTH} px: scrollWidth ${scroll} > innerWidth ${inner}`);
}

/** Clicks Buy on the product called `name`; returns the checkout popup once it shows the page. */
async function startBuying(p, name) {
  const button = p.locator("#products article", { hasText: name }).locator("button");
  await button.waitFor();
  const [popup] = await Promise.all([p.waitForEvent("popup"), button.click()]);
  await popup.waitForURL(/\/sandbox\/pay\//);
  await popup.locator("#pay").waitFor();
  return popup;
}

async function payWith(popup, card) {
  await popup.locator("#card").fill(card);
  await popup.locator("#pay").click();
}

const line = (p, name) => p.locator("#checkouts li", { hasText: name });

/** Whether a popup closes by itself within `ms`. */
function closesWithin(popup, ms) {
  if (popup.isClosed()) return Promise.resolve(true);
  return Promise.race([popup.waitForEvent("close", { timeout: ms }).then(() => true, () => false), sleep(ms).then(() => popup.isClosed())]);
}

export const scenarios = {
  /**
   * Item 1: two checkouts at once, each in its own window, each ending with its own
   * truth. The second is paid first; the first stays "waiting" (no timer calls it
   * cancelled), and is then paid in its own window.
   */
  async "checkout-concurrent"(browser) {
    const { page: p, problems } = await page(browser);
    await p.goto(`${BASE}/`);
    const first = await startBuying(p, "paybridge T-shirt");
    const firstUrl = first.url();
    const second = await startBuying(p, "Sticker pack");
    expect(first !== second && !first.isClosed(), "the second checkout took the first one's window");
    expect(first.url() === firstUrl, `the first window was navigated away: ${first.url()}`);
    expect(second.url() !== firstUrl, "both windows show the same checkout");
    await payWith(second, "4242 4242 4242 4242");
    await line(p, "Sticker pack").and(p.locator(".ok")).waitFor({ timeout: 20000 });
    // Longer than any grace timer the SDK ever had: nothing may change without the server.
    await sleep(6000);
    const firstSays = await line(p, "paybridge T-shirt").textContent();
    const status = await p.locator("#status").textContent();
    expect(/Waiting for the payment/.test(firstSays), `the unpaid checkout says: ${firstSays}`);
    expect(status.startsWith("Paid:"), `the status after the second checkout was paid: ${status}`);
    expect(!first.isClosed(), "the first checkout's window was closed");
    await payWith(first, "4242 4242 4242 4242");
    await line(p, "paybridge T-shirt").and(p.locator(".ok")).waitFor({ timeout: 20000 });
    const lines = await p.locator("#checkouts li").evaluateAll((lis) => lis.map((li) => ({ order: li.dataset.order, state: li.dataset.state, text: li.textContent })));
    expect(lines.length === 2 && lines.every((l) => l.state === "paid" && l.order), `lines: ${JSON.stringify(lines)}`);
    expect(problems.length === 0, `console errors: ${problems.join(" | ")}`);
    await shot(p, "storefront-two-checkouts");
    return { orders: lines.map((l) => l.order), lines };
  },

  /**
   * Item 2: the hosted page severs the popup from its opener (as Stripe's, on its own
   * origin, would); paying still settles the shop and the window closes by itself, and
   * a cancel is known at once, from the server.
   */
  async "checkout-severed"(browser) {
    const { page: p, problems } = await page(browser);
    await p.goto(`${BASE}/`);
    const popup = await startBuying(p, "paybridge T-shirt");
    const opener = await popup.evaluate(() => window.opener === null);
    expect(opener, "the hosted page can reach the shop through window.opener");
    await payWith(popup, "4242 4242 4242 4242");
    await p.locator("#status.ok").waitFor({ timeout: 20000 });
    expect(await closesWithin(popup, 10000), "the checkout window did not close after paying");
    const paid = await p.locator("#status").textContent();
    const order = paid.match(/order_[a-z0-9]+/)[0];
    // The order id is one unbroken piece on the line.
    const idLines = await p.locator("#status code.id").evaluate((e) => e.getClientRects().length);
    expect(idLines === 1, `the order id breaks over ${idLines} lines`);
    await fits(p, "the storefront");
    await shot(p, "storefront-paid");

    // Cancelling on the hosted page: the return page ends the checkout on the server,
    // and the shop says so as soon as the server does (no grace period).
    const again = await startBuying(p, "Sticker pack");
    const started = Date.now();
    await again.locator("#cancel").click();
    await line(p, "Sticker pack").and(p.locator("[data-state=checkout_canceled]")).waitFor({ timeout: 10000 });
    const tookMs = Date.now() - started;
    const cancelled = await line(p, "Sticker pack").textContent();
    expect(/Checkout cancelled\. Nothing was charged\./.test(cancelled), `cancelled line: ${cancelled}`);
    expect(await closesWithin(again, 10000), "the checkout window did not close after cancelling");
    const canceledOrder = await line(p, "Sticker pack").evaluate((li) => li.dataset.order || null);
    expect(problems.length === 0, `console errors: ${problems.join(" | ")}`);
    return { order, cancelled, tookMs, canceledOrder };
  },

  /**
   * Item 3: a decline keeps the customer on the hosted page, with the error inline and
   * the form to try again; the shop says "declined" from the server's event without
   * ending the checkout, and the retry pays.
   */
  async "checkout-decline-retry"(browser) {
    const { page: p, problems } = await page(browser);
    await p.goto(`${BASE}/`);
    const popup = await startBuying(p, "paybridge T-shirt");
    await payWith(popup, "4000 0000 0000 0002");
    await p.locator("#status.error").waitFor({ timeout: 20000 });
    const declined = await p.locator("#status").textContent();
    await sleep(1500);
    expect(!popup.isClosed(), "the checkout window closed on a decline");
    const inline = await popup.locator("#error").textContent();
    expect(/declined/i.test(inline), `the hosted page says: ${inline}`);
    expect(await popup.locator("#pay").isVisible(), "no form to retry on the hosted page");
    await fits(popup, "the payment page with a decline");
    await shot(popup, "checkout-declined");
    await payWith(popup, "4242 4242 4242 4242");
    await p.locator("#status.ok").waitFor({ timeout: 20000 });
    const paid = await p.locator("#status").textContent();
    const events = await p.locator("#events li").evaluateAll((lis) => lis.map((li) => li.dataset.type));
    expect(problems.length === 0, `console errors: ${problems.join(" | ")}`);
    return { declined, inline, paid, order: paid.match(/order_[a-z0-9]+/)[0], events };
  },

  /**
   * Item 4: the hosted page as a customer reads it. A number that is not a card, a past
   * expiry or a short CVC is an input error on the page (nothing is sent or recorded);
   * it asks for email, expiry and CVC; it writes money as the shop does; it says when
   * a price recurs; it fits a phone.
   */
  async "checkout-page"(browser) {
    const { page: p, problems } = await page(browser);
    await p.goto(`${BASE}/`);
    const shopPrice = (await p.locator("#products article", { hasText: "paybridge T-shirt" }).locator(".price").textContent()).trim();
    const popup = await startBuying(p, "paybridge T-shirt");
    const fields = await popup.evaluate(() => ["email", "card", "expiry", "cvc"].filter((id) => document.getElementById(id)));
    expect(fields.length === 4, `the page asks for: ${fields}`);
    const total = (await popup.locator("#total").textContent()).trim();
    expect(total === shopPrice, `the page says ${total}, the shop ${shopPrice}`);
    await fits(popup, "the payment page");
    await shot(popup, "checkout-page");

    const typo = async (field, value, id) => {
      await popup.locator(`#${field}`).fill(value);
      const [resp] = await Promise.all([popup.waitForResponse((r) => r.request().method() === "POST"), popup.locator("#pay").click()]);
      await popup.locator(`#${id}-error`).waitFor();
      const said = await popup.locator(`#${id}-error`).textContent();
      const declined = await popup.locator("#error").count();
      return { status: resp.status(), said, declined };
    };
    const card = await typo("card", "1234", "card");
    expect(card.status === 400 && /incomplete/.test(card.said) && card.declined === 0, `"1234": ${JSON.stringify(card)}`);
    const luhn = await typo("card", "4242 4242 4242 4241", "card");
    expect(luhn.status === 400 && /invalid/.test(luhn.said), `Luhn: ${JSON.stringify(luhn)}`);
    await popup.locator("#card").fill("4242 4242 4242 4242");
    const expiry = await typo("expiry", "01 / 20", "expiry");
    expect(expiry.status === 400 && /past/.test(expiry.said), `expiry: ${JSON.stringify(expiry)}`);
    await popup.locator("#expiry").fill("12 / 34");
    const cvc = await typo("cvc", "1", "cvc");
    expect(cvc.status === 400 && /security code/.test(cvc.said), `cvc: ${JSON.stringify(cvc)}`);
    await fits(popup, "the payment page with input errors");
    await shot(popup, "checkout-input-errors");
    const stillWaiting = await p.locator("#status").textContent();
    expect(/Waiting/.test(stillWaiting), `the shop says after typos: ${stillWaiting}`);
    await popup.close();

    // A recurring price says that it recurs.
    const sub = await startBuying(p, "Pro plan");
    const recurring = (await sub.locator("#recurring").textContent()).trim();
    expect(/then \$15\.00 every month/.test(recurring), `the subscription page says: ${recurring}`);
    await fits(sub, "the subscription page");
    await shot(sub, "checkout-subscription");
    await sub.close();
    expect(problems.length === 0, `console errors: ${problems.join(" | ")}`);
    return { shopPrice, total, card, luhn, expiry, cvc, recurring };
  },

  /** Item 7: the API docs: in-page links land, backtick spans are code, auth is explained. */
  async "api-docs"(browser) {
    const { page: p } = await page(browser);
    await p.goto(`${BASE}/docs`);
    const info = await p.evaluate(() => {
      const broken = [...document.querySelectorAll('a[href^="#"]')].map((a) => a.getAttribute("href").slice(1)).filter((id) => !document.getElementById(decodeURIComponent(id)));
      const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
      let backticks = 0;
      const samples = [];
      for (let n = walker.nextNode(); n; n = walker.nextNode()) {
        if (n.parentElement.closest("pre")) continue;
        const c = (n.textContent.match(/`/g) || []).length;
        if (c) {
          backticks += c;
          if (samples.length < 3) samples.push(n.textContent.slice(0, 80));
        }
      }
      const auth = document.getElementById("authentication");
      return {
        links: document.querySelectorAll('a[href^="#"]').length,
        broken: [...new Set(broken)],
        backticks,
        samples,
        codes: document.querySelectorAll("p code, li code").length,
        auth: auth ? auth.textContent : "",
      };
    });
    expect(info.broken.length === 0, `links to nowhere: ${info.broken.join(", ")}`);
    expect(info.backticks === 0, `${info.backticks} raw backticks, e.g. ${JSON.stringify(info.samples)}`);
    expect(/Authorization: Bearer/.test(info.auth) && /publishable/.test(info.auth) && /401/.test(info.auth), `the authentication section: ${info.auth.slice(0, 200)}`);
    // Following the first schema link lands on it.
    const first = p.locator('a[href^="#schema-"]').first();
    const target = (await first.getAttribute("href")).slice(1);
    await first.click();
    await p.waitForFunction((id) => location.hash === `#${id}`, target);
    const visible = await p.evaluate((id) => {
      const r = document.getElementById(id).getBoundingClientRect();
      return r.top >= -1 && r.top < window.innerHeight;
    }, target);
    expect(visible, `the link to #${target} does not show it`);
    await fits(p, "/docs");
    await shot(p, "api-docs");
    return { links: info.links, codes: info.codes };
  },
};
