// Payments: the list (filters, search, pages, CSV export) and a payment's page (refunds,
// timeline). Orders are in orders.js.
import { sentence, raw, session, el, fill, money, toMinor, when, whenMs, time, status, table, td, shortId, failure, customerLabel, orderLabel, cached, forget, cardLabel, dateRange, createdRange, copyButton } from "/admin/ui.js";

const PAGE = 50;
const STATUSES = ["", "pending", "requires_action", "processing", "requires_capture", "succeeded", "partially_refunded", "refunded", "failed", "canceled", "expired", "disputed"];
const STATUS_NAMES = { "": "any status", pending: "open / pending", requires_action: "awaiting authentication", requires_capture: "uncaptured", partially_refunded: "partially refunded" };
const SYMBOLS = { $: "usd", "€": "eur", "£": "gbp", "¥": "jpy" };

/** The shop's currencies: its products' (the most used first), then any it took money in
 * over the last year; usd when it has none. */
async function shopCurrencies() {
  const [products, report] = await Promise.all([cached("/v1/products?limit=100"), cached("/v1/reports/payments?days=366")]);
  const count = {};
  for (const p of (products && products.data) || []) count[p.currency] = (count[p.currency] || 0) + 1;
  const list = Object.keys(count).sort((a, b) => count[b] - count[a]);
  for (const d of (report && report.data) || []) for (const c of Object.keys(d.volume)) if (!list.includes(c)) list.push(c);
  return list.length ? list : ["usd"];
}

/** The currency amounts are typed in: the one chosen, else the shop's main one. */
async function amountCurrency(params) {
  return params.get("currency") || (await shopCurrencies())[0];
}

/** The API query of the dashboard's `#/payments?…` (the same for the list and the export).
 * Amounts are typed in major units of a currency (25.00 usd, 500 jpy, 1.250 kwd) and asked
 * for in its minor units, with that currency. */
async function apiQuery(params) {
  const api = new URLSearchParams();
  for (const k of ["status", "customer", "order", "product", "email", "last4", "currency"]) if (params.get(k)) api.set(k, params.get(k));
  createdRange(params, api);
  if (params.get("min") || params.get("max")) {
    const currency = await amountCurrency(params);
    api.set("currency", currency);
    if (params.get("min")) api.set("amount[gte]", toMinor(params.get("min"), currency) ?? "x");
    if (params.get("max")) api.set("amount[lte]", toMinor(params.get("max"), currency) ?? "x");
  }
  return api;
}

/** An amount as typed in a search: `25`, `$25.00`, `¥500`, `1.250 kwd`; null otherwise. */
function typedAmount(t) {
  const m = t.match(/^([$€£¥])?\s*(\d+(?:\.\d{1,3})?)\s*([a-z]{3})?$/i);
  if (!m || (m[1] && m[3])) return null;
  const currency = m[3] ? m[3].toLowerCase() : SYMBOLS[m[1]] || null;
  return { amount: m[2], currency };
}

/** What a search box's text means: an id, an email, a card's last 4, an amount, a product's name. */
async function interpret(q) {
  const t = q.trim();
  if (!t) return {};
  if (t.startsWith("payment_")) return { go: `#/payments/${t}` };
  if (t.startsWith("order_")) return { order: t };
  if (t.startsWith("customer_")) return { customer: t };
  if (t.startsWith("product_")) return { product: t };
  if (t.includes("@")) return { email: t };
  // Four digits are a card's last 4 (`4242`, `•••• 4242`); an amount has a symbol, a
  // currency or decimals (`$42.42`, `4242 jpy`).
  const last4 = t.match(/^(?:[•*x.]+\s*)?(\d{4})$/i);
  if (last4) return { last4: last4[1] };
  const typed = typedAmount(t);
  if (typed) {
    const currency = typed.currency || (await shopCurrencies())[0];
    if (toMinor(typed.amount, currency) !== null) return { min: typed.amount, max: typed.amount, currency };
  }
  const products = await session.pb.request("GET", "/v1/products?limit=100");
  const hit = products.data.find((p) => p.name.toLowerCase().includes(t.toLowerCase()));
  if (hit) return { product: hit.id };
  return { none: `Nothing is called “${t}”. Search by email, a card's last 4 digits, amount, product, or a payment, order or customer id.` };
}

