// The dashboard as a shop owner's back office (issue 15, items 5 and 6 and "missing for a
// shop owner"), in Debian's headless Chromium at 1280 px and 390 px. Driven by
// crates/paybridge/tests/api/backoffice.rs, which makes the shop's data first and checks
// what the pages did through the API afterwards.
//
//   BASE=… ADMIN_KEY=… node backoffice.mjs <scenario>
//
// Each scenario prints one JSON line with what it saw; a failed expectation exits
// non-zero with the reason (and screenshots in $ARTIFACTS when set).
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const BASE = process.env.BASE;
const ADMIN_KEY = process.env.ADMIN_KEY;
const scenario = process.argv[2];
const shots = process.env.SCREENSHOTS || "";
const artifacts = process.env.ARTIFACTS || "";
const WIDTHS = [1280, 390];
const PAGES = ["overview", "payments", "orders", "customers", "subscriptions", "products", "callbacks", "keys", "settings"];

function expect(cond, message) {
  if (!cond) throw new Error(message);
}

async function api(path, init = {}) {
  const r = await fetch(`${BASE}${path}`, { ...init, headers: { Authorization: `Bearer ${ADMIN_KEY}`, "Content-Type": "application/json", ...(init.headers || {}) } });
  const text = await r.text();
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** The README's pictures (scripts/screenshots): what a phone shows, not the whole page. */
async function shot(page, name) {
  if (!shots) return;
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: `${shots}/${name}.png` });
}

/** A signed-in dashboard at `width`, recording console errors. */
async function dashboard(browser, width) {
  const context = await browser.newContext({ viewport: { width, height: width > 500 ? 900 : 844 }, locale: "en-US", acceptDownloads: true });
  const page = await context.newPage();
  page.problems = [];
  page.on("console", (m) => {
    if (m.type() === "error" && !/404|Failed to load resource/.test(m.text())) page.problems.push(m.text());
  });
  page.on("pageerror", (e) => page.problems.push(String(e)));
  // WEB_DIR: the dashboard's files from the source tree, to iterate without a rebuild.
  if (process.env.WEB_DIR) {
    const { readFileSync } = await import("node:fs");
    await page.route(/\/admin(\/[a-z]+\.(js|css))?$/, (route) => {
      const file = new URL(route.request().url()).pathname.replace(/^\/admin\/?/, "") || "index.html";
      const type = file.endsWith(".css") ? "text/css" : file.endsWith(".js") ? "text/javascript" : "text/html";
      route.fulfill({ body: readFileSync(`${process.env.WEB_DIR}/${file}`, "utf8"), contentType: type });
    });
  }
  await page.goto(`${BASE}/admin`);
  await page.locator("#admin-key").fill(ADMIN_KEY);
  await page.locator("#login-button").click();
  await page.locator("#config-status").waitFor();
  return page;
}

/** Goes to `#/<hash>` and waits until the page has drawn (no "Loading…" left). */
async function visit(page, hash) {
  await page.evaluate((h) => {
    if (location.hash === h) window.dispatchEvent(new HashChangeEvent("hashchange"));
    else location.hash = h;
  }, `#/${hash}`);
  await drawn(page);
}

/** Waits until the page drawn is the one the address names. */
async function drawn(page, hashHas = "") {
  await page.waitForFunction((has) => document.getElementById("view").dataset.rendered === location.hash && decodeURIComponent(location.hash).includes(has), hashHas, { timeout: 30000 });
}

/** Text nodes that read "null" or "undefined": a value that was never there. */
const strays = (page) =>
  page.evaluate(() => {
    const out = [];
    const walk = document.createTreeWalker(document.getElementById("view"), NodeFilter.SHOW_TEXT);
    while (walk.nextNode()) if (/\b(null|undefined|NaN)\b/.test(walk.currentNode.textContent)) out.push(walk.currentNode.textContent.slice(0, 80));
    return out;
  });

const sideways = (page) => page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, inner: window.innerWidth }));

async function openMenu(page, width) {
  if (width < 720 && !(await page.locator('#nav a[data-view="overview"]').isVisible())) await page.locator("#menu-toggle").click();
}

async function go(page, width, view) {
  await openMenu(page, width);
  await page.locator(`#nav a[data-view="${view}"]`).click();
  await drawn(page, `#/${view}`);
}

