// Customers (the list, one customer's page) and subscriptions (with cancel).
import { sentence, raw, session, el, money, when, whenMs, status, table, td, shortId, confirmButton, customerLabel, cached, cardLabel, dateRange, createdRange, fill, failure, copyButton } from "/admin/ui.js";

const PAGE = 50;

/** Customers whose email starts with the search (any case) or whose external id is it,
 * found by the API; a page of the list when there is no search. */
export async function customers(params) {
  const pb = session.pb;
  const search = el("input", { id: "customer-search", type: "search", placeholder: "Email or external id", value: params.get("q") || "", "aria-label": "search customers" });
  const range = dateRange(params);
  const form = el("form", { class: "filters", id: "customer-filters" }, search, range.node, el("button", { type: "submit" }, "Search"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const p = new URLSearchParams();
    if (search.value.trim()) p.set("q", search.value.trim());
    range.into(p);
    location.hash = `#/customers?${p}`;
  });
  const q = (params.get("q") || "").trim();
  if (q.startsWith("customer_")) {
    location.hash = `#/customers/${q}`;
    return [];
  }
  const api = createdRange(params, new URLSearchParams({ limit: String(PAGE) }));
  if (q) api.set("email_prefix", q);
  if (params.get("after")) api.set("starting_after", params.get("after"));
  const [list, exact] = await Promise.all([
    pb.request("GET", `/v1/customers?${api}`),
    // An external id is the app's own: a whole match, on the first page only.
    q && !params.get("after") && !q.includes("@") ? pb.request("GET", `/v1/customers?${createdRange(params, new URLSearchParams({ external_id: q }))}`) : { data: [] },
  ]);
  const data = [...exact.data, ...list.data.filter((c) => !exact.data.some((x) => x.id === c.id))];
  const rows = data.map((c) => {
    const tr = el("tr", { class: "link", "data-customer": c.id }, td("email", c.email || el("span", { class: "muted" }, "no email")), td("name", c.name || ""), td("external id", el("code", {}, c.external_id)), td("since", when(c.created)), td("id", shortId(c.id)));
    tr.addEventListener("click", () => (location.hash = `#/customers/${c.id}`));
    return tr;
  });
  const next = new URLSearchParams(params);
  if (list.data.length) next.set("after", list.data[list.data.length - 1].id);
  return [
    el("h1", {}, "Customers"),
    form,
    rows.length ? table(["email", "name", "external id", "since", "id"], rows, { id: "customers-table" }) : el("p", { class: "muted", id: "no-customers" }, "No customers match."),
    list.has_more ? el("nav", { class: "pager" }, el("a", { href: `#/customers?${next}`, id: "page-next" }, "Older →")) : null,
  ];
}

export async function customer(id) {
  const pb = session.pb;
  const c = await pb.request("GET", `/v1/customers/${id}`);
  const [cards, pays, subs, events] = await Promise.all([
    pb.request("GET", `/v1/customers/${id}/payment_methods`),
    pb.request("GET", `/v1/payments?customer=${id}&limit=50`),
    pb.request("GET", `/v1/subscriptions?customer=${id}&limit=100`),
    pb.request("GET", `/v1/events?customer=${id}&limit=30`),
  ]);
  const paid = {};
  for (const p of pays.data) if (p.amount_captured) paid[p.currency] = (paid[p.currency] || 0) + p.amount_captured - p.amount_refunded;
  return [
    el("p", {}, el("a", { href: "#/customers" }, "← Customers")),
    el("h1", { id: "customer-title" }, c.email || c.name || c.external_id),
    el(
      "div",
      { class: "cards" },
      el(
        "section",
        { class: "card", id: "customer-summary" },
        el("dl", { class: "facts" },
          el("dt", {}, "Email"), el("dd", { id: "customer-email" }, c.email || "none"),
          el("dt", {}, "Name"), el("dd", {}, c.name || "none"),
          el("dt", {}, "External id"), el("dd", {}, el("code", {}, c.external_id)),
          el("dt", {}, "Customer"), el("dd", {}, shortId(c.id)),
          c.provider_customer_id ? [el("dt", {}, "Stripe"), el("dd", {}, shortId(c.provider_customer_id))] : null,
          el("dt", {}, "Spent"), el("dd", {}, Object.entries(paid).map(([cur, v]) => money(v, cur)).join(" · ") || "nothing yet"),
          el("dt", {}, "Since"), el("dd", {}, when(c.created)),
        ),
        portalLink(c),
      ),
      el(
        "section",
        { class: "card", id: "customer-cards" },
        el("h2", {}, "Saved cards"),
        cards.data.length
          ? el("ul", { class: "plain" }, cards.data.map((k) => el("li", { "data-card": k.id }, cardLabel(k), k.exp_month ? el("span", { class: "muted" }, ` · expires ${String(k.exp_month).padStart(2, "0")}/${k.exp_year}`) : null, k.default ? el("span", { class: "status active" }, "default") : null)))
          : el("p", { class: "muted" }, "No saved cards."),
      ),
    ),
    el("section", { class: "card" }, el("h2", {}, "Subscriptions"), subs.data.length ? await subscriptionTable(subs.data) : el("p", { class: "muted" }, "No subscriptions.")),
    el(
      "section",
      { class: "card", id: "customer-payments" },
      el("h2", {}, "Payments"),
      pays.data.length
        ? table(
            ["amount", "status", "card", "date", "id"],
            pays.data.map((p) => {
              const tr = el("tr", { class: "link", "data-payment": p.id }, td("amount", el("strong", {}, money(p.amount, p.currency))), td("status", status(p.status, p.method)), td("card", p.card ? cardLabel(p.card) : ""), td("date", when(p.created)), td("id", shortId(p.id)));
              tr.addEventListener("click", () => (location.hash = `#/payments/${p.id}`));
              return tr;
            }),
          )
        : el("p", { class: "muted" }, "No payments yet."),
      pays.has_more ? el("p", {}, el("a", { href: `#/payments?customer=${id}` }, "All payments →")) : null,
    ),
    el(
      "section",
      { class: "card", id: "customer-log" },
      el("h2", {}, "Log"),
      events.data.length
        ? el("ol", { class: "timeline" }, events.data.map((e) => el("li", { "data-kind": "ours", class: /failed|disputed/.test(e.type) ? "bad" : null }, el("span", { class: "muted" }, whenMs(e.created * 1000)), el("span", { class: "kind ours" }, "event"), el("div", {}, el("span", { class: "what" }, sentence(e)), raw(e)))))
        : el("p", { class: "muted" }, "Nothing yet."),
    ),
  ];
}