export async function payments(params) {
  const pb = session.pb;
  const statusSel = el("select", { id: "filter-status", "aria-label": "status" }, STATUSES.map((s) => el("option", { value: s, selected: (params.get("status") || "") === s }, STATUS_NAMES[s] || s.replace(/_/g, " "))));
  const search = el("input", { id: "search", type: "search", placeholder: "Email, card's last 4, amount, product or id", value: params.get("q") || "", "aria-label": "search" });
  const range = dateRange(params);
  const currencies = await shopCurrencies();
  const chosen = params.get("currency") || "";
  if (chosen && !currencies.includes(chosen)) currencies.push(chosen);
  const currencySel = el("select", { id: "filter-currency", "aria-label": "currency" }, el("option", { value: "" }, "any currency"), currencies.map((c) => el("option", { value: c, selected: c === chosen }, c.toUpperCase())));
  const min = el("input", { id: "filter-min", inputMode: "decimal", placeholder: "min", size: 6, value: params.get("min") || "", "aria-label": "minimum amount" });
  const max = el("input", { id: "filter-max", inputMode: "decimal", placeholder: "max", size: 6, value: params.get("max") || "", "aria-label": "maximum amount" });
  const message = el("p", { id: "search-message", class: "muted" });
  const apply = async () => {
    const p = new URLSearchParams();
    if (statusSel.value) p.set("status", statusSel.value);
    range.into(p);
    if (currencySel.value) p.set("currency", currencySel.value);
    for (const [k, input] of [["min", min], ["max", max]]) if (input.value.trim()) p.set(k, input.value.trim());
    const q = search.value.trim();
    if (q) {
      const meant = await interpret(q);
      if (meant.go) return (location.hash = meant.go);
      p.set("q", q);
      for (const [k, v] of Object.entries(meant)) if (k !== "none") p.set(k, v);
      if (meant.none) p.set("none", "1");
    }
    location.hash = `#/payments?${p}`;
  };
  const form = el(
    "form",
    { class: "filters", id: "payment-filters" },
    search,
    statusSel,
    range.node,
    el("label", { class: "range" }, "Amount ", currencySel, min, " – ", max),
    el("button", { type: "submit" }, "Filter"),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    apply();
  });
  statusSel.addEventListener("change", apply);

  const api = await apiQuery(params);
  const exportButton = el("button", { type: "button", id: "export-csv" }, "Export CSV");
  exportButton.addEventListener("click", async () => {
    exportButton.disabled = true;
    try {
      const r = await fetch(`/v1/payments/export?${api}`, { headers: { Authorization: `Bearer ${sessionStorage.getItem("paybridge.adminKey")}` } });
      if (!r.ok) throw Object.assign(new Error((await r.json()).error?.message || r.statusText), { code: r.status });
      const blob = await r.blob();
      const a = el("a", { href: URL.createObjectURL(blob), download: "payments.csv", id: "export-link" });
      document.body.append(a);
      a.click();
      a.remove();
    } catch (e) {
      message.replaceWith(failure(e));
    } finally {
      exportButton.disabled = false;
    }
  });

  const header = [el("div", { class: "title-row" }, el("h1", {}, "Payments"), exportButton), form];
  if (params.get("none")) return [...header, el("p", { class: "muted", id: "no-payments" }, (await interpret(params.get("q"))).none)];
  const list = await pb.request("GET", `/v1/payments?${api}&limit=${PAGE}${params.get("after") ? `&starting_after=${encodeURIComponent(params.get("after"))}` : ""}`);
  const rows = await Promise.all(list.data.map(paymentRow));
  const next = new URLSearchParams(params);
  if (list.data.length) next.set("after", list.data[list.data.length - 1].id);
  const first = new URLSearchParams(params);
  first.delete("after");
  return [
    ...header,
    message,
    rows.length ? table(["amount", "status", "description", "customer", "card", "date", "id"], rows, { id: "payments-table" }) : el("p", { class: "muted", id: "no-payments" }, "No payments match."),
    el(
      "nav",
      { class: "pager", "aria-label": "pages" },
      params.get("after") ? el("a", { href: `#/payments?${first}`, id: "page-first" }, "← Newest") : null,
      list.has_more ? el("a", { href: `#/payments?${next}`, id: "page-next" }, "Older →") : null,
    ),
  ];
}

