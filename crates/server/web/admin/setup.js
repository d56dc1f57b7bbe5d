// Set-up without curl: the payment configuration, products, API keys and callbacks.
// Every action is a call of the public API with the admin key.
import { session, el, fill, money, toMinor, when, whenMs, time, status, table, td, shortId, failure, confirmButton, copyButton, unitsOf } from "/admin/ui.js";
import { every } from "/admin/customers.js";

const rerender = () => window.dispatchEvent(new HashChangeEvent("hashchange"));

// ---------------------------------------------------------------- payment configuration

export async function settings() {
  const pb = session.pb;
  const cfg = await pb.request("GET", "/v1/payment_config");
  const provider = el("select", { id: "cfg-provider", "aria-label": "provider" }, ["sandbox", "stripe"].map((p) => el("option", { value: p, selected: (cfg.provider || "sandbox") === p }, p === "sandbox" ? "Sandbox (test cards, no Stripe account)" : "Stripe")));
  const pk = el("input", { id: "cfg-public-key", placeholder: "pk_test_…", value: cfg.provider_public_key || "", autocomplete: "off" });
  // Write-only: the saved secret is never shown; an empty field keeps it.
  const sk = el("input", { id: "cfg-secret-key", type: "password", autocomplete: "new-password", placeholder: cfg.has_provider_secret_key ? "saved (type to replace)" : "sk_test_… or rk_test_…" });
  const whsec = el("input", { id: "cfg-signing-secret", type: "password", autocomplete: "new-password", placeholder: cfg.has_signing_secret ? "saved (type to replace)" : "whsec_…" });
  const result = el("p", { id: "cfg-result", "aria-live": "polite" });
  const stripeOnly = el(
    "div",
    { id: "stripe-fields" },
    el("label", {}, "Publishable key", pk),
    el("label", {}, "Secret key ", el("span", { class: "muted" }, cfg.has_provider_secret_key ? "(saved; never shown again)" : "(stored encrypted, never shown again)"), sk),
    el("label", {}, "Webhook signing secret ", el("span", { class: "muted" }, cfg.has_signing_secret ? "(saved)" : "(from the endpoint below, once created in Stripe)"), whsec),
    el("p", {}, "Webhook endpoint for Stripe: ", el("code", { id: "webhook-url" }, cfg.webhook_callback_url), " ", copyButton(cfg.webhook_callback_url)),
  );
  const sync = () => (stripeOnly.hidden = provider.value !== "stripe");
  provider.addEventListener("change", sync);
  sync();
  const form = el("form", { id: "config-form", class: "stack" }, el("label", {}, "Provider", provider), stripeOnly, el("button", { class: "primary", type: "submit", id: "cfg-save" }, "Save"), result);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const body = { provider: provider.value };
      if (provider.value === "stripe") {
        if (pk.value.trim()) body.provider_public_key = pk.value.trim();
        if (sk.value.trim()) body.provider_secret_key = sk.value.trim();
      }
      await pb.request("PUT", "/v1/payment_config", body);
      if (provider.value === "stripe" && whsec.value.trim()) await pb.request("PUT", "/v1/payment_config/signing_secret", { signing_secret: whsec.value.trim() });
      sk.value = whsec.value = "";
      result.className = "ok";
      result.textContent = "Saved.";
      setTimeout(rerender, 600);
    } catch (e) {
      result.className = "error";
      result.textContent = e.message;
    }
  });
  let endpoints = null;
  if (cfg.provider === "stripe") {
    try {
      const w = await pb.request("GET", "/v1/provider/webhook_endpoints");
      endpoints = el("section", { class: "card", id: "stripe-webhooks" }, el("h2", {}, "Stripe's webhook endpoints"), w.data && w.data.length ? table(["url", "status", "events"], w.data.map((e) => el("tr", {}, td("url", el("code", {}, e.url)), td("status", status(e.status)), td("events", (e.enabled_events || []).join(", "))))) : el("p", { class: "muted" }, "None points here yet."));
    } catch (e) {
      endpoints = el("section", { class: "card" }, el("h2", {}, "Stripe's webhook endpoints"), failure(e));
    }
  }
  return [
    el("h1", {}, "Payment configuration"),
    el("section", { class: "card", id: "config-status" }, el("p", {}, "Provider: ", el("strong", {}, cfg.provider || "none"), " ", el("span", { class: `status ${cfg.configured ? "configured" : "unconfigured"}` }, cfg.configured ? "configured" : "not configured"), " · ", cfg.environment)),
    cfg.provider === "stripe" ? ourEndpoint(cfg) : null,
    el("section", { class: "card" }, form),
    endpoints,
  ];
}

