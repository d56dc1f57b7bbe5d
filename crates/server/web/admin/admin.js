// The admin dashboard: a small single-page app over paybridge's own API, with the
// app's admin key. The key lives in memory and in sessionStorage (gone when the tab
// closes), nowhere else.
import { PayBridge, formatMoney } from "/sdk/paybridge.js";
import { bars, rate } from "/admin/charts.js";

const KEY = "paybridge.adminKey";
const view = document.getElementById("view");
let pb = null;
let me = null;

// ---------------------------------------------------------------- helpers

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "on") for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
    else if (k.startsWith("data-") || k.startsWith("aria-") || k === "for" || k === "name" || k === "role") e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

const money = (amount, currency) => (currency ? formatMoney(amount, currency) : String(amount));
const when = (secs) => (secs ? new Date(secs * 1000).toLocaleString() : "");
const whenMs = (ms) => (ms ? new Date(ms).toLocaleString() : "");
const status = (s) => el("span", { class: `status ${s}` }, s);

// Ids are prefixed lowercase ULIDs: their first ten characters are the time in ms.
const ULID = "0123456789abcdefghjkmnpqrstvwxyz";
function idMs(id) {
  const u = id.slice(id.lastIndexOf("_") + 1, id.lastIndexOf("_") + 11);
  let ms = 0;
  for (const c of u) ms = ms * 32 + ULID.indexOf(c);
  return ms;
}

function show(...nodes) {
  view.replaceChildren(...nodes);
}

function failure(e) {
  return el("p", { class: "error", role: "alert" }, `${e.code ? `${e.code}: ` : ""}${e.message}`);
}

async function guard(fn) {
  try {
    await fn();
  } catch (e) {
    if (e.status === 401) return logout();
    view.append(failure(e));
  }
}

function table(headers, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))), el("tbody", {}, rows));
}

// ---------------------------------------------------------------- login

function login(message) {
  document.getElementById("nav").hidden = true;
  const input = el("input", { id: "admin-key", type: "password", placeholder: "pb_ak_test_…", autocomplete: "off", required: true, size: 40 });
  const form = el(
    "form",
    { class: "card narrow", id: "login" },
    el("h1", {}, "Dashboard"),
    el("p", { class: "muted" }, "Sign in with an app's admin key. It is kept in this tab only."),
    message ? el("p", { class: "error", role: "alert" }, message) : null,
    el("div", { class: "row" }, input, el("button", { class: "primary", type: "submit", id: "login-button" }, "Sign in")),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    await start(input.value.trim());
  });
  show(form);
  input.focus();
}

function logout() {
  sessionStorage.removeItem(KEY);
  pb = null;
  me = null;
  login();
}

async function start(key) {
  const client = PayBridge({ baseUrl: location.origin, key });
  try {
    const who = await client.request("GET", "/v1/me");
    if (who.role !== "admin") return login(`That is a ${who.role} key; the dashboard needs an admin key.`);
    pb = client;
    me = who;
    sessionStorage.setItem(KEY, key);
  } catch (e) {
    return login(e.status === 401 ? "That key is not valid." : e.message);
  }
  document.getElementById("nav").hidden = false;
  const badge = document.getElementById("env-badge");
  badge.hidden = false;
  badge.textContent = me.environment === "live" ? "LIVE" : "TEST";
  try {
    const app = await pb.request("GET", `/v1/apps/${me.app}`);
    document.getElementById("app-name").textContent = app.name;
  } catch {
    document.getElementById("app-name").textContent = me.app;
  }
  route();
}

// ---------------------------------------------------------------- overview

