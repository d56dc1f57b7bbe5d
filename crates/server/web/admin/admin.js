// The admin dashboard: a small single-page app over paybridge's own public API, with
// the app's admin key. The key lives in memory and in sessionStorage (gone when the tab
// closes), nowhere else. Pages live in their own modules; this one signs in, draws the
// menu and routes.
import { PayBridge } from "/sdk/paybridge.js";
import { bars, rate } from "/admin/charts.js";
import { session, el, fill, money, failure } from "/admin/ui.js";
import { payments, payment } from "/admin/payments.js";
import { orders, order } from "/admin/orders.js";
import { customers, customer, subscriptions } from "/admin/customers.js";
import { settings, products, keys, callbacks } from "/admin/setup.js";

const KEY = "paybridge.adminKey";
const view = document.getElementById("view");
const nav = document.getElementById("nav");
const menu = document.getElementById("menu-toggle");

function show(...nodes) {
  fill(view, ...nodes);
}

// ---------------------------------------------------------------- login

function login(message) {
  nav.hidden = true;
  menu.hidden = true;
  const input = el("input", { id: "admin-key", type: "password", placeholder: "pb_ak_test_…", autocomplete: "off", required: true, size: 32, "aria-label": "admin key" });
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
  session.pb = null;
  session.me = null;
  login();
}

async function start(key) {
  const client = PayBridge({ baseUrl: location.origin, key });
  try {
    const who = await client.request("GET", "/v1/me");
    if (who.role !== "admin") return login(`That is a ${who.role} key; the dashboard needs an admin key.`);
    session.pb = client;
    session.me = who;
    sessionStorage.setItem(KEY, key);
  } catch (e) {
    return login(e.status === 401 ? "That key is not valid." : e.message);
  }
  nav.hidden = false;
  menu.hidden = false;
  const badge = document.getElementById("env-badge");
  badge.hidden = false;
  badge.textContent = session.me.environment === "live" ? "LIVE" : "TEST";
  try {
    const app = await session.pb.request("GET", `/v1/apps/${session.me.app}`);
    document.getElementById("app-name").textContent = app.name;
  } catch {
    document.getElementById("app-name").textContent = session.me.app;
  }
  route();
}

// ---------------------------------------------------------------- overview