const SETUP_WORDS = {
  managed: "made by paybridge, which holds its signing secret",
  manual: "set up by hand: paybridge uses the signing secret you gave it",
  unreachable_url: "none: Stripe cannot reach this server",
  permission_denied: "none: the secret key may not manage webhook endpoints",
  failed: "none: making it failed",
};

/** The Stripe webhook endpoint paybridge made (issue 17): its status and API version. */
function ourEndpoint(cfg) {
  const w = cfg.webhook_endpoint;
  const delivery = cfg.event_delivery === "polling" ? "by polling Stripe's event list (no webhooks reach this server)" : "by webhooks, with polling as a backstop";
  const rows = [el("p", {}, "Events arrive ", el("strong", { id: "event-delivery" }, delivery), ".")];
  if (!w) {
    rows.push(el("p", { class: "muted", id: "endpoint-setup" }, "No endpoint yet: save the secret key and paybridge makes one."));
  } else {
    rows.push(el("p", {}, "Endpoint: ", el("span", { id: "endpoint-setup", "data-setup": w.setup }, SETUP_WORDS[w.setup] || w.setup)));
    if (w.id) {
      rows.push(
        el(
          "dl",
          { class: "facts" },
          el("dt", {}, "Id"), el("dd", {}, el("code", { id: "endpoint-id" }, w.id)),
          el("dt", {}, "URL"), el("dd", {}, el("code", { id: "endpoint-url" }, w.url || "")),
          el("dt", {}, "Status"), el("dd", { id: "endpoint-status" }, status(w.status || "unknown")),
          el("dt", {}, "API version"), el("dd", {}, el("code", { id: "endpoint-api-version" }, w.api_version || "")),
          el("dt", {}, "Events"), el("dd", { id: "endpoint-events" }, `${(w.enabled_events || []).length} types`),
          el("dt", {}, "Updated"), el("dd", {}, when(w.updated)),
        ),
      );
    }
    if (w.message) rows.push(el("p", { class: "muted", id: "endpoint-message" }, w.message));
  }
  return el("section", { class: "card", id: "stripe-endpoint" }, el("h2", {}, "Stripe webhook endpoint"), ...rows);
}

// ---------------------------------------------------------------- products

function productForm(p, done) {
  const name = el("input", { name: "name", required: true, value: p ? p.name : "", maxLength: 250, "aria-label": "name" });
  const description = el("input", { name: "description", value: p ? p.description || "" : "", "aria-label": "description" });
  const currency = el("input", { name: "currency", required: true, value: p ? p.currency : "usd", size: 4, maxLength: 3, "aria-label": "currency" });
  const price = el("input", { name: "price", required: true, inputMode: "decimal", size: 8, value: p ? String(p.unit_amount / unitsOf(p.currency)) : "", placeholder: "25.00", "aria-label": "price" });
  const recurring = el("select", { name: "recurring", "aria-label": "billing" }, [["", "one time"], ["day", "daily"], ["week", "weekly"], ["month", "monthly"], ["year", "yearly"]].map(([v, n]) => el("option", { value: v, selected: ((p && p.recurring && p.recurring.interval) || "") === v }, n)));
  const result = el("p", { class: "form-result", "aria-live": "polite" });
  const form = el("form", { class: "product-form stack" }, el("div", { class: "row" }, el("label", {}, "Name", name), el("label", {}, "Description", description)), el("div", { class: "row" }, el("label", {}, "Price", price), el("label", {}, "Currency", currency), el("label", {}, "Billing", recurring)), el("div", { class: "row" }, el("button", { class: "primary", type: "submit" }, p ? "Save" : "Create product"), p ? el("button", { type: "button", class: "cancel-edit", on: { click: done } }, "Cancel") : null), result);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const amount = toMinor(price.value, currency.value || "usd");
    if (amount === null) {
      result.className = "error";
      result.textContent = "The price is an amount such as 25.00.";
      return;
    }
    const body = { name: name.value.trim(), description: description.value.trim() || null, unit_amount: amount, currency: currency.value.trim().toLowerCase(), recurring: recurring.value ? { interval: recurring.value } : null };
    try {
      if (p) await session.pb.request("PATCH", `/v1/products/${p.id}`, body);
      else {
        if (!body.description) delete body.description;
        if (!body.recurring) delete body.recurring;
        await session.pb.request("POST", "/v1/products", body);
      }
      rerender();
    } catch (e) {
      result.className = "error";
      result.textContent = e.message;
    }
  });
  return form;
}