async function paymentRow(p) {
  const [what, customer] = await Promise.all([orderLabel(p.order), customerLabel(p.customer)]);
  const tr = el(
    "tr",
    { class: "link", "data-payment": p.id },
    td("amount", el("strong", { class: "amount" }, money(p.amount, p.currency))),
    td("status", status(p.status, p.method)),
    td("description", what),
    td("customer", customer || ""),
    td("card", p.card ? cardLabel(p.card) : ""),
    td("date", when(p.created)),
    td("id", shortId(p.id)),
  );
  tr.addEventListener("click", () => (location.hash = `#/payments/${p.id}`));
  return tr;
}

// ---------------------------------------------------------------- one payment

const REASONS = [
  ["requested_by_customer", "Requested by the customer"],
  ["duplicate", "Duplicate payment"],
  ["fraudulent", "Fraudulent"],
];
const reasonName = (r) => (REASONS.find(([k]) => k === r) || [r, r || ""])[1];

export async function payment(id, rerender) {
  const pb = session.pb;
  forget();
  const p = await pb.request("GET", `/v1/payments/${id}`);
  const [refunds, order, who] = await Promise.all([pb.request("GET", `/v1/refunds?payment=${id}&limit=100`), cached(`/v1/orders/${p.order}`), customerLabel(p.customer)]);
  const refundable = ["succeeded", "partially_refunded"].includes(p.status);
  const left = refundable ? p.amount_captured - p.amount_refunded : 0;
  const timeline = el("ol", { class: "timeline", id: "timeline" }, el("li", { class: "muted" }, "Loading the timeline…"));
  const items = order ? order.line_items.map((l) => el("li", {}, `${l.name}${l.quantity > 1 ? ` × ${l.quantity}` : ""} `, el("span", { class: "muted" }, money(l.amount, order.currency)))) : [];
  const nodes = [
    el("p", {}, el("a", { href: "#/payments" }, "← Payments")),
    el("h1", {}, money(p.amount, p.currency), " ", status(p.status, p.method)),
    el(
      "div",
      { class: "cards" },
      el(
        "section",
        { class: "card", id: "payment-summary" },
        items.length ? el("ul", { class: "items", id: "line-items" }, items) : null,
        el("dl", { class: "facts" },
          el("dt", {}, "Customer"), el("dd", { id: "payment-customer" }, p.customer ? el("a", { href: `#/customers/${p.customer}` }, who || p.customer) : "none"),
          el("dt", {}, "Captured"), el("dd", {}, money(p.amount_captured, p.currency)),
          el("dt", {}, "Refunded"), el("dd", {}, el("strong", { id: "amount-refunded" }, money(p.amount_refunded, p.currency))),
          el("dt", {}, "Method"), el("dd", {}, `${p.method.replace(/_/g, " ")} · ${p.provider_name}`),
          el("dt", {}, "Payment"), el("dd", {}, shortId(p.id)),
          el("dt", {}, "Order"), el("dd", {}, el("a", { href: `#/orders/${p.order}` }, shortId(p.order))),
          p.card ? [el("dt", {}, "Card"), el("dd", { id: "payment-card" }, cardLabel(p.card))] : null,
          p.provider.payment_intent ? [el("dt", {}, p.provider_name === "stripe" ? "Stripe" : "Provider"), el("dd", {}, shortId(p.provider.payment_intent))] : null,
          el("dt", {}, "Created"), el("dd", {}, when(p.created)),
        ),
        p.failure ? el("p", { class: "error" }, p.failure.message || "Declined", p.failure.decline_code ? ` (${p.failure.decline_code.replace(/_/g, " ")})` : "") : null,
        authenticationLink(p),
      ),
      el(
        "section",
        { class: "card", id: "refunds" },
        el("h2", {}, "Refunds"),
        left > 0 ? refundForm(p, left, rerender) : el("p", { class: "muted", id: "nothing-to-refund" }, refundable || p.amount_refunded ? "Nothing left to refund." : `Nothing to refund: the payment is ${status(p.status, p.method).textContent}.`),
        refunds.data.length
          ? table(["amount", "status", "reason", "date", "refund"], refunds.data.map((r) => el("tr", {}, td("amount", money(r.amount, r.currency)), td("status", status(r.status)), td("reason", reasonName(r.reason)), td("date", when(r.created)), td("refund", el("code", { class: "id" }, r.id)))))
          : null,
      ),
    ),
    el("section", { class: "card" }, el("h2", {}, "Timeline"), timeline),
  ];
  // The timeline takes several requests: the page shows first, the timeline after.
  queueMicrotask(async () => {
    try {
      fill(timeline, ...(await timelineOf(p, refunds.data)));
    } catch (e) {
      fill(timeline, el("li", {}, failure(e)));
    }
  });
  return nodes;
}