async function overview() {
  const pb = session.pb;
  const [cfg, report] = await Promise.all([pb.request("GET", "/v1/payment_config"), pb.request("GET", "/v1/reports/payments?days=30")]);
  const days = report.data;
  const volume = {};
  const refunded = {};
  for (const d of days) {
    for (const [c, v] of Object.entries(d.volume)) volume[c] = (volume[c] || 0) + v;
    for (const [c, v] of Object.entries(d.refunded || {})) refunded[c] = (refunded[c] || 0) + v;
  }
  const main = Object.entries(volume).sort((a, b) => b[1] - a[1])[0]?.[0] || "usd";
  const labels = days.map((d) => d.date.slice(5));
  const total = days.reduce((n, d) => n + d.payments, 0);
  const ok = days.reduce((n, d) => n + d.succeeded, 0);
  const failed = days.reduce((n, d) => n + d.failed, 0);
  // Every payment is in exactly one of the four: the figures add up to the total.
  const open = days.reduce((n, d) => n + (d.open ?? 0), 0);
  const abandoned = days.reduce((n, d) => n + (d.abandoned ?? 0), 0);
  const currencies = Object.keys({ ...volume, ...refunded });
  const stat = (id, n, label, href) => el("a", { class: "stat", id, href }, el("strong", {}, n), el("span", {}, label));
  return [
    el("h1", {}, "Overview"),
    el(
      "section",
      { class: "card", id: "figures" },
      el("h2", {}, "Last 30 days"),
      el(
        "div",
        { class: "stats" },
        stat("total-payments", total, "payments", "#/payments"),
        stat("succeeded-payments", ok, "succeeded", "#/payments?status=succeeded"),
        stat("failed-payments", failed, "declined", "#/payments?status=failed"),
        stat("open-payments", open, "open checkouts", "#/payments?status=pending"),
        stat("abandoned-payments", abandoned, "abandoned (expired or canceled)", "#/payments?status=expired"),
      ),
      el(
        "table",
        { class: "money-table", id: "volume" },
        el("thead", {}, el("tr", {}, el("th", {}, "currency"), el("th", {}, "gross"), el("th", {}, "refunded"), el("th", {}, "net"))),
        el(
          "tbody",
          {},
          currencies.length
            ? currencies.map((c) => el("tr", {}, el("td", {}, c.toUpperCase()), el("td", {}, money(volume[c] || 0, c)), el("td", {}, money(refunded[c] || 0, c)), el("td", {}, el("strong", {}, money((volume[c] || 0) - (refunded[c] || 0), c)))))
            : el("tr", {}, el("td", { colSpan: 4, class: "muted" }, "No money moved yet.")),
        ),
      ),
    ),
    el("div", { class: "cards" },
      el("section", { class: "card" }, el("h2", {}, `Volume per day (${main.toUpperCase()})`), bars(days.map((d) => d.volume[main] || 0), labels, { label: "volume per day", format: (v) => money(v, main) })),
      el("section", { class: "card" }, el("h2", {}, "Success rate per day"), rate(days.map((d) => d.success_rate), labels, { label: "success rate per day" })),
    ),
    el(
      "section",
      { class: "card", id: "config-status" },
      el("h2", {}, "Configuration"),
      el("p", {}, "Provider: ", el("strong", {}, cfg.provider || "none"), " ", el("span", { class: `status ${cfg.configured ? "configured" : "unconfigured"}` }, cfg.configured ? "configured" : "not configured"), " ", el("a", { href: "#/settings" }, "Settings")),
      cfg.provider === "stripe" ? el("p", {}, "Webhook signing secret: ", cfg.has_signing_secret ? "set" : el("strong", { class: "error" }, "missing")) : null,
    ),
  ];
}

// ---------------------------------------------------------------- routing

const PAGES = {
  overview: () => overview(),
  payments: (params, id) => (id ? payment(id, route) : payments(params)),
  orders: (params, id) => (id ? order(id) : orders(params)),
  customers: (params, id) => (id ? customer(id) : customers(params)),
  subscriptions: (params) => subscriptions(params),
  products: (params) => products(params),
  callbacks: () => callbacks(),
  keys: () => keys(),
  settings: () => settings(),
};

let generation = 0;

async function route() {
  if (!session.pb) return;
  const [path, query] = (location.hash.slice(1) || "/overview").split("?");
  const params = new URLSearchParams(query || "");
  const [name, id] = path.split("/").filter(Boolean);
  const page = PAGES[name] ? name : "overview";
  for (const a of nav.querySelectorAll("a")) {
    const current = a.dataset.view === page;
    a.classList.toggle("current", current);
    if (current) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  closeMenu();
  const mine = ++generation;
  const hash = location.hash;
  delete view.dataset.rendered;
  show(el("p", { class: "muted loading" }, "Loading…"));
  try {
    const nodes = await PAGES[page](params, id && decodeURIComponent(id));
    // A later navigation wins: an answer for a page the user left is dropped.
    if (mine !== generation) return;
    if (nodes) show(...nodes);
  } catch (e) {
    if (e.status === 401) return logout();
    if (mine !== generation) return;
    const back = id ? el("p", {}, el("a", { href: `#/${page}` }, `← ${page[0].toUpperCase()}${page.slice(1)}`)) : null;
    show(back, failure(e));
  }
  // Which address the page shows (the browser tests wait for it).
  view.dataset.rendered = hash;
}

function closeMenu() {
  document.body.classList.remove("menu-open");
  menu.setAttribute("aria-expanded", "false");
}

menu.addEventListener("click", () => {
  const open = !document.body.classList.contains("menu-open");
  document.body.classList.toggle("menu-open", open);
  menu.setAttribute("aria-expanded", String(open));
});
window.addEventListener("hashchange", route);
document.getElementById("logout").addEventListener("click", logout);
const saved = sessionStorage.getItem(KEY);
if (saved) start(saved);
else login();