async function overview() {
  const cfg = await pb.request("GET", "/v1/payment_config");
  const report = await pb.request("GET", "/v1/reports/payments?days=30");
  const days = report.data;
  const currencies = {};
  for (const d of days) for (const [c, v] of Object.entries(d.volume)) currencies[c] = (currencies[c] || 0) + v;
  const main = Object.entries(currencies).sort((a, b) => b[1] - a[1])[0]?.[0] || "usd";
  const labels = days.map((d) => d.date.slice(5));
  const total = days.reduce((n, d) => n + d.payments, 0);
  const ok = days.reduce((n, d) => n + d.succeeded, 0);
  const failed = days.reduce((n, d) => n + d.failed, 0);
  show(
    el("h1", {}, "Overview"),
    el(
      "div",
      { class: "cards" },
      el(
        "section",
        { class: "card", id: "config-status" },
        el("h2", {}, "Configuration"),
        el("p", {}, "Provider: ", el("strong", {}, cfg.provider || "none"), " ", el("span", { class: `status ${cfg.configured ? "configured" : "unconfigured"}` }, cfg.configured ? "configured" : "not configured")),
        el("p", {}, "Signing secret: ", cfg.has_signing_secret ? "set" : "missing"),
        el("p", { class: "muted" }, "Webhook URL for Stripe: ", el("code", {}, cfg.webhook_callback_url)),
      ),
      el(
        "section",
        { class: "card" },
        el("h2", {}, "Last 30 days"),
        el("p", {}, el("strong", { id: "total-payments" }, total), " payments, ", el("strong", {}, ok), " succeeded, ", el("strong", {}, failed), " failed"),
        el("p", {}, "Volume: ", Object.entries(currencies).map(([c, v]) => money(v, c)).join(" · ") || "none yet"),
      ),
    ),
    el("section", { class: "card" }, el("h2", {}, `Volume per day (${main.toUpperCase()})`), bars(days.map((d) => d.volume[main] || 0), labels, { label: "volume per day", format: (v) => money(v, main) })),
    el("section", { class: "card" }, el("h2", {}, "Success rate per day"), rate(days.map((d) => d.success_rate), labels, { label: "success rate per day" })),
  );
}

// ---------------------------------------------------------------- payments

const STATUSES = ["", "pending", "processing", "requires_capture", "succeeded", "partially_refunded", "refunded", "failed", "canceled", "expired", "disputed"];

async function payments(params) {
  const statusSel = el("select", { id: "filter-status" }, STATUSES.map((s) => el("option", { value: s, selected: params.get("status") === s }, s || "any status")));
  const customer = el("input", { id: "filter-customer", placeholder: "customer_…", value: params.get("customer") || "" });
  const search = el("input", { id: "search", placeholder: "payment_… or order_…", value: params.get("q") || "" });
  const apply = () => {
    const p = new URLSearchParams();
    if (statusSel.value) p.set("status", statusSel.value);
    if (customer.value.trim()) p.set("customer", customer.value.trim());
    if (search.value.trim()) p.set("q", search.value.trim());
    location.hash = `#/payments?${p}`;
  };
  const form = el("form", { class: "row", id: "payment-filters" }, statusSel, customer, search, el("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    apply();
  });
  statusSel.addEventListener("change", apply);

  const q = params.get("q") || "";
  if (q.startsWith("payment_")) {
    location.hash = `#/payments/${q}`;
    return;
  }
  const api = new URLSearchParams({ limit: "50" });
  if (params.get("status")) api.set("status", params.get("status"));
  if (params.get("customer")) api.set("customer", params.get("customer"));
  if (q.startsWith("order_")) api.set("order", q);
  const list = await pb.request("GET", `/v1/payments?${api}`);
  const rows = list.data
    .filter((p) => !q || q.startsWith("order_") || p.id.includes(q) || (p.customer || "").includes(q))
    .map((p) => {
      const tr = el(
        "tr",
        { class: "link", "data-payment": p.id },
        el("td", {}, when(p.created)),
        el("td", {}, el("code", {}, p.id)),
        el("td", {}, money(p.amount, p.currency)),
        el("td", {}, status(p.status)),
        el("td", {}, p.method),
        el("td", {}, p.customer || ""),
      );
      tr.addEventListener("click", () => (location.hash = `#/payments/${p.id}`));
      return tr;
    });
  show(
    el("h1", {}, "Payments"),
    form,
    rows.length ? table(["created", "id", "amount", "status", "method", "customer"], rows) : el("p", { class: "muted", id: "no-payments" }, "No payments match."),
    list.has_more ? el("p", { class: "muted" }, "Showing the newest 50.") : null,
  );
}