const scenarios = {
  /** Item 5: no stray "null", the current page marked, no "Loading…" over an error, round charts, money as $25.00. */
  async "dashboard-defects"(browser) {
    const seen = {};
    for (const width of WIDTHS) {
      const page = await dashboard(browser, width);
      for (const view of PAGES) {
        await go(page, width, view);
        const stray = await strays(page);
        expect(stray.length === 0, `${width}px ${view}: stray text ${JSON.stringify(stray)}`);
        // The current page's link looks different from the others (on phones, with the menu open).
        await openMenu(page, width);
        const marked = await page.evaluate((v) => {
          const links = [...document.querySelectorAll("#nav a")];
          const cur = links.filter((a) => a.classList.contains("current"));
          const other = links.find((a) => a.dataset.view !== v);
          const look = (a) => {
            const s = getComputedStyle(a);
            return [s.color, s.borderBottomColor, s.borderLeftColor, s.borderLeftWidth, s.backgroundColor, s.fontWeight].join("|");
          };
          return { count: cur.length, isIt: cur[0] && cur[0].dataset.view === v, aria: cur[0] && cur[0].getAttribute("aria-current"), differs: cur[0] && look(cur[0]) !== look(other) };
        }, view);
        expect(marked.count === 1 && marked.isIt && marked.differs && marked.aria === "page", `${width}px ${view}: menu highlight ${JSON.stringify(marked)}`);
        if (width < 720) await page.locator("#menu-toggle").click();
      }
      // An unknown payment: the error, and nothing still "Loading…".
      await page.evaluate(() => (location.hash = "#/payments/payment_nope"));
      await page.locator("#view .error").waitFor();
      const text = await page.locator("#view").textContent();
      expect(!text.includes("Loading"), `${width}px unknown payment: ${text}`);
      expect(/No such payment/i.test(text), `${width}px unknown payment: ${text}`);
      // The charts keep their proportions: a dot is round and inside its chart.
      await visit(page, "overview");
      const charts = await page.evaluate(() =>
        [...document.querySelectorAll("svg.chart")].map((svg) => {
          const box = svg.getBoundingClientRect();
          const dots = [...svg.querySelectorAll("circle")].map((c) => c.getBoundingClientRect());
          return {
            ratio: svg.getAttribute("preserveAspectRatio"),
            aspect: box.width / box.height,
            round: dots.every((d) => Math.abs(d.width - d.height) < 0.5),
            inside: dots.every((d) => d.left >= box.left - 0.5 && d.right <= box.right + 0.5 && d.top >= box.top - 0.5 && d.bottom <= box.bottom + 0.5),
            dots: dots.length,
          };
        }),
      );
      expect(charts.length === 2, `charts: ${JSON.stringify(charts)}`);
      for (const c of charts) expect(c.ratio !== "none" && Math.abs(c.aspect - 600 / 180) < 0.05 && c.round && c.inside, `${width}px chart: ${JSON.stringify(c)}`);
      expect(charts[1].dots > 0, "the success rate has a dot");
      // Money reads $25.00 everywhere, the refund form too.
      await go(page, width, "payments");
      const amounts = await page.locator("#payments-table td[data-label=amount]").allTextContents();
      expect(amounts.length > 0 && amounts.every((a) => /^\$\d[\d,]*\.\d\d$/.test(a.trim())), `amounts: ${amounts.slice(0, 5)}`);
      await visit(page, `payments/${process.env.PAYMENT}`);
      const refund = await page.locator("#refund-amount").inputValue();
      expect(/^\d+\.\d\d$/.test(refund), `the refund amount is in dollars: ${refund}`);
      expect(page.problems.length === 0, `console errors: ${page.problems.join(" | ")}`);
      seen[width] = { amounts: amounts.length, charts, refund };
      await page.context().close();
    }
    return seen;
  },

  /** Item 6: compact lists on phones, nothing scrolls sideways, a menu that collapses. */
  async "dashboard-phone"(browser) {
    const seen = {};
    for (const width of WIDTHS) {
      const page = await dashboard(browser, width);
      const hashes = [...PAGES, `payments/${process.env.PAYMENT}`, `orders/${process.env.ORDER}`, `customers/${process.env.CUSTOMER}`, "payments/payment_nope", "products?archived=1"];
      const widths = {};
      for (const h of hashes) {
        await visit(page, h);
        // Open what opens: the callbacks' attempt lists and the timeline's raw events.
        if (h === "callbacks") for (const b of await page.locator("#endpoints tr[data-delivery] td[data-label=attempts] button").all()) await b.click();
        if (h === `payments/${process.env.PAYMENT}`) await page.locator("#timeline li").first().waitFor();
        const w = await sideways(page);
        widths[h] = w.scroll;
        if (width === 390 && h === "payments") await shot(page, "dashboard-phone");
        expect(w.scroll <= w.inner, `${width}px #/${h} scrolls sideways: ${w.scroll} > ${w.inner}`);
      }
      await visit(page, "payments");
      const rows = await page.evaluate(() => [...document.querySelectorAll("#payments-table tbody tr")].map((tr) => ({ h: tr.getBoundingClientRect().height, id: tr.querySelector("code.id").getBoundingClientRect().height })));
      expect(rows.length >= 10, `rows: ${rows.length}`);
      const tallest = Math.max(...rows.map((r) => r.h));
      const idTallest = Math.max(...rows.map((r) => r.id));
      // One id on one line; a row is at most a small card.
      expect(idTallest < 30, `${width}px an id wraps: ${idTallest}px`);
      expect(tallest < (width < 720 ? 100 : 80), `${width}px a payment row is ${tallest}px tall`);
      const menu = {};
      if (width < 720) {
        menu.before = await page.locator('#nav a[data-view="orders"]').isVisible();
        await page.locator("#menu-toggle").click();
        menu.open = await page.locator('#nav a[data-view="orders"]').isVisible();
        await page.locator('#nav a[data-view="orders"]').click();
        await page.locator("h1", { hasText: "Orders" }).waitFor();
        menu.after = await page.locator('#nav a[data-view="orders"]').isVisible();
        const barHeight = await page.locator("header").evaluate((h) => h.getBoundingClientRect().height);
        expect(!menu.before && menu.open && !menu.after && barHeight < 80, `the menu collapses: ${JSON.stringify(menu)}, header ${barHeight}px`);
      }
      expect(page.problems.length === 0, `console errors: ${page.problems.join(" | ")}`);
      seen[width] = { widths, tallest, idTallest, menu };
      await page.context().close();
    }
    return seen;
  },
};