function refundForm(p, left, rerender) {
  const digits = money(left, p.currency).replace(/[^0-9.]/g, "");
  const amount = el("input", { id: "refund-amount", inputMode: "decimal", value: digits, required: true, size: 8, "aria-describedby": "refund-hint" });
  const reason = el("select", { id: "refund-reason", "aria-label": "reason" }, REASONS.map(([v, name]) => el("option", { value: v }, name)));
  const result = el("p", { id: "refund-result", "aria-live": "polite" });
  const ask = el("div", { id: "refund-confirm" });
  const form = el(
    "form",
    { id: "refund-form" },
    el("div", { class: "row" }, el("label", { for: "refund-amount" }, `Amount (${p.currency.toUpperCase()})`), amount, reason),
    el("p", { class: "muted", id: "refund-hint" }, `Up to ${money(left, p.currency)}.`),
    el("button", { class: "primary", type: "submit", id: "refund-button" }, "Refund…"),
    ask,
    result,
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const minor = toMinor(amount.value, p.currency);
    if (!minor || minor > left) {
      result.className = "error";
      result.textContent = `Enter an amount between ${money(1, p.currency)} and ${money(left, p.currency)}.`;
      return;
    }
    result.textContent = "";
    result.className = "";
    const yes = el("button", { type: "button", class: "danger", id: "refund-confirm-yes" }, `Refund ${money(minor, p.currency)}`);
    const no = el("button", { type: "button", id: "refund-confirm-no" }, "Cancel");
    fill(ask, el("p", { role: "alertdialog" }, `Refund ${money(minor, p.currency)} of this ${money(p.amount, p.currency)} payment (${reasonName(reason.value).toLowerCase()})? The money goes back to the customer; this cannot be undone.`), el("div", { class: "row" }, yes, no));
    no.addEventListener("click", () => fill(ask));
    yes.addEventListener("click", async () => {
      yes.disabled = no.disabled = true;
      try {
        const r = await session.pb.request("POST", "/v1/refunds", { payment: p.id, amount: minor, reason: reason.value }, { "Idempotency-Key": crypto.randomUUID() });
        fill(ask);
        result.className = "ok";
        result.textContent = `Refund of ${money(r.amount, r.currency)} ${r.status === "succeeded" ? "succeeded" : r.status} (${r.id}).`;
        setTimeout(rerender, 800);
      } catch (e) {
        fill(ask);
        result.className = "error";
        result.textContent = e.message;
      }
    });
  });
  return form;
}

// ---------------------------------------------------------------- timeline