export async function products(params) {
  const pb = session.pb;
  const archived = params.get("archived") === "1";
  const [list, cfg] = await Promise.all([pb.request("GET", `/v1/products?limit=100&active=${!archived}`), pb.request("GET", "/v1/payment_config")]);
  const rows = list.data.map((p) => {
    const edit = el("button", { type: "button", "data-edit": p.id }, "Edit");
    const tr = el(
      "tr",
      { "data-product": p.id },
      td("name", el("strong", {}, p.name), p.description ? el("div", { class: "muted" }, p.description) : null),
      td("price", `${money(p.unit_amount, p.currency)}${p.recurring ? ` ${every(p.recurring)}` : ""}`),
      td("status", status(p.active ? "active" : "archived")),
      td("id", shortId(p.id)),
      td(
        "",
        el(
          "span",
          { class: "actions" },
          edit,
          // Archiving (as Stripe's) takes it out of the shop and keeps it here; deleting
          // an archived product removes it from the catalog. Orders keep their own copy.
          p.active
            ? confirmButton("Archive", "Archive it? It leaves the shop; past orders keep it.", async () => {
                await pb.request("PATCH", `/v1/products/${p.id}`, { active: false });
                rerender();
              }, { "data-archive": p.id })
            : [
                el("button", { type: "button", "data-restore": p.id, on: { click: async () => { await pb.request("PATCH", `/v1/products/${p.id}`, { active: true }); rerender(); } } }, "Restore"),
                confirmButton("Delete", "Delete it from the catalog for good?", async () => {
                  await pb.request("DELETE", `/v1/products/${p.id}`);
                  rerender();
                }, { "data-delete": p.id, class: "danger" }),
              ],
        ),
      ),
    );
    edit.addEventListener("click", () => {
      const row = el("tr", { class: "editing" }, el("td", { colSpan: 5 }, productForm(p, () => row.remove())));
      tr.after(row);
    });
    return tr;
  });
  let importer = null;
  if (cfg.provider === "stripe") {
    const progress = el("p", { id: "import-progress", "aria-live": "polite" });
    const button = el("button", { type: "button", id: "import-stripe" }, "Import from Stripe");
    button.addEventListener("click", async () => {
      button.disabled = true;
      progress.className = "muted";
      progress.textContent = "Importing Stripe's active prices…";
      try {
        const r = await pb.request("POST", "/v1/products/import", {});
        progress.className = "ok";
        progress.textContent = `Imported ${(r.data || []).length} products.`;
        setTimeout(rerender, 800);
      } catch (e) {
        progress.className = "error";
        progress.textContent = e.message;
        button.disabled = false;
      }
    });
    importer = el("div", { class: "row" }, button, progress);
  }
  return [
    el("div", { class: "title-row" }, el("h1", {}, "Products"), el("a", { href: archived ? "#/products" : "#/products?archived=1", id: "toggle-archived" }, archived ? "Active products" : "Archived products")),
    importer,
    archived ? null : el("section", { class: "card", id: "new-product" }, el("h2", {}, "New product"), productForm(null, () => {})),
    rows.length ? table(["name", "price", "status", "id", ""], rows, { id: "products-table" }) : el("p", { class: "muted" }, archived ? "No archived products." : "No products yet."),
  ];
}