async function payment(id) {
  const p = await pb.request("GET", `/v1/payments/${id}`);
  const refunds = await pb.request("GET", `/v1/refunds?payment=${id}&limit=100`);
  const left = p.amount_captured - p.amount_refunded;
  const amount = el("input", { id: "refund-amount", type: "number", min: 1, max: left, value: left, step: 1, required: true });
  const reason = el("select", { id: "refund-reason" }, ["requested_by_customer", "duplicate", "fraudulent"].map((r) => el("option", { value: r }, r)));
  const result = el("p", { id: "refund-result", "aria-live": "polite" });
  const refundForm = el(
    "form",
    { class: "row", id: "refund-form" },
    el("label", { for: "refund-amount" }, `Amount (minor units, up to ${left})`),
    amount,
    reason,
    el("button", { class: "primary", type: "submit", id: "refund-button", disabled: left <= 0 }, "Refund"),
  );
  refundForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const button = document.getElementById("refund-button");
    button.disabled = true;
    try {
      const r = await pb.request("POST", "/v1/refunds", { payment: id, amount: Number(amount.value), reason: reason.value }, { "Idempotency-Key": crypto.randomUUID() });
      result.className = "ok";
      result.textContent = `Refund ${r.id}: ${money(r.amount, r.currency)}, ${r.status}.`;
      setTimeout(() => route(), 800);
    } catch (e) {
      result.className = "error";
      result.textContent = `${e.code || "error"}: ${e.message}`;
      button.disabled = false;
    }
  });
  const timeline = el("ol", { class: "timeline", id: "timeline" }, el("li", { class: "muted" }, "Loading…"));
  show(
    el("p", {}, el("a", { href: "#/payments" }, "← Payments")),
    el("h1", {}, money(p.amount, p.currency), " ", status(p.status)),
    el(
      "div",
      { class: "cards" },
      el(
        "section",
        { class: "card", id: "payment-summary" },
        el("p", {}, "Payment ", el("code", {}, p.id)),
        el("p", {}, "Order ", el("code", {}, p.order), p.customer ? [" · customer ", el("code", {}, p.customer)] : null),
        el("p", {}, `Captured ${money(p.amount_captured, p.currency)} · refunded `, el("strong", { id: "amount-refunded" }, money(p.amount_refunded, p.currency))),
        el("p", { class: "muted" }, `${p.method} · capture ${p.capture} · ${p.provider_name}`, p.provider.payment_intent ? [" · ", el("code", {}, p.provider.payment_intent)] : null),
        p.failure ? el("p", { class: "error" }, `${p.failure.code || ""} ${p.failure.decline_code || ""}: ${p.failure.message || ""}`) : null,
      ),
      el("section", { class: "card" }, el("h2", {}, "Refund"), refundForm, result, refunds.data.length ? table(["refund", "amount", "status", "reason"], refunds.data.map((r) => el("tr", {}, el("td", {}, el("code", {}, r.id)), el("td", {}, money(r.amount, r.currency)), el("td", {}, status(r.status)), el("td", {}, r.reason || "")))) : null),
    ),
    el("section", { class: "card" }, el("h2", {}, "Timeline"), timeline),
  );
  timeline.replaceChildren(...(await timelineOf(p, refunds.data)));
}