/** Our events, the provider's events and every callback attempt, oldest first. */
// While the bank waits for the customer (3-D Secure), the page that lets them answer:
// the app was told (payment.requires_action), and a shop owner can send it by hand.
function authenticationLink(p) {
  const url = p.status === "requires_action" && p.next_action && p.next_action.url;
  if (!url) return null;
  return el(
    "div",
    { class: "card notice", id: "authentication-link" },
    el("p", {}, "The bank asks the customer to authenticate this charge (3-D Secure). Until they do, nothing is taken. Send them this page:"),
    el("p", {}, el("a", { href: url, target: "_blank", rel: "noopener", class: "url" }, url)),
    copyButton(url, "Copy link"),
  );
}

async function timelineOf(p, refunds) {
  const pb = session.pb;
  const items = [];
  const ours = [
    ...(await pb.request("GET", `/v1/events?payment=${p.id}&limit=100`)).data,
    ...(await pb.request("GET", `/v1/events?order=${p.order}&limit=100`)).data.filter((e) => e.type.startsWith("order.")),
  ];
  // Within a moment, the provider's event comes first (it caused ours), callbacks last.
  for (const e of ours) items.push({ at: e.created * 1000 + (idMs(e.id) % 1000), rank: 1, kind: "ours", label: sentence(e, p), bad: /failed|disputed/.test(e.type), raw: e });
  const objects = [p.provider.payment_intent, p.provider.checkout_session, p.provider.charge, ...refunds.map((r) => r.provider_refund_id)].filter(Boolean);
  if (objects.length) {
    const pe = await pb.request("GET", `/v1/provider_events?objects=${encodeURIComponent(objects.join(","))}&limit=100`);
    for (const e of pe.data) items.push({ at: e.first_received * 1000, rank: 0, kind: "provider", label: `${p.provider_name === "stripe" ? "Stripe" : "Provider"} sent ${e.type}${e.received_count > 1 ? ` (${e.received_count}×)` : ""} · ${e.outcome}`, raw: e });
  }
  for (const e of ours) {
    const ds = await pb.request("GET", `/v1/deliveries?event=${e.id}&limit=100`);
    for (const d of ds.data) {
      const full = await pb.request("GET", `/v1/deliveries/${d.id}`);
      const ep = await cached(`/v1/callback_endpoints/${d.endpoint}`);
      const url = ep ? ep.url : d.endpoint;
      full.attempt_log.forEach((a, i) => {
        const ok = a.status_code && a.status_code < 300;
        const last = i === full.attempt_log.length - 1;
        const retry = !ok && last && full.next_attempt_ms ? `, retrying at ${time(full.next_attempt_ms)}` : "";
        const label = ok ? `Callback to ${url} delivered (${a.status_code})` : `Callback to ${url} failed (${a.status_code ?? a.error})${retry}`;
        items.push({ at: a.attempted_ms, rank: 2, kind: "callback", label, bad: !ok, raw: { delivery: d.id, event: e.type, ...a } });
      });
    }
  }
  const second = (i) => Math.floor(i.at / 1000);
  items.sort((a, b) => second(a) - second(b) || a.rank - b.rank || a.at - b.at);
  if (!items.length) return [el("li", { class: "muted" }, "Nothing yet.")];
  return items.map((i) => el("li", { "data-kind": i.kind, class: i.bad ? "bad" : null }, el("span", { class: "muted" }, whenMs(i.at)), el("span", { class: `kind ${i.kind}` }, i.kind === "ours" ? "event" : i.kind), el("div", {}, el("span", { class: "what" }, i.label), raw(i.raw))));
}

// Ids are prefixed lowercase ULIDs: their first ten characters are the time in ms.
const ULID = "0123456789abcdefghjkmnpqrstvwxyz";
function idMs(id) {
  const u = id.slice(id.lastIndexOf("_") + 1, id.lastIndexOf("_") + 11);
  let ms = 0;
  for (const c of u) ms = ms * 32 + ULID.indexOf(c);
  return ms;
}