// ---------------------------------------------------------------- API keys

const ROLE_WORDS = { admin: "Admin: everything, like this dashboard", server: "Server: your back end (payments, customers, orders)", publishable: "Publishable: your web pages (catalog, checkout)" };

export async function keys() {
  const pb = session.pb;
  const list = await pb.request("GET", `/v1/apps/${session.me.app}/keys`);
  const role = el("select", { id: "key-role", "aria-label": "role" }, ["server", "publishable", "admin"].map((r) => el("option", { value: r }, ROLE_WORDS[r])));
  const grants = el("input", { id: "key-permissions", placeholder: "extra permissions for a server key, e.g. refunds:write", size: 36, "aria-label": "permissions" });
  const created = el("div", { id: "key-created", "aria-live": "polite" });
  const form = el("form", { id: "key-form", class: "filters" }, role, grants, el("button", { class: "primary", type: "submit" }, "Create key"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const permissions = grants.value.split(/[\s,]+/).filter(Boolean);
    try {
      const k = await pb.request("POST", `/v1/apps/${session.me.app}/keys`, { role: role.value, permissions });
      fill(created, el("div", { class: "card notice" }, el("p", {}, `The new ${k.role} key, shown this once. Copy it now:`), el("p", { class: "secret", id: "new-key-secret" }, k.secret), copyButton(k.secret), " ", el("button", { type: "button", on: { click: rerender } }, "Done")));
    } catch (e) {
      fill(created, failure(e));
    }
  });
  const rows = list.data.map((k) =>
    el(
      "tr",
      { "data-key": k.id, class: k.revoked ? "revoked" : null },
      td("role", el("strong", {}, k.role), k.permissions.length ? el("div", { class: "muted" }, `+ ${k.permissions.join(", ")}`) : null),
      td("key", el("code", {}, k.redacted)),
      td("created", when(k.created)),
      td("status", k.revoked ? status("revoked") : status("active")),
      td(
        "",
        k.revoked
          ? null
          : confirmButton("Revoke", "Revoke it? Anything using it (this dashboard too, if it is this key) stops working at once.", async () => {
              await pb.request("DELETE", `/v1/keys/${k.id}`);
              rerender();
            }, { "data-revoke": k.id }),
      ),
    ),
  );
  return [el("h1", {}, "API keys"), el("p", { class: "muted" }, "A key is shown once, when it is created. A key cannot create a key that can do more than itself."), form, created, table(["role", "key", "created", "status", ""], rows, { id: "keys-table" })];
}

// ---------------------------------------------------------------- callbacks

const EVENT_TYPES = ["order.paid", "order.partially_refunded", "order.refunded", "payment.pending", "payment.requires_action", "payment.processing", "payment.requires_capture", "payment.succeeded", "payment.failed", "payment.canceled", "payment.expired", "payment.disputed", "payment.partially_refunded", "payment.refunded", "refund.pending", "refund.succeeded", "refund.failed", "checkout.completed", "checkout.expired", "subscription.created", "subscription.updated", "subscription.canceled", "subscription.payment_succeeded", "subscription.payment_failed", "order.overpaid", "ledger.anomaly", "callback_endpoint.disabled"];