// The back office's pages; each is one scenario so a failure names its feature.
Object.assign(scenarios, {
  /** Abandoned checkouts are open, then expired; the overview's figures add up. */
  async "truth-at-a-glance"(browser) {
    const out = {};
    for (const width of WIDTHS) {
      const page = await dashboard(browser, width);
      const figure = async (id) => Number(await page.locator(`#${id} strong`).textContent());
      const [total, ok, failed, open, abandoned] = [await figure("total-payments"), await figure("succeeded-payments"), await figure("failed-payments"), await figure("open-payments"), await figure("abandoned-payments")];
      expect(total === ok + failed + open + abandoned && total > 0, `${width}px figures: ${total} ≠ ${ok} + ${failed} + ${open} + ${abandoned}`);
      // The shop's own numbers: one decline, one open checkout, one expired.
      const want = JSON.parse(process.env.FIGURES);
      expect(ok === want.succeeded && failed === want.failed && open === want.open && abandoned === want.abandoned, `${width}px figures: ${JSON.stringify({ ok, failed, open, abandoned })} vs ${process.env.FIGURES}`);
      await visit(page, `payments/${process.env.OPEN_PAYMENT}`);
      const openLabel = await page.locator("h1 .status").textContent();
      await visit(page, `payments/${process.env.EXPIRED_PAYMENT}`);
      const expired = await page.locator("h1 .status").textContent();
      expect(openLabel === "open" && expired === "expired", `${width}px checkouts: ${openLabel}, ${expired}`);
      // The status filter says "open / pending", and the list says "open".
      await visit(page, "payments?status=pending");
      const listed = await page.locator(`tr[data-payment="${process.env.OPEN_PAYMENT}"] .status`).textContent();
      expect(listed === "open", `listed as ${listed}`);
      const option = await page.locator("#filter-status option:checked").textContent();
      expect(option.includes("open"), `filter: ${option}`);
      out[width] = { total, ok, failed, open, abandoned };
      await page.context().close();
    }
    return out;
  },

  /** Refunds in dollars, with a confirmation and reasons in words; none where nothing is left. */
  async refunds(browser) {
    const out = {};
    for (const width of WIDTHS) {
      const page = await dashboard(browser, width);
      const id = width > 500 ? process.env.PAYMENT : process.env.PAYMENT2;
      await visit(page, `payments/${id}`);
      const reasons = await page.locator("#refund-reason option").allTextContents();
      expect(reasons.includes("Requested by the customer") && reasons.every((r) => !r.includes("_")), `reasons: ${reasons}`);
      await page.locator("#refund-amount").fill("7.00");
      await page.locator("#refund-button").click();
      const question = await page.locator("#refund-confirm [role=alertdialog]").textContent();
      expect(question.includes("$7.00"), `asks: ${question}`);
      // Nothing moved yet.
      const before = await api(`/v1/refunds?payment=${id}`);
      expect(before.data.length === 0, "no refund before the confirmation");
      await page.locator("#refund-confirm-yes").click();
      await page.locator("#refund-result.ok").waitFor({ timeout: 15000 });
      const result = await page.locator("#refund-result").textContent();
      expect(/Refund of \$7\.00 succeeded/.test(result), `result: ${result}`);
      const refund = result.match(/refund_[a-z0-9]+/)[0];
      await page.locator("td code", { hasText: refund }).waitFor({ timeout: 15000 });
      // The timeline reads as sentences, the raw event a click away. Events and callback
      // attempts land a moment after the refund's answer: the page is opened again until
      // they are there.
      const timeline = async () => {
        await page.locator("#timeline li[data-kind], #timeline li .error").first().waitFor();
        return page.locator("#timeline li .what").allTextContents();
      };
      let lines = [];
      for (let i = 0; i < 15; i++) {
        lines = await timeline();
        if (lines.includes("Refund of $7.00 succeeded") && lines.some((l) => l.startsWith("Callback to"))) break;
        await page.waitForTimeout(1000);
        await visit(page, `payments/${id}`);
      }
      expect(lines.includes("Refund of $7.00 succeeded"), `timeline: ${lines}`);
      // A callback that failed says where, how, and when it is tried again.
      const callback = await page.locator("#timeline li.bad .what", { hasText: "Callback to" }).first().textContent();
      expect(/^Callback to http:\/\/\S+ failed \(4\d\d\)/.test(callback), `callback: ${callback}`);
      const first = page.locator("#timeline li details.raw").first();
      await first.locator("summary").click();
      const raw = await first.locator("pre").textContent();
      expect(raw.trim().startsWith("{"), `raw: ${raw.slice(0, 40)}`);
      // A payment with nothing left to refund has no form.
      await visit(page, `payments/${process.env.FAILED_PAYMENT}`);
      expect((await page.locator("#refund-form").count()) === 0 && (await page.locator("#refunds").textContent()).includes("Nothing to refund"), "no form on a failed payment");
      out[width] = { refund, reasons };
      await page.context().close();
    }
    return out;
  },

  /** Customers, and who and what on every list; search by email, amount, product, id. */
  async "who-and-what"(browser) {
    const out = {};
    for (const width of WIDTHS) {
      const page = await dashboard(browser, width);
      await go(page, width, "customers");
      const emails = await page.locator("#customers-table td[data-label=email]").allTextContents();
      expect(emails.includes("ada@example.com"), `customers: ${emails}`);
      await page.locator('tr[data-customer] td[data-label=email]', { hasText: "ada@example.com" }).click();
      await page.locator("#customer-email", { hasText: "ada@example.com" }).waitFor();
      const saved = await page.locator("#customer-cards li").first().textContent();
      expect(/Visa •••• 4242/.test(saved), `card: ${saved}`);
      const pays = await page.locator("#customer-payments tr[data-payment]").count();
      expect(pays >= 1, "the customer's payments");
      const log = await page.locator("#customer-log .what").allTextContents();
      expect(log.includes("Payment of $25.00 succeeded"), `the customer's log: ${log.slice(0, 5)}`);
      const subs = await page.locator("#subscriptions-table tr[data-subscription]").count();
      expect(subs === 1, `the customer's subscriptions: ${subs}`);
      // A portal link to send the customer, which opens their portal.
      await page.locator("#make-portal-link").click();
      const portal = await page.locator("#portal-link a").getAttribute("href");
      expect(/\/sandbox\/portal\/app_[a-z0-9]+\/bps_/.test(portal), `portal link: ${portal}`);
      expect((await page.locator("#portal-link button.copy").count()) === 1, "a copy button for the link");
      const opened = await browser.newPage();
      await opened.goto(portal);
      const portalEmail = (await opened.locator("#email").textContent()).trim();
      expect(portalEmail === "ada@example.com", `the portal is the customer's: ${portalEmail}`);
      expect((await opened.locator("#subscriptions li.sub").count()) === 1, "the customer's subscription in the portal");
      await opened.close();
      await go(page, width, "payments");
      const search = async (q) => {
        await page.locator("#search").fill(q);
        await page.locator("#payment-filters button[type=submit]").click();
        await drawn(page, q);
        return page.locator("tr[data-payment]").evaluateAll((trs) => trs.map((t) => t.dataset.payment));
      };
      const byEmail = await search("ada@example.com");
      const byAmount = await search("25.00");
      const byProduct = await search("poster");
      const byOrder = await search(process.env.ORDER);
      expect(byEmail.length >= 2 && byEmail.includes(process.env.PAYMENT) && !byEmail.includes(process.env.PAYMENT2), `by email: ${byEmail}`);
      expect(byAmount.length === 2 && byAmount.includes(process.env.PAYMENT) && byAmount.includes(process.env.PAYMENT2), `by amount: ${byAmount}`);
      expect(byProduct.length === 2 && byProduct.includes(process.env.PAYMENT) && byProduct.includes(process.env.PAYMENT2), `by product: ${byProduct} at ${await page.evaluate(() => location.hash + " " + document.getElementById("view").textContent.slice(0, 300))}`);
      // The payments list names the products and the customer.
      const row = page.locator(`tr[data-payment="${process.env.PAYMENT}"]`);
      const description = await row.locator("td[data-label=description]").textContent();
      const who = await row.locator("td[data-label=customer]").textContent();
      const card = await row.locator("td[data-label=card]").textContent();
      expect(description.includes("Poster") && who === "ada@example.com" && card === "Visa •••• 4242", `row: ${description} / ${who} / ${card}`);
      expect(byOrder.length === 1 && byOrder[0] === process.env.PAYMENT, `by order: ${byOrder}`);
      await page.locator("#search").fill(process.env.PAYMENT);
      await page.locator("#payment-filters button[type=submit]").click();
      await page.locator("#payment-summary").waitFor();
      const charged = (await page.locator("#payment-card").textContent()).trim();
      expect(charged === "Visa •••• 4242", `the card charged: ${charged}`);
      out[width] = { byEmail, byAmount, byProduct };
      await page.context().close();
    }
    return out;
  },

  /** Pages past the newest 50, date and amount filters, and the API's CSV export. */
  async "lists-that-scale"(browser) {
    const out = {};
    for (const width of WIDTHS) {
      const page = await dashboard(browser, width);
      await go(page, width, "payments");
      const first = await page.locator("tr[data-payment]").evaluateAll((t) => t.map((x) => x.dataset.payment));
      await page.locator("#page-next").click();
      await drawn(page, "after=");
      const second = await page.locator("tr[data-payment]").evaluateAll((t) => t.map((x) => x.dataset.payment));
      expect(first.length === 50 && second.length > 0 && second.every((id) => !first.includes(id)), `pages: ${first.length} then ${second.length}`);
      const more = await page.locator("#page-next").count();
      expect(more === 0 && first.length + second.length === Number(process.env.TOTAL_PAYMENTS), `${first.length} + ${second.length} payments listed (more: ${more}), ${process.env.TOTAL_PAYMENTS} made`);
      await page.locator("#page-first").click();
      await page.waitForFunction(() => !location.hash.includes("after="));
      await drawn(page);
      // From $20 to $30, today: the two posters.
      await visit(page, "payments");
      const today = await page.evaluate(() => new Date().toLocaleDateString("en-CA"));
      await page.locator("#filter-from").fill(today);
      await page.locator("#filter-to").fill(today);
      await page.locator("#filter-min").fill("20");
      await page.locator("#filter-max").fill("30");
      await page.locator("#payment-filters button[type=submit]").click();
      await drawn(page, "min=20");
      const filtered = await page.locator("tr[data-payment] td[data-label=amount]").allTextContents();
      expect(filtered.length === 2 && filtered.every((a) => a === "$25.00"), `filtered: ${filtered}`);
      const [download] = await Promise.all([page.waitForEvent("download"), page.locator("#export-csv").click()]);
      const path = await download.path();
      const csv = (await import("node:fs")).readFileSync(path, "utf8");
      const lines = csv.trim().split("\r\n");
      expect(lines[0].startsWith("id,created,status,amount,currency") && lines.length === 3, `csv: ${lines.length} lines: ${lines[0]}`);
      expect(lines.slice(1).every((l) => l.split(",")[3] === "25.00"), `csv rows: ${lines.slice(1)}`);
      // Tomorrow: nothing.
      const tomorrow = await page.evaluate(() => new Date(Date.now() + 86400000).toLocaleDateString("en-CA"));
      await visit(page, `payments?from=${tomorrow}`);
      expect((await page.locator("#no-payments").count()) === 1, "nothing tomorrow");
      out[width] = { first: first.length, second: second.length, filtered, csv: lines.length };
      await page.context().close();
    }
    return out;
  },

  /** The card on every list and page; searches by last 4, by amounts in any currency's
   * units, customers by email (asked of the API); date pickers on orders, customers and
   * subscriptions. */
  async "cards-and-dates"(browser) {
    const out = {};
    const E = process.env;
    for (const width of WIDTHS) {
      const page = await dashboard(browser, width);
      const asked = [];
      page.on("request", (r) => {
        if (r.url().includes("/v1/")) asked.push(decodeURIComponent(new URL(r.url()).pathname + new URL(r.url()).search));
      });
      const fits = async (what) => {
        const w = await sideways(page);
        expect(w.scroll <= w.inner, `${width}px ${what} scrolls sideways: ${w.scroll} > ${w.inner}`);
      };
      const listed = () => page.locator("tr[data-payment]").evaluateAll((trs) => trs.map((t) => t.dataset.payment));
      const cardOf = (id) => page.locator(`tr[data-payment="${id}"] td[data-label=card]`).textContent();
      // The card on the payments list, a decline's too.
      await visit(page, "payments?status=failed");
      expect((await cardOf(E.FAILED_PAYMENT)) === "Visa •••• 0341", `the declined card: ${await cardOf(E.FAILED_PAYMENT)}`);
      await fits("the failed payments");
      const search = async (q) => {
        await page.locator("#search").fill(q);
        await page.locator("#payment-filters button[type=submit]").click();
        await drawn(page, `q=${q.replace(/ /g, "+")}`);
        return listed();
      };
      await go(page, width, "payments");
      // Mia's Mastercard paid for her mug, the yen and the dinars; nobody else has it.
      const byLast4 = await search("4444");
      const mias = [E.MIA_PAYMENT, E.JPY_PAYMENT, E.KWD_PAYMENT];
      const cards4444 = await page.locator("tr[data-payment] td[data-label=card]").allTextContents();
      expect(byLast4.length === 3 && mias.every((id) => byLast4.includes(id)) && cards4444.every((c) => c === "Mastercard •••• 4444"), `by last 4: ${byLast4} ${cards4444}`);
      expect(asked.some((u) => u.startsWith("/v1/payments?") && u.includes("last4=4444")), "last 4 is asked of the API");
      const byDots = await search("•••• 0341");
      expect(byDots.length === 1 && byDots[0] === E.FAILED_PAYMENT, `by •••• 0341: ${byDots}`);
      // Amounts in the currency's own units: yen have none, dinars three.
      const byYen = await search("¥500");
      const yen = await page.locator("tr[data-payment] td[data-label=amount]").allTextContents();
      expect(byYen.length === 1 && byYen[0] === E.JPY_PAYMENT && yen[0] === "¥500", `¥500: ${byYen} ${yen}`);
      expect(asked.some((u) => u.includes("currency=jpy") && u.includes("amount[gte]=500&amount[lte]=500")), `¥500 is 500 yen: ${asked.filter((u) => u.includes("jpy"))}`);
      const byDinar = await search("1.250 kwd");
      expect(byDinar.length === 1 && byDinar[0] === E.KWD_PAYMENT, `1.250 kwd: ${byDinar}`);
      expect(asked.some((u) => u.includes("currency=kwd") && u.includes("amount[gte]=1250")), "1.250 KWD is 1250 fils");
      await visit(page, "payments");
      await page.locator("#filter-currency").selectOption("jpy");
      await page.locator("#filter-min").fill("499");
      await page.locator("#filter-max").fill("501");
      await page.locator("#payment-filters button[type=submit]").click();
      await drawn(page, "min=499");
      const filtered = await listed();
      expect(filtered.length === 1 && filtered[0] === E.JPY_PAYMENT, `yen from 499 to 501: ${filtered}`);
      await fits("the payments in yen");
      // The export has the card.
      await visit(page, "payments?q=4444&last4=4444");
      const [download] = await Promise.all([page.waitForEvent("download"), page.locator("#export-csv").click()]);
      const csv = (await import("node:fs")).readFileSync(await download.path(), "utf8").trim().split("\r\n");
      expect(csv.length === 4 && csv[0].endsWith("card_brand,card_last4") && csv.slice(1).every((l) => l.endsWith(",mastercard,4444")), `csv: ${csv}`);
      // The payment's page, the order's page and the customer's page.
      await visit(page, `payments/${E.MIA_PAYMENT}`);
      const charged = (await page.locator("#payment-card").textContent()).trim();
      expect(charged === "Mastercard •••• 4444", `the payment's card: ${charged}`);
      await page.locator("#payment-summary a", { hasText: E.MIA_ORDER }).click();
      await drawn(page, `orders/${E.MIA_ORDER}`);
      const orderCard = await page.locator(`#order-payments tr[data-payment="${E.MIA_PAYMENT}"] td[data-label=card]`).textContent();
      const items = await page.locator("#line-items").textContent();
      expect(orderCard === "Mastercard •••• 4444" && items.includes("Mug"), `the order's page: ${orderCard} / ${items}`);
      await fits("the order's page");
      await visit(page, `customers/${E.MIA}`);
      const customerCards = await page.locator("#customer-payments td[data-label=card]").allTextContents();
      expect(customerCards.length === 3 && customerCards.every((c) => c === "Mastercard •••• 4444"), `the customer's payments: ${customerCards}`);
      await fits("the customer's page");
      // Customers by the beginning of their email, in any case, found by the API.
      await go(page, width, "customers");
      await page.locator("#customer-search").fill("AD");
      await page.locator("#customer-filters button[type=submit]").click();
      await drawn(page, "q=AD");
      const found = await page.locator("#customers-table td[data-label=email]").allTextContents();
      expect(found.length === 1 && found[0] === "ada@example.com", `customers starting with AD: ${found}`);
      expect(asked.some((u) => u.startsWith("/v1/customers?") && u.includes("email_prefix=AD")), "the email is searched by the API");
      // Date pickers: today has them all, tomorrow none.
      const today = await page.evaluate(() => new Date().toLocaleDateString("en-CA"));
      const tomorrow = await page.evaluate(() => new Date(Date.now() + 86400000).toLocaleDateString("en-CA"));
      const dates = {};
      for (const [view, rows, none] of [["orders", "tr[data-order]", "#no-orders"], ["customers", "tr[data-customer]", "#no-customers"], ["subscriptions", "tr[data-subscription]", "#no-subscriptions"]]) {
        await go(page, width, view);
        const all = await page.locator(rows).count();
        for (const [day, want] of [[today, all], [tomorrow, 0]]) {
          await page.locator("#filter-from").fill(day);
          await page.locator("#filter-to").fill(day);
          await page.locator(`#view form.filters button[type=submit]`).click();
          await drawn(page, `from=${day}`);
          const n = await page.locator(rows).count();
          expect(n === want && (want > 0 || (await page.locator(none).count()) === 1), `${width}px ${view} on ${day}: ${n} rows, want ${want}`);
          expect(asked.some((u) => u.startsWith(`/v1/${view}?`) && u.includes("created[gte]=") && u.includes("created[lte]=")), `${view}: the dates are asked of the API`);
          await fits(`${view} on ${day}`);
        }
        dates[view] = all;
        expect(all > 0, `${view}: ${all}`);
      }
      expect(page.problems.length === 0, `console errors: ${page.problems.join(" | ")}`);
      out[width] = { byLast4, byYen, byDinar, dates };
      await page.context().close();
    }
    return out;
  },

  /** Subscriptions with plan, interval, customer and renewal; cancel at period end, then now. */
  async subscriptions(browser) {
    const out = {};
    for (const width of WIDTHS) {
      const page = await dashboard(browser, width);
      await go(page, width, "subscriptions");
      const id = width > 500 ? process.env.SUBSCRIPTION : process.env.SUBSCRIPTION2;
      const row = page.locator(`tr[data-subscription="${id}"]`);
      const text = await row.textContent();
      expect(text.includes("Club") && text.includes("$15.00 monthly") && text.includes("@example.com") && /\d{4}/.test(await row.locator("td[data-label=renews]").textContent()), `row: ${text}`);
      await row.locator("[data-cancel=period_end]").click();
      await row.locator("[data-confirm=yes]").click();
      await page.locator(`tr[data-subscription="${id}"] .warn`, { hasText: "ends" }).waitFor();
      const mid = await api(`/v1/subscriptions/${id}`);
      expect(mid.cancel_at_period_end === true && mid.status === "active", `at period end: ${JSON.stringify(mid)}`);
      await page.locator(`tr[data-subscription="${id}"] [data-cancel=now]`).click();
      await page.locator(`tr[data-subscription="${id}"] [data-confirm=yes]`).click();
      await page.locator(`tr[data-subscription="${id}"] .status`, { hasText: "canceled" }).waitFor();
      out[width] = (await api(`/v1/subscriptions/${id}`)).status;
      await page.context().close();
    }
    return out;
  },

  /** Set-up without curl: configuration, products, API keys, callbacks. */
  async "set-up"(browser) {
    const out = {};
    for (const width of WIDTHS) {
      const page = await dashboard(browser, width);
      // Configuration: keys are write-only; the sandbox has no Stripe webhook URL.
      await go(page, width, "settings");
      expect((await page.locator("#cfg-secret-key").getAttribute("type")) === "password" && (await page.locator("#cfg-secret-key").inputValue()) === "", "write-only secret key");
      expect(!(await page.locator("#webhook-url").isVisible()), "no webhook URL on the sandbox");
      await page.locator("#cfg-provider").selectOption("stripe");
      expect(await page.locator("#webhook-url").isVisible(), "Stripe's fields show for Stripe");
      // Products: create, edit, archive (with a confirmation).
      await go(page, width, "products");
      const name = `Tote ${width}-${Date.now() % 100000}`;
      const form = page.locator("#new-product form");
      await form.locator("input[name=name]").fill(name);
      await form.locator("input[name=price]").fill("19.50");
      await form.locator("button[type=submit]").click();
      const row = page.locator("tr[data-product]", { hasText: name });
      await row.waitFor();
      expect((await row.locator("td[data-label=price]").textContent()).includes("$19.50"), "created at $19.50");
      await row.locator("[data-edit]").click();
      const edit = page.locator("tr.editing form");
      await edit.locator("input[name=price]").fill("21");
      await edit.locator("button[type=submit]").click();
      await page.locator("tr[data-product]", { hasText: name }).locator("td[data-label=price]", { hasText: "$21.00" }).waitFor();
      const pid = await page.locator("tr[data-product]", { hasText: name }).getAttribute("data-product");
      await page.locator(`tr[data-product="${pid}"] [data-archive]`).click();
      await page.locator(`tr[data-product="${pid}"] [data-confirm=yes]`).click();
      await page.locator(`tr[data-product="${pid}"]`).waitFor({ state: "detached" });
      const archived = await api(`/v1/products/${pid}`);
      expect(archived.active === false && archived.unit_amount === 2100, `product: ${JSON.stringify(archived)}`);
      // API keys: mint a server key with a grant, then revoke it.
      await go(page, width, "keys");
      await page.locator("#key-role").selectOption("server");
      await page.locator("#key-permissions").fill("refunds:write");
      await page.locator("#key-form button[type=submit]").click();
      const secret = await page.locator("#new-key-secret").textContent();
      expect(secret.startsWith("pb_sk_"), `secret: ${secret.slice(0, 8)}`);
      const me = await (await fetch(`${BASE}/v1/me`, { headers: { Authorization: `Bearer ${secret}` } })).json();
      expect(me.role === "server" && me.permissions.includes("refunds:write"), `the new key: ${JSON.stringify(me)}`);
      // Too much is refused with the API's own words.
      await page.locator("#key-role").selectOption("publishable");
      await page.locator("#key-permissions").fill("refunds:write");
      await page.locator("#key-form button[type=submit]").click();
      await page.locator("#key-created .error").waitFor();
      await visit(page, "keys");
      const keyRow = page.locator("tr[data-key]", { hasText: secret.slice(-4) });
      await keyRow.locator("[data-revoke]").click();
      await keyRow.locator("[data-confirm=yes]").click();
      await page.locator("tr[data-key].revoked", { hasText: secret.slice(-4) }).waitFor();
      const gone = await fetch(`${BASE}/v1/me`, { headers: { Authorization: `Bearer ${secret}` } });
      expect(gone.status === 401, `a revoked key: ${gone.status}`);
      // Callbacks: choose events, copy the secret, failed attempts in red, delete with a confirmation.
      await go(page, width, "callbacks");
      await page.locator("#endpoint-url").fill(`${BASE}/healthz?${width}`);
      await page.locator("#events-all").uncheck();
      await page.locator('#event-choice input[value="payment.succeeded"]').check();
      await page.locator('#event-choice input[value="refund.succeeded"]').check();
      await page.locator("#endpoint-form button[type=submit]").click();
      await page.locator("#endpoint-created .secret").waitFor();
      expect((await page.locator("#endpoint-created button.copy").count()) === 1, "a copy button");
      const card = page.locator("section[data-endpoint]", { hasText: `healthz?${width}` });
      const events = await card.locator("p.muted").first().textContent();
      expect(events.includes("payment.succeeded, refund.succeeded"), `events: ${events}`);
      const bad = page.locator(`section[data-endpoint="${process.env.FAILING_ENDPOINT}"] tr.bad`).first();
      for (let i = 0; i < 15 && !(await bad.count()); i++) {
        await page.waitForTimeout(1000);
        await visit(page, "callbacks");
      }
      await bad.waitFor();
      const red = await bad.locator("td").first().evaluate((td) => getComputedStyle(td).color);
      expect(red === "rgb(176, 0, 32)", `failed attempts are red: ${red}`);
      const eid = await card.getAttribute("data-endpoint");
      await card.locator("[data-delete]").click();
      await card.locator("[data-confirm=yes]").click();
      // Deleted: gone from the list, or shown as no longer enabled.
      await page.waitForFunction((id) => {
        const card = document.querySelector(`section[data-endpoint="${id}"]`);
        return !card || card.querySelector(".status").dataset.status !== "enabled";
      }, eid);
      out[width] = { product: pid, endpoint: eid };
      expect(page.problems.length === 0, `console errors: ${page.problems.join(" | ")}`);
      await page.context().close();
    }
    return out;
  },
});