// The provider's customer portal for this customer, as a link to send them (the
// session is short-lived and opens this customer's portal only; it comes back to the
// shop's front page).
function portalLink(c) {
  const out = el("div", { id: "portal-link", "aria-live": "polite" });
  const make = el("button", { type: "button", id: "make-portal-link" }, "Customer portal link");
  make.addEventListener("click", async () => {
    make.disabled = true;
    try {
      const s = await session.pb.request("POST", `/v1/customers/${c.id}/portal_sessions`, { return_url: `${location.origin}/` });
      fill(out, el("p", { class: "muted" }, "Short-lived: send it now. It opens this customer's portal only (subscriptions, cards, payments)."), el("p", {}, el("a", { href: s.url, target: "_blank", rel: "noopener", class: "url" }, s.url)), copyButton(s.url, "Copy link"));
    } catch (e) {
      fill(out, el("p", {}, failure(e)));
    } finally {
      make.disabled = false;
    }
  });
  return el("div", {}, make, out);
}

// ---------------------------------------------------------------- subscriptions

const INTERVALS = { day: ["daily", "days"], week: ["weekly", "weeks"], month: ["monthly", "months"], year: ["yearly", "years"] };
export function every(r) {
  if (!r) return "";
  const [one, many] = INTERVALS[r.interval] || [r.interval, r.interval];
  return r.interval_count > 1 ? `every ${r.interval_count} ${many}` : one;
}

/** Cancels through the public API, then redraws once the provider has confirmed it
 * (its webhook may land a moment after the answer), for up to 10 s. */
async function cancel(id, atPeriodEnd) {
  let sub = await session.pb.request("POST", `/v1/subscriptions/${id}/cancel`, { at_period_end: atPeriodEnd });
  const done = (x) => (atPeriodEnd ? x.cancel_at_period_end : x.status === "canceled");
  for (let i = 0; i < 20 && !done(sub); i++) {
    await new Promise((r) => setTimeout(r, 500));
    sub = await session.pb.request("GET", `/v1/subscriptions/${id}`);
  }
  window.dispatchEvent(new HashChangeEvent("hashchange"));
}

async function subscriptionTable(list) {
  const rows = await Promise.all(
    list.map(async (s) => {
      const [product, who] = await Promise.all([s.product ? cached(`/v1/products/${s.product}`) : null, customerLabel(s.customer)]);
      const live = !["canceled", "incomplete_expired"].includes(s.status);
      const actions = live
        ? el(
            "span",
            { class: "actions" },
            s.cancel_at_period_end
              ? null
              : confirmButton("Cancel at period end", `Stop renewing after ${when(s.current_period_end) || "this period"}?`, async () => {
                  await cancel(s.id, true);
                }, { "data-cancel": "period_end" }),
            confirmButton("Cancel now", "End it now? The customer is not charged again.", async () => {
              await cancel(s.id, false);
            }, { "data-cancel": "now", class: "danger" }),
          )
        : null;
      return el(
        "tr",
        { "data-subscription": s.id },
        td("plan", el("strong", {}, product ? product.name : s.product || "—")),
        td("price", `${money(s.unit_amount * s.quantity, s.currency)} ${every(product && product.recurring)}`),
        td("customer", s.customer ? el("a", { href: `#/customers/${s.customer}` }, who || s.customer) : ""),
        td("status", status(s.status)),
        td("renews", s.status === "canceled" ? `ended ${when(s.canceled_at)}` : s.cancel_at_period_end ? el("span", { class: "warn" }, `ends ${when(s.current_period_end)}`) : when(s.current_period_end)),
        td("", actions),
      );
    }),
  );
  return table(["plan", "price", "customer", "status", "next renewal", ""], rows, { id: "subscriptions-table" });
}

export async function subscriptions(params) {
  const range = dateRange(params);
  const form = el("form", { class: "filters", id: "subscription-filters" }, range.node, el("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const p = new URLSearchParams();
    range.into(p);
    location.hash = `#/subscriptions?${p}`;
  });
  const api = createdRange(params, new URLSearchParams({ limit: "100" }));
  if (params.get("after")) api.set("starting_after", params.get("after"));
  const list = await session.pb.request("GET", `/v1/subscriptions?${api}`);
  const next = new URLSearchParams(params);
  if (list.data.length) next.set("after", list.data[list.data.length - 1].id);
  return [
    el("h1", {}, "Subscriptions"),
    form,
    list.data.length ? await subscriptionTable(list.data) : el("p", { class: "muted", id: "no-subscriptions" }, params.get("from") || params.get("to") ? "No subscriptions match." : "No subscriptions yet."),
    list.has_more ? el("nav", { class: "pager" }, el("a", { href: `#/subscriptions?${next}`, id: "page-next" }, "Older →")) : null,
  ];
}
