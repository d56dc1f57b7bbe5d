// Orders: the list (status, dates, pages) and an order's page (what was sold, its
// payments with the card each was made with, its refunds).
import { session, el, money, when, status, table, td, shortId, customerLabel, cardLabel, dateRange, createdRange } from "/admin/ui.js";

const PAGE = 50;
const itemsLabel = (o) => o.line_items.map((l) => (l.quantity > 1 ? `${l.name} × ${l.quantity}` : l.name)).join(", ");

export async function orders(params) {
  const statusSel = el("select", { id: "order-status", "aria-label": "status" }, ["", "open", "paid", "partially_refunded", "refunded"].map((s) => el("option", { value: s, selected: params.get("status") === s }, s ? s.replace(/_/g, " ") : "any status")));
  const range = dateRange(params);
  const apply = (e) => {
    if (e) e.preventDefault();
    const p = new URLSearchParams();
    if (statusSel.value) p.set("status", statusSel.value);
    if (params.get("customer")) p.set("customer", params.get("customer"));
    range.into(p);
    location.hash = `#/orders?${p}`;
  };
  const form = el("form", { class: "filters", id: "order-filters" }, statusSel, range.node, el("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", apply);
  statusSel.addEventListener("change", () => apply());
  const api = createdRange(params, new URLSearchParams({ limit: String(PAGE) }));
  for (const k of ["status", "customer"]) if (params.get(k)) api.set(k, params.get(k));
  if (params.get("after")) api.set("starting_after", params.get("after"));
  const list = await session.pb.request("GET", `/v1/orders?${api}`);
  const rows = await Promise.all(
    list.data.map(async (o) => {
      const who = await customerLabel(o.customer);
      const tr = el(
        "tr",
        { class: "link", "data-order": o.id },
        td("total", el("strong", {}, money(o.amount_total, o.currency))),
        td("status", status(o.status)),
        td("items", itemsLabel(o)),
        td("paid", money(o.amount_paid, o.currency)),
        td("refunded", o.amount_refunded ? money(o.amount_refunded, o.currency) : ""),
        td("customer", who || ""),
        td("date", when(o.created)),
        td("id", shortId(o.id)),
      );
      tr.addEventListener("click", () => (location.hash = `#/orders/${o.id}`));
      return tr;
    }),
  );
  const next = new URLSearchParams(params);
  if (list.data.length) next.set("after", list.data[list.data.length - 1].id);
  return [
    el("h1", {}, "Orders"),
    form,
    rows.length ? table(["total", "status", "items", "paid", "refunded", "customer", "date", "id"], rows, { id: "orders-table" }) : el("p", { class: "muted", id: "no-orders" }, "No orders match."),
    list.has_more ? el("nav", { class: "pager" }, el("a", { href: `#/orders?${next}`, id: "page-next" }, "Older →")) : null,
  ];
}

export async function order(id) {
  const o = await session.pb.request("GET", `/v1/orders/${id}`);
  const who = await customerLabel(o.customer);
  const payments = o.payments || [];
  const refunds = o.refunds || [];
  return [
    el("p", {}, el("a", { href: "#/orders" }, "← Orders")),
    el("h1", {}, money(o.amount_total, o.currency), " ", status(o.status)),
    el(
      "div",
      { class: "cards" },
      el(
        "section",
        { class: "card", id: "order-summary" },
        el("ul", { class: "items", id: "line-items" }, o.line_items.map((l) => el("li", {}, `${l.name}${l.quantity > 1 ? ` × ${l.quantity}` : ""} `, el("span", { class: "muted" }, money(l.amount, o.currency))))),
        el("dl", { class: "facts" },
          el("dt", {}, "Customer"), el("dd", { id: "order-customer" }, o.customer ? el("a", { href: `#/customers/${o.customer}` }, who || o.customer) : "none"),
          el("dt", {}, "Paid"), el("dd", {}, money(o.amount_paid, o.currency)),
          el("dt", {}, "Refunded"), el("dd", {}, money(o.amount_refunded, o.currency)),
          el("dt", {}, "Left to pay"), el("dd", {}, money(o.amount_outstanding, o.currency)),
          el("dt", {}, "Order"), el("dd", {}, shortId(o.id)),
          el("dt", {}, "Created"), el("dd", {}, when(o.created)),
        ),
      ),
      el(
        "section",
        { class: "card", id: "order-payments" },
        el("h2", {}, "Payments"),
        payments.length
          ? table(
              ["amount", "status", "card", "date", "id"],
              payments
                .slice()
                .reverse()
                .map((p) => {
                  const tr = el("tr", { class: "link", "data-payment": p.id }, td("amount", el("strong", {}, money(p.amount, p.currency))), td("status", status(p.status, p.method)), td("card", p.card ? cardLabel(p.card) : ""), td("date", when(p.created)), td("id", shortId(p.id)));
                  tr.addEventListener("click", () => (location.hash = `#/payments/${p.id}`));
                  return tr;
                }),
            )
          : el("p", { class: "muted" }, "No payments yet."),
        refunds.length ? el("p", { class: "muted" }, `Refunds: ${refunds.map((r) => `${money(r.amount, r.currency)} ${r.status}`).join(", ")}`) : null,
      ),
    ),
  ];
}