/**
 * Issue 17, part 1: the payment configuration page shows the Stripe webhook endpoint
 * paybridge made, its status and its API version (a Stripe app, set up by
 * crates/paybridge/tests/api/zero_touch.rs against a stub of Stripe's endpoints).
 */
scenarios["stripe-endpoint"] = async (browser) => {
  const out = {};
  for (const width of WIDTHS) {
    const page = await dashboard(browser, width);
    await go(page, width, "settings");
    const card = page.locator("#stripe-endpoint");
    await card.waitFor();
    out[width] = {
      setup: await page.locator("#endpoint-setup").getAttribute("data-setup"),
      words: (await page.locator("#endpoint-setup").textContent()).trim(),
      id: (await page.locator("#endpoint-id").textContent()).trim(),
      url: (await page.locator("#endpoint-url").textContent()).trim(),
      status: (await page.locator("#endpoint-status").textContent()).trim(),
      api_version: (await page.locator("#endpoint-api-version").textContent()).trim(),
      events: (await page.locator("#endpoint-events").textContent()).trim(),
      delivery: (await page.locator("#event-delivery").textContent()).trim(),
    };
    for (const id of ["#endpoint-id", "#endpoint-url", "#endpoint-status", "#endpoint-api-version"]) {
      expect(await page.locator(id).isVisible(), `${width}px: ${id} is not shown`);
    }
    const { scroll, inner } = await sideways(page);
    expect(scroll <= inner, `${width}px: the configuration page scrolls sideways (${scroll} > ${inner})`);
    expect(page.problems.length === 0, `console errors: ${page.problems.join(" | ")}`);
    await page.context().close();
  }
  return out;
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
try {
  const fn = scenarios[scenario];
  if (!fn) throw new Error(`no scenario ${scenario}`);
  const out = await fn(browser);
  console.log(JSON.stringify(out));
} catch (e) {
  if (artifacts) {
    mkdirSync(artifacts, { recursive: true });
    for (const [i, p] of browser.contexts().flatMap((c) => c.pages()).entries()) {
      await p.screenshot({ path: `${artifacts}/${scenario}-${i}.png`, fullPage: true }).catch(() => {});
    }
  }
  console.error(`${scenario}: ${e.stack || e}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