export async function callbacks() {
  const pb = session.pb;
  const url = el("input", { id: "endpoint-url", type: "url", placeholder: "https://your-app.example/paybridge", required: true, size: 36, "aria-label": "url" });
  const all = el("input", { type: "checkbox", id: "events-all", checked: true });
  const boxes = EVENT_TYPES.map((t) => el("label", { class: "check" }, el("input", { type: "checkbox", name: "event", value: t }), t));
  const picker = el("fieldset", { id: "event-choice", class: "events-choice", disabled: true }, el("legend", {}, "Events"), boxes);
  all.addEventListener("change", () => (picker.disabled = all.checked));
  const created = el("div", { id: "endpoint-created" });
  const form = el("form", { id: "endpoint-form", class: "stack" }, el("div", { class: "row" }, url, el("button", { class: "primary", type: "submit" }, "Add endpoint")), el("label", { class: "check" }, all, "All events"), picker);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const events = all.checked ? ["*"] : boxes.map((b) => b.querySelector("input")).filter((i) => i.checked).map((i) => i.value);
    try {
      const e = await pb.request("POST", "/v1/callback_endpoints", { url: url.value, events });
      fill(created, el("div", { class: "card notice" }, el("p", {}, "Its signing secret, shown this once:"), el("p", { class: "secret" }, e.secret), copyButton(e.secret, "Copy secret")));
      await renderEndpoints();
    } catch (e) {
      fill(created, failure(e));
    }
  });
  const endpoints = el("div", { id: "endpoints" });
  async function renderEndpoints() {
    const l = await pb.request("GET", "/v1/callback_endpoints?limit=100");
    fill(endpoints, ...(await Promise.all(l.data.map(endpointCard))));
  }
  await renderEndpoints();
  return [el("h1", {}, "Callbacks"), el("p", { class: "muted" }, "paybridge POSTs your app's events to these URLs, signed per Standard Webhooks."), el("section", { class: "card" }, form), created, endpoints];
}

async function endpointCard(ep) {
  const pb = session.pb;
  const deliveries = await pb.request("GET", `/v1/callback_endpoints/${ep.id}/deliveries?limit=20`);
  const rows = deliveries.data.map((d) => {
    const failed = d.status === "failed" || (d.last_status_code !== null && d.last_status_code >= 300) || (d.last_error && d.status !== "succeeded");
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
    const tr = el("tr", { "data-delivery": d.id, class: failed ? "bad" : null }, td("when", whenMs(d.created_ms)), td("event", d.event_type), td("status", status(d.status)), td("attempts", attempts), td("answer", `${d.last_status_code ?? d.last_error ?? ""}${failed && d.next_attempt_ms ? ` · retrying at ${time(d.next_attempt_ms)}` : ""}`), td("", retry));
    attempts.addEventListener("click", async () => {
      const full = await pb.request("GET", `/v1/deliveries/${d.id}`);
      tr.after(el("tr", { class: "attempts" }, el("td", { colSpan: 6 }, table(["when", "answer", "latency", "body", "node"], full.attempt_log.map((a) => el("tr", { class: a.status_code && a.status_code < 300 ? null : "bad" }, td("when", whenMs(a.attempted_ms)), td("answer", a.status_code ?? a.error), td("latency", `${a.latency_ms} ms`), td("body", el("code", {}, a.response_snippet || "")), td("node", a.node)))))));
    });
    return tr;
  });
  const toggle =
    ep.status === "enabled"
      ? confirmButton("Delete", "Delete this endpoint? It stops receiving events.", async () => {
          await pb.request("DELETE", `/v1/callback_endpoints/${ep.id}`);
          rerender();
        }, { "data-delete": ep.id })
      : el("button", { type: "button", on: { click: async () => { await pb.request("POST", `/v1/callback_endpoints/${ep.id}/enable`, {}); rerender(); } } }, "Enable");
  const rotate = confirmButton("New secret", "Replace the signing secret? Your app must switch to the new one.", async () => {
    const e = await pb.request("POST", `/v1/callback_endpoints/${ep.id}/rotate_secret`, {});
    card.querySelector(".rotated").replaceChildren(el("p", {}, "The new signing secret, shown this once:"), el("p", { class: "secret" }, e.secret), copyButton(e.secret, "Copy secret"));
  });
  const card = el(
    "section",
    { class: "card", "data-endpoint": ep.id },
    el("div", { class: "title-row" }, el("h2", {}, el("code", { class: "url" }, ep.url), " ", status(ep.status)), el("span", { class: "actions" }, copyButton(ep.url, "Copy URL"), rotate, toggle)),
    el("p", { class: "muted" }, `Events: ${ep.events.includes("*") ? "all" : ep.events.join(", ")}`, ep.disabled_reason ? ` · ${ep.disabled_reason}` : ""),
    el("div", { class: "rotated" }),
    rows.length ? table(["when", "event", "status", "attempts", "last answer", ""], rows) : el("p", { class: "muted" }, "No deliveries yet."),
  );
  return card;
}
