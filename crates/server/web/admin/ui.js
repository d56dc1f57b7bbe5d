// The dashboard's building blocks: elements, money, dates, tables, and the shared state
// (the API client). Every page module imports from here.
import { formatMoney, minorUnits } from "/sdk/paybridge.js";

/** The signed-in client and who it is (set by admin.js). */
export const session = { pb: null, me: null };

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "on") for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
    else if (k.startsWith("data-") || k.startsWith("aria-") || k === "for" || k === "name" || k === "role") e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined && c !== false) e.append(c instanceof Node ? c : String(c));
  return e;
}

/** Replaces a node's children, skipping the empty ones (never the text "null"). */
export function fill(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

/** Minor units → `$25.00`, always in US English so every page reads the same. */
export const money = (amount, currency) => (currency ? formatMoney(amount, currency, "en-US") : String(amount));

/** How many minor units one major unit has: 100 for usd, 1 for jpy, 1000 for kwd (Stripe's
 * exponents, the server's table; not the browser's, which differ for isk, huf, twd…). */
export const unitsOf = (currency) => minorUnits(currency);

/** `"25.5"`, usd → 2550; null when it is not an amount. */
export function toMinor(text, currency) {
  const t = String(text).trim().replace(/[^0-9.]/g, "");
  if (!/^\d+(\.\d+)?$/.test(t)) return null;
  const units = unitsOf(currency);
  const [whole, frac = ""] = t.split(".");
  const digits = Math.round(Math.log10(units));
  if (frac.length > digits) return null;
  return Number(whole) * units + Number((frac + "000").slice(0, digits) || 0);
}

export const when = (secs) => (secs ? new Date(secs * 1000).toLocaleString("en-US", { dateStyle: "medium", timeStyle: "short" }) : "");
export const whenMs = (ms) => (ms ? new Date(ms).toLocaleString("en-US", { dateStyle: "medium", timeStyle: "medium" }) : "");
export const time = (ms) => new Date(ms).toLocaleTimeString("en-US", { hour: "2-digit", minute: "2-digit", hour12: false });

/** What a status means to a shop owner. An unpaid hosted checkout is open, not pending. */
export function statusLabel(s, method) {
  const hosted = method === "checkout" || method === "payment_link";
  if (hosted && (s === "pending" || s === "initiated")) return "open";
  return { requires_action: "authenticating", requires_capture: "uncaptured", partially_refunded: "partially refunded", initiated: "pending" }[s] || s;
}

export const status = (s, method) => {
  const label = statusLabel(s, method);
  return el("span", { class: `status ${label.replace(/ /g, "_")}`, "data-status": s }, label);
};

/** A table; on phones each row becomes a compact card (see admin.css). */
export function table(headers, rows, attrs = {}) {
  return el(
    "table",
    { class: `list ${attrs.class || ""}`.trim(), id: attrs.id },
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows),
  );
}

/** A cell with its column name, for the phone layout. */
export const td = (label, ...children) => el("td", { "data-label": label }, ...children);

/** An id, shortened where space is short: the full id is its title and is copied on click. */
export function shortId(id) {
  return el("code", { class: "id", title: id }, id);
}

export function failure(e) {
  return el("p", { class: "error", role: "alert" }, `${e.code ? `${e.code}: ` : ""}${e.message}`);
}

/** A button that asks before it acts: the first click arms it, the second confirms. */
export function confirmButton(label, question, action, attrs = {}) {
  const button = el("button", { type: "button", ...attrs }, label);
  const box = el("span", { class: "confirm" }, button);
  button.addEventListener("click", () => {
    const yes = el("button", { type: "button", class: "danger", "data-confirm": "yes" }, "Yes");
    const no = el("button", { type: "button", "data-confirm": "no" }, "No");
    const prompt = el("span", { class: "confirm-prompt", role: "alertdialog" }, question, " ", yes, " ", no);
    box.replaceChildren(prompt);
    no.addEventListener("click", () => box.replaceChildren(button));
    yes.addEventListener("click", async () => {
      yes.disabled = no.disabled = true;
      try {
        await action();
      } catch (e) {
        box.replaceChildren(button, failure(e));
      }
    });
  });
  return box;
}

