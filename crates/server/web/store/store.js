// The demo storefront: lists the demo app's products and sells them through the SDK's
// hosted checkout, showing the order's events as they arrive.
import { PayBridge, formatMoney } from "/sdk/paybridge.js";

const key = document.querySelector('meta[name="paybridge-key"]').content;
const pb = PayBridge({ baseUrl: location.origin, key });
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c);
  return e;
}

// The demo shop's own server (paybridge plays it for the demo app: /store/session and
// /store/portal) says who is signed in: one demo shopper. A real shop's server does the
// same after its own login: it mints a customer session so that this page may check
// out as its customer with the publishable key, and opens the customer portal, which
// a publishable key never may.
let shopper = null;

async function shop(path) {
  const r = await fetch(path, { method: "POST" });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error?.message || r.statusText);
  return body;
}

async function shopperSession() {
  if (!shopper || shopper.expires_at - 60 < Date.now() / 1000) {
    shopper = await shop("/store/session");
    $("shopper").textContent = shopper.email;
  }
  return shopper;
}

async function openPortal() {
  const b = $("portal");
  b.disabled = true;
  $("portal-status").textContent = "Opening your account…";
  try {
    const { url } = await shop("/store/portal");
    location.href = url;
  } catch (e) {
    $("portal-status").textContent = `Cannot open your account: ${e.message}`;
    b.disabled = false;
  }
}

// Each checkout has its own line in #checkouts, and #status repeats the line of the
// checkout started last. A line changes only when paybridge says something of that
// checkout's order (its stream, or the SDK's settled promise, which is the server's
// word too): never because a window closed or a timer ran out.
let latest = null;

function say(entry, kind, ...parts) {
  entry.text.replaceChildren(...parts);
  entry.li.className = kind;
  entry.li.dataset.state = kind === "ok" ? "paid" : kind === "error" ? "declined" : entry.li.dataset.state;
  if (latest === entry) {
    const s = $("status");
    s.replaceChildren(...parts.map((p) => (typeof p === "string" ? p : p.cloneNode(true))));
    s.className = kind;
  }
}

function showEvent(event) {
  const o = event.data.object;
  const amount = o.amount_total ?? o.amount;
  const what = amount !== undefined && amount !== null && o.currency ? ` · ${formatMoney(amount, o.currency)}` : "";
  $("events").append(el("li", { "data-type": event.type }, el("code", {}, event.type), `${what} · ${o.status ?? ""}`));
}

async function buy(product) {
  const text = el("span", {});
  const cancel = el("button", { type: "button", class: "link" }, "Cancel");
  const li = el("li", { "data-product": product.id, "data-state": "waiting" }, el("strong", {}, product.name), " ", text, " ", cancel);
  const entry = { li, text };
  $("checkouts").prepend(li);
  latest = entry;
  $("events").replaceChildren();
  const controller = new AbortController();
  cancel.addEventListener("click", () => {
    cancel.disabled = true;
    say(entry, "muted", "Cancelling…");
    controller.abort();
  });
  say(entry, "muted", "Waiting for the payment in the checkout window…");
  try {
    // Without the shop's server (it failed), the checkout is an anonymous one.
    const who = await shopperSession().catch(() => null);
    const { transactionDetails: t } = await pb.checkout({
      ...(who ? { customer: who.customer, customer_session_secret: who.customer_session_secret } : {}),
      line_items: [{ product: product.id, quantity: 1 }],
      mode: product.recurring ? "subscription" : "payment",
      signal: controller.signal,
      onEvent: (event) => {
        const o = event.data.object;
        if (o.order) li.dataset.order = o.order;
        if (latest === entry) showEvent(event);
        if (event.type === "payment.failed") {
          const f = o.failure || {};
          say(entry, "error", `Declined: ${f.message || "the card was declined"}${f.decline_code ? ` (${f.decline_code})` : ""}. Try another card in the checkout window.`);
        }
      },
    });
    li.dataset.order = t.order;
    say(entry, "ok", `Paid: ${formatMoney(t.amountPaid, t.currency)} for order `, el("code", { class: "id" }, t.order), ". Confirmed by the provider's webhook.");
  } catch (e) {
    li.dataset.state = e.code || "failed";
    if (e.code === "checkout_canceled") say(entry, "muted", "Checkout cancelled. Nothing was charged.");
    else if (e.code === "checkout_expired") say(entry, "muted", "The checkout expired. Nothing was charged.");
    else say(entry, "error", `Something went wrong: ${e.message}`);
  } finally {
    cancel.remove();
  }
}

async function load() {
  try {
    const products = await pb.getProducts();
    const grid = $("products");
    grid.replaceChildren();
    for (const p of products) {
      const price = formatMoney(p.unit_amount, p.currency) + (p.recurring ? ` / ${p.recurring.interval}` : "");
      const button = el("button", { class: "primary", type: "button" }, p.recurring ? "Subscribe" : "Buy");
      button.setAttribute("data-product", p.id);
      button.addEventListener("click", () => buy(p));
      grid.append(el("article", { class: "card product" }, el("h3", {}, p.name), el("p", { class: "muted" }, p.description || ""), el("p", { class: "price" }, price), button));
    }
    if (!products.length) grid.append(el("p", { class: "muted" }, "No products yet."));
  } catch (e) {
    $("products").replaceChildren(el("p", { class: "error" }, `Cannot load products: ${e.message}`));
  }
}

load();
$("portal").addEventListener("click", openPortal);
shopperSession().catch((e) => ($("shopper").textContent = `nobody (${e.message})`));
