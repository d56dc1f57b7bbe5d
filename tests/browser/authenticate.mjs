// The sandbox's 3-D Secure page (issue 17, part 3), in headless Chromium at the width
// in $WIDTH (1280 or 390). Driven from crates/paybridge/tests/api/authentication.rs,
// which makes two off-session charges that need authentication ($COMPLETE_URL and
// $FAIL_URL, their `next_action.url`) and checks each outcome again through the API.
import { mkdirSync } from "node:fs";

const WIDTH = Number(process.env.WIDTH || 1280);
const shots = process.env.SCREENSHOTS || "";

function expect(cond, message) {
  if (!cond) throw new Error(message);
}

async function open(browser, url) {
  const context = await browser.newContext({ viewport: { width: WIDTH, height: WIDTH > 600 ? 900 : 844 } });
  const p = await context.newPage();
  const problems = [];
  p.on("console", (m) => {
    if (m.type() === "error") problems.push(m.text());
  });
  p.on("pageerror", (e) => problems.push(String(e)));
  await p.goto(url);
  return { context, page: p, problems };
}

/** No sideways scroll: the page fits the window's width. */
async function fits(p, what) {
  const { scroll, inner } = await p.evaluate(() => ({ scroll: document.documentElement.scrollWidth, inner: window.innerWidth }));
  expect(scroll <= inner, `${what} scrolls sideways at ${WIDTH} px: scrollWidth ${scroll} > innerWidth ${inner}`);
}

async function shot(p, name) {
  if (!shots) return;
  mkdirSync(shots, { recursive: true });
  await p.screenshot({ path: `${shots}/${name}-${WIDTH}.png`, fullPage: true });
}

export const scenarios = {
  async "authenticate-sandbox"(browser) {
    const out = {};
    // The dashboard's payment page, while the charge waits: the link to send, copyable.
    {
      const payment = JSON.parse(process.env.PAYMENT_JSON);
      const { context, page: p, problems } = await open(browser, `${process.env.BASE}/admin`);
      await p.locator("#admin-key").fill(process.env.ADMIN_KEY);
      await p.locator("#login-button").click();
      await p.locator("#config-status").waitFor();
      await p.evaluate((id) => (location.hash = `#/payments/${id}`), payment.id);
      const box = p.locator("#authentication-link");
      await box.waitFor();
      out.dashboard_link = await box.locator("a").getAttribute("href");
      out.dashboard_says = (await box.textContent()).trim();
      out.dashboard_copy = (await box.locator("button.copy").count()) === 1;
      await fits(p, "the dashboard's payment page");
      await shot(p, "dashboard-authentication-link");
      expect(problems.length === 0, `console errors on the dashboard: ${problems.join("; ")}`);
      await context.close();
    }
    for (const [which, button] of [["complete", "#complete"], ["fail", "#fail"]]) {
      const url = which === "complete" ? process.env.COMPLETE_URL : process.env.FAIL_URL;
      const { context, page: p, problems } = await open(browser, url);
      await p.locator(button).waitFor();
      out[`${which}_amount`] = (await p.locator("#amount").textContent()).trim();
      out[`${which}_card`] = (await p.locator("#card").textContent()).trim();
      await fits(p, `the authentication page (${which})`);
      await shot(p, `authenticate-${which}`);
      // Both buttons are reachable without scrolling sideways, and big enough to tap.
      for (const b of ["#complete", "#fail"]) {
        const box = await p.locator(b).boundingBox();
        expect(box && box.x >= 0 && box.x + box.width <= WIDTH && box.height >= 40, `${b} at ${WIDTH} px: ${JSON.stringify(box)}`);
      }
      await p.locator(button).click();
      await p.locator("#outcome").waitFor();
      out[which] = (await p.locator("#outcome").textContent()).trim();
      await fits(p, `the outcome page (${which})`);
      // Back and again: a second answer changes nothing; the page says how it stands.
      await p.goBack();
      await p.waitForLoadState();
      if (await p.locator(button).count()) {
        await p.locator(button).click();
        await p.waitForLoadState();
      }
      out[`${which}_again`] = (await p.locator("main").textContent()).trim();
      expect(problems.length === 0, `console errors on the ${which} page: ${problems.join("; ")}`);
      await context.close();
    }
    // The SDK finds the payment's page and opens it from a click.
    const payment = JSON.parse(process.env.PAYMENT_JSON);
    const { context, page: p, problems } = await open(browser, `${process.env.BASE}/admin`);
    await p.evaluate(async (payment) => {
      const { PayBridge } = await import("/sdk/paybridge.js");
      const pb = PayBridge({ key: "pb_pk_test_unused" });
      window.__next = pb.payments.nextAction({ object: "order", payments: [payment] });
      const b = document.createElement("button");
      b.id = "pb-authenticate";
      b.textContent = "Authenticate";
      b.addEventListener("click", () => pb.payments.authenticate(payment));
      document.body.prepend(b);
    }, payment);
    out.sdk_next_action = await p.evaluate(() => window.__next);
    const [popup] = await Promise.all([p.waitForEvent("popup"), p.locator("#pb-authenticate").click()]);
    await popup.waitForLoadState();
    out.sdk_opened = popup.url();
    out.sdk_page = (await popup.locator("main").textContent()).trim();
    expect(problems.length === 0, `console errors with the SDK: ${problems.join("; ")}`);
    await context.close();
    return out;
  },
};