/** Cached GETs for the names shown next to ids (customers' emails, products' names). */
const cache = new Map();
export function cached(path) {
  if (!cache.has(path)) cache.set(path, session.pb.request("GET", path).catch(() => null));
  return cache.get(path);
}
export function forget() {
  cache.clear();
}

/** The customer's email (or external id) for an id; null when there is none. */
export async function customerLabel(id) {
  if (!id) return null;
  const c = await cached(`/v1/customers/${id}`);
  return c ? c.email || c.name || c.external_id : null;
}

/** What an order sold: `"Mug × 2, T-shirt"`. */
export async function orderLabel(id) {
  const o = await cached(`/v1/orders/${id}`);
  if (!o) return "";
  return o.line_items.map((l) => (l.quantity > 1 ? `${l.name} × ${l.quantity}` : l.name)).join(", ");
}

/** Copies text to the clipboard; says so on the button. */
export function copyButton(text, label = "Copy") {
  const b = el("button", { type: "button", class: "copy" }, label);
  b.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text);
      b.textContent = "Copied";
    } catch {
      b.textContent = "Select and copy";
    }
  });
  return b;
}

/** An event as a sentence: "Refund of $10.00 succeeded". `p` gives a default currency. */
export function sentence(e, p = {}) {
  const o = (e.data && e.data.object) || {};
  const m = (a) => money(a, o.currency || p.currency);
  const [kind, what] = e.type.split(".");
  if (kind === "refund") return `Refund of ${m(o.amount)} ${what}`;
  if (kind === "payment") {
    const words = { pending: "is waiting for the customer", requires_action: "needs the customer to authenticate it (3-D Secure)", processing: "is processing", requires_capture: "is authorised, waiting for capture", succeeded: "succeeded", failed: "failed", canceled: "was canceled", expired: "expired (checkout abandoned)", disputed: "was disputed", partially_refunded: "was partly refunded", refunded: "was refunded in full" };
    return `Payment of ${m(o.amount)} ${words[what] || what}${what === "failed" && o.failure ? `: ${o.failure.message || o.failure.code}` : ""}`;
  }
  if (kind === "order") return `Order ${({ paid: "paid", partially_refunded: "partly refunded", refunded: "refunded" })[what] || what}`;
  if (kind === "checkout") return what === "completed" ? "Checkout completed" : "Checkout expired";
  return e.type;
}

/** A card as a shop owner knows it: `Visa •••• 4242`. */
export const cardLabel = (k) => `${(k.brand || "card").replace(/^./, (x) => x.toUpperCase())} •••• ${k.last4 || "????"}`;

/** Unix seconds of the start (or the end) of a `YYYY-MM-DD` day, in the browser's time zone. */
export const daySeconds = (d, end) => Math.floor(new Date(`${d}T${end ? "23:59:59" : "00:00:00"}`).getTime() / 1000);

/** A list's date pickers (`#filter-from`, `#filter-to`), read from and written to the
 * page's `from` / `to` parameters; `created[gte]` / `created[lte]` in the API. */
export function dateRange(params) {
  const from = el("input", { id: "filter-from", type: "date", value: params.get("from") || "", "aria-label": "from" });
  const to = el("input", { id: "filter-to", type: "date", value: params.get("to") || "", "aria-label": "to" });
  return {
    node: el("label", { class: "range" }, "From ", from, " to ", to),
    /** Copies the pickers into a page's parameters. */
    into(p) {
      if (from.value) p.set("from", from.value);
      if (to.value) p.set("to", to.value);
    },
  };
}

/** The API's `created[gte]` / `created[lte]` for a page's `from` / `to`. */
export function createdRange(params, api) {
  if (params.get("from")) api.set("created[gte]", daySeconds(params.get("from"), false));
  if (params.get("to")) api.set("created[lte]", daySeconds(params.get("to"), true));
  return api;
}

/** The raw object, a click away. */
export const raw = (obj) => el("details", { class: "raw" }, el("summary", {}, "raw event"), el("pre", {}, JSON.stringify(obj, null, 2)));

