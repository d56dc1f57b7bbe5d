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

function setStatus(text, kind = "") {
  const s = $("status");
  s.textContent = text;
  s.className = kind;
}

function showEvent(event) {
  const o = event.data.object;
  const amount = o.amount_total ?? o.amount;
  const what = amount !== undefined && o.currency ? ` · ${formatMoney(amount, o.currency)}` : "";
  $("events").append(el("li", { "data-type": event.type }, el("code", {}, event.type), `${what} · ${o.status ?? ""}`));
}

async function buy(product, button) {
  $("events").replaceChildren();
  setStatus("Waiting for the payment in the checkout window…");
  button.disabled = true;
  try {
    const { transactionDetails: t } = await pb.checkout({
      line_items: [{ product: product.id, quantity: 1 }],
      mode: product.recurring ? "subscription" : "payment",
      onEvent: showEvent,
    });
    setStatus(`Paid: ${formatMoney(t.amountPaid, t.currency)} for order ${t.order}. Confirmed by the provider's webhook.`, "ok");
  } catch (e) {
    if (e.type === "card_error") setStatus(`Declined: ${e.message}${e.declineCode ? ` (${e.declineCode})` : ""}`, "error");
    else if (e.code === "checkout_canceled") setStatus("Checkout cancelled. Nothing was charged.", "muted");
    else setStatus(`Something went wrong: ${e.message}`, "error");
  } finally {
    button.disabled = false;
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
      button.addEventListener("click", () => buy(p, button));
      grid.append(el("article", { class: "card product" }, el("h3", {}, p.name), el("p", { class: "muted" }, p.description || ""), el("p", { class: "price" }, price), button));
    }
    if (!products.length) grid.append(el("p", { class: "muted" }, "No products yet."));
  } catch (e) {
    $("products").replaceChildren(el("p", { class: "error" }, `Cannot load products: ${e.message}`));
  }
}

load();