/** Our events, the provider's events and every callback attempt, oldest first. */
async function timelineOf(p, refunds) {
  const items = [];
  const ours = [
    ...(await pb.request("GET", `/v1/events?payment=${p.id}&limit=100`)).data,
    ...(await pb.request("GET", `/v1/events?order=${p.order}&limit=100`)).data.filter((e) => e.type.startsWith("order.")),
  ];
  // Within a moment, the provider's event comes first (it caused ours), callbacks last.
  for (const e of ours) items.push({ at: idMs(e.id), rank: 1, kind: "ours", label: e.type, detail: e.id });
  const objects = [p.provider.payment_intent, p.provider.checkout_session, p.provider.charge, ...refunds.map((r) => r.provider_refund_id)].filter(Boolean);
  if (objects.length) {
    const pe = await pb.request("GET", `/v1/provider_events?objects=${encodeURIComponent(objects.join(","))}&limit=100`);
    for (const e of pe.data) items.push({ at: e.first_received * 1000, rank: 0, kind: "provider", label: e.type, detail: `${e.id} · ${e.outcome}${e.received_count > 1 ? ` · received ${e.received_count}×` : ""}` });
  }
  for (const e of ours) {
    const ds = await pb.request("GET", `/v1/deliveries?event=${e.id}&limit=100`);
    for (const d of ds.data) {
      const full = await pb.request("GET", `/v1/deliveries/${d.id}`);
      for (const a of full.attempt_log) {
        items.push({ at: a.attempted_ms, rank: 2, kind: "callback", label: `${e.type} → ${a.status_code ?? a.error}`, detail: `${d.endpoint} · ${a.latency_ms} ms · ${a.node}` });
      }
    }
  }
  const second = (i) => Math.floor(i.at / 1000);
  items.sort((a, b) => second(a) - second(b) || a.rank - b.rank || a.at - b.at);
  if (!items.length) return [el("li", { class: "muted" }, "Nothing yet.")];
  return items.map((i) => el("li", { "data-kind": i.kind }, el("span", {}, whenMs(i.at)), el("span", { class: `kind ${i.kind}` }, i.kind === "ours" ? "event" : i.kind), el("span", {}, el("strong", {}, i.label), " ", el("span", { class: "muted" }, i.detail))));
}

// ---------------------------------------------------------------- orders

async function orders(params) {
  const statusSel = el("select", { id: "order-status" }, ["", "open", "paid", "partially_refunded", "refunded"].map((s) => el("option", { value: s, selected: params.get("status") === s }, s || "any status")));
  const customer = el("input", { id: "order-customer", placeholder: "customer_…", value: params.get("customer") || "" });
  const form = el("form", { class: "row" }, statusSel, customer, el("button", { type: "submit" }, "Filter"));
  const apply = (e) => {
    if (e) e.preventDefault();
    const p = new URLSearchParams();
    if (statusSel.value) p.set("status", statusSel.value);
    if (customer.value.trim()) p.set("customer", customer.value.trim());
    location.hash = `#/orders?${p}`;
  };
  form.addEventListener("submit", apply);
  statusSel.addEventListener("change", () => apply());
  const api = new URLSearchParams({ limit: "50" });
  for (const k of ["status", "customer"]) if (params.get(k)) api.set(k, params.get(k));
  const list = await pb.request("GET", `/v1/orders?${api}`);
  const rows = list.data.map((o) => {
    const tr = el("tr", { class: "link", "data-order": o.id }, el("td", {}, when(o.created)), el("td", {}, el("code", {}, o.id)), el("td", {}, money(o.amount_total, o.currency)), el("td", {}, money(o.amount_paid, o.currency)), el("td", {}, money(o.amount_refunded, o.currency)), el("td", {}, status(o.status)), el("td", {}, o.customer || ""));
    tr.addEventListener("click", () => (location.hash = `#/payments?q=${o.id}`));
    return tr;
  });
  show(el("h1", {}, "Orders"), form, rows.length ? table(["created", "id", "total", "paid", "refunded", "status", "customer"], rows) : el("p", { class: "muted" }, "No orders match."));
}

// ---------------------------------------------------------------- subscriptions

async function subscriptions() {
  const list = await pb.request("GET", "/v1/subscriptions?limit=100");
  show(
    el("h1", {}, "Subscriptions"),
    list.data.length
      ? table(
          ["created", "id", "customer", "amount", "status", "period end", "cancels"],
          list.data.map((s) => el("tr", {}, el("td", {}, when(s.created)), el("td", {}, el("code", {}, s.id)), el("td", {}, s.customer || ""), el("td", {}, money(s.unit_amount * s.quantity, s.currency)), el("td", {}, status(s.status)), el("td", {}, when(s.current_period_end)), el("td", {}, s.cancel_at_period_end ? "at period end" : ""))),
        )
      : el("p", { class: "muted" }, "No subscriptions yet."),
  );
}

// ---------------------------------------------------------------- callbacks

async function callbacks() {
  const list = await pb.request("GET", "/v1/callback_endpoints?limit=100");
  const url = el("input", { id: "endpoint-url", type: "url", placeholder: "https://your-app.example/paybridge", required: true, size: 40 });
  const created = el("div", { id: "endpoint-created" });
  const form = el("form", { class: "row", id: "endpoint-form" }, url, el("button", { class: "primary", type: "submit" }, "Add endpoint"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const e = await pb.request("POST", "/v1/callback_endpoints", { url: url.value });
      created.replaceChildren(el("p", {}, "Its signing secret, shown this once:"), el("p", { class: "secret" }, e.secret));
      await renderEndpoints();
    } catch (e) {
      created.replaceChildren(failure(e));
    }
  });
  const endpoints = el("div", { id: "endpoints" });
  async function renderEndpoints() {
    const l = await pb.request("GET", "/v1/callback_endpoints?limit=100");
    endpoints.replaceChildren(...(await Promise.all(l.data.map(endpointCard))));
  }
  show(el("h1", {}, "Callbacks"), el("p", { class: "muted" }, "paybridge POSTs your app's events to these URLs, signed per Standard Webhooks."), form, created, endpoints);
  endpoints.replaceChildren(...(await Promise.all(list.data.map(endpointCard))));
}

async function endpointCard(ep) {
  const deliveries = await pb.request("GET", `/v1/callback_endpoints/${ep.id}/deliveries?limit=20`);
  const rows = deliveries.data.map((d) => {
    const retry = el("button", { type: "button", "data-retry": d.id }, "Redeliver");
    retry.addEventListener("click", async () => {
      retry.disabled = true;
      try {
        await pb.request("POST", `/v1/deliveries/${d.id}/retry`, {});
        retry.textContent = "Queued";
      } catch (e) {
        retry.replaceWith(failure(e));
      }
    });
    const attempts = el("button", { type: "button" }, `${d.attempts} attempt${d.attempts === 1 ? "" : "s"}`);
    const tr = el("tr", { "data-delivery": d.id }, el("td", {}, whenMs(d.created_ms)), el("td", {}, d.event_type), el("td", {}, status(d.status)), el("td", {}, attempts), el("td", {}, d.last_status_code ?? d.last_error ?? ""), el("td", {}, retry));
    attempts.addEventListener("click", async () => {
      const full = await pb.request("GET", `/v1/deliveries/${d.id}`);
      tr.after(el("tr", {}, el("td", { colSpan: 6 }, table(["when", "status", "latency", "answer", "node"], full.attempt_log.map((a) => el("tr", {}, el("td", {}, whenMs(a.attempted_ms)), el("td", {}, a.status_code ?? a.error), el("td", {}, `${a.latency_ms} ms`), el("td", {}, el("code", {}, a.response_snippet || "")), el("td", {}, a.node)))))));
    });
    return tr;
  });
  const toggle = el("button", { type: "button" }, ep.status === "enabled" ? "Delete" : "Enable");
  toggle.addEventListener("click", async () => {
    if (ep.status === "enabled") await pb.request("DELETE", `/v1/callback_endpoints/${ep.id}`);
    else await pb.request("POST", `/v1/callback_endpoints/${ep.id}/enable`, {});
    route();
  });
  return el(
    "section",
    { class: "card", "data-endpoint": ep.id },
    el("h2", {}, el("code", {}, ep.url), " ", status(ep.status), " ", toggle),
    el("p", { class: "muted" }, `events: ${ep.events.join(", ")}`, ep.disabled_reason ? ` · ${ep.disabled_reason}` : ""),
    rows.length ? table(["created", "event", "status", "attempts", "last answer", ""], rows) : el("p", { class: "muted" }, "No deliveries yet."),
  );
}

// ---------------------------------------------------------------- routing

async function route() {
  if (!pb) return;
  const [path, query] = (location.hash.slice(1) || "/overview").split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("current", a.dataset.view === parts[0]);
  show(el("p", { class: "muted" }, "Loading…"));
  await guard(async () => {
    if (parts[0] === "payments" && parts[1]) await payment(parts[1]);
    else if (parts[0] === "payments") await payments(params);
    else if (parts[0] === "orders") await orders(params);
    else if (parts[0] === "subscriptions") await subscriptions();
    else if (parts[0] === "callbacks") await callbacks();
    else await overview();
  });
}

window.addEventListener("hashchange", route);
document.getElementById("logout").addEventListener("click", logout);
const saved = sessionStorage.getItem(KEY);
if (saved) start(saved);
else login();
