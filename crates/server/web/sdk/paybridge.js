// paybridge.js — the browser (and Node 20+) client of a paybridge server.
//
//   import { PayBridge } from "https://pay.example.com/sdk/paybridge.js";
//   const pb = PayBridge({ baseUrl: "https://pay.example.com", key: "pb_pk_test_…" });
//   const products = await pb.getProducts();
//   const { customerId, transactionDetails } = await pb.checkout({
//     line_items: [{ product: products[0].id, quantity: 1 }],
//   });
//
// The same file works from a plain <script src="…/sdk/paybridge.js"> tag, which
// defines `window.PayBridge`. Types: /sdk/paybridge.d.ts. Keys stay in memory: this
// file never writes them anywhere.

const ZERO_DECIMAL = "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split(" ");
const THREE_DECIMAL = "bhd jod kwd omr tnd".split(" ");

/** An API error: `type`, `code`, `message` and `param` as the API sent them. */
export class PayBridgeError extends Error {
  constructor({ type, code, message, param, status, declineCode } = {}) {
    super(message || code || "paybridge request failed");
    this.name = "PayBridgeError";
    this.type = type || "api_error";
    this.code = code || null;
    this.param = param || null;
    this.status = status || 0;
    this.declineCode = declineCode || null;
  }
}

/** Minor units of `currency` in one major unit (100 for usd, 1 for jpy, 1000 for kwd). */
export function minorUnits(currency) {
  const c = String(currency).toLowerCase();
  if (ZERO_DECIMAL.includes(c)) return 1;
  if (THREE_DECIMAL.includes(c)) return 1000;
  return 100;
}

/** `1999, "usd"` → `"$19.99"` (in the browser's locale, or `locale`). */
export function formatMoney(amount, currency, locale) {
  const units = minorUnits(currency);
  const digits = Math.round(Math.log10(units));
  return new Intl.NumberFormat(locale, {
    style: "currency",
    currency: String(currency).toUpperCase(),
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  }).format(amount / units);
}

/** Reads server-sent events from a fetch response body: calls `onMessage({id, data})`. */
async function readEvents(body, onMessage) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let id = null;
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("id:")) id = line.slice(3).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trimStart();
      }
      if (id && data) onMessage({ id, data: JSON.parse(data) });
    }
  }
}

/**
 * A client for one app. `key` is the app's publishable key in a browser; server and
 * admin keys belong on servers and in the admin dashboard only.
 */
export function PayBridge({ baseUrl = "", key, fetch: fetchImpl } = {}) {
  if (!key) throw new PayBridgeError({ type: "invalid_request_error", code: "key_missing", message: "PayBridge needs a key" });
  const base = String(baseUrl || (typeof location !== "undefined" ? location.origin : "")).replace(/\/+$/, "");
  const doFetch = fetchImpl || globalThis.fetch.bind(globalThis);

  async function request(method, path, body, headers = {}) {
    let res;
    try {
      res = await doFetch(base + path, {
        method,
        headers: {
          Authorization: `Bearer ${key}`,
          ...(body === undefined ? {} : { "Content-Type": "application/json" }),
          ...headers,
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new PayBridgeError({ type: "api_connection_error", code: "network_error", message: `cannot reach paybridge: ${e.message}` });
    }
    const text = await res.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    if (!res.ok) {
      const e = (json && json.error) || {};
      throw new PayBridgeError({ ...e, declineCode: e.decline_code, status: res.status, message: e.message || `HTTP ${res.status}` });
    }
    return json;
  }

  /** Every page of a list. */
  async function all(path) {
    const out = [];
    let after = "";
    for (;;) {
      const sep = path.includes("?") ? "&" : "?";
      const page = await request("GET", `${path}${sep}limit=100${after}`);
      out.push(...page.data);
      if (!page.has_more || page.data.length === 0) return out;
      after = `&starting_after=${encodeURIComponent(page.data[page.data.length - 1].id)}`;
    }
  }

  /**
   * Follows an order's events (its history first, then live). Reconnects with
   * Last-Event-ID after a dropped connection, so no event is missed or repeated.
   * Returns a function that stops watching.
   */
  function watch(orderId, callback, { clientSecret, onError } = {}) {
    const controller = new AbortController();
    let lastId = null;
    let stopped = false;
    let delay = 250;
    const qs = clientSecret ? `?client_secret=${encodeURIComponent(clientSecret)}` : "";
    (async () => {
      while (!stopped) {
        try {
          const res = await doFetch(`${base}/v1/orders/${encodeURIComponent(orderId)}/stream${qs}`, {
            headers: { Authorization: `Bearer ${key}`, Accept: "text/event-stream", ...(lastId ? { "Last-Event-ID": lastId } : {}) },
            signal: controller.signal,
          });
          if (!res.ok) {
            const e = ((await res.json().catch(() => null)) || {}).error || {};
            const err = new PayBridgeError({ ...e, status: res.status });
            if (res.status < 500) {
              stopped = true;
              if (onError) onError(err);
              return;
            }
            throw err;
          }
          delay = 250;
          await readEvents(res.body, ({ id, data }) => {
            lastId = id;
            if (!stopped) callback(data);
          });
        } catch (e) {
          if (stopped || controller.signal.aborted) return;
          if (onError && e instanceof PayBridgeError && e.status >= 500) onError(e);
        }
        if (stopped) return;
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 5000);
      }
    })();
    return () => {
      stopped = true;
      controller.abort();
    };
  }

  async function order(id, clientSecret) {
    const qs = clientSecret ? `?client_secret=${encodeURIComponent(clientSecret)}` : "";
    return request("GET", `/v1/orders/${encodeURIComponent(id)}${qs}`);
  }

  function details(o) {
    const payment = (o.payments || []).find((p) => p.status !== "failed" && p.status !== "canceled" && p.status !== "expired") || (o.payments || [])[0] || null;
    return {
      order: o.id,
      status: o.status,
      amount: o.amount_total,
      amountPaid: o.amount_paid,
      currency: o.currency,
      payment: payment && {
        id: payment.id,
        status: payment.status,
        amount: payment.amount,
        currency: payment.currency,
        method: payment.method,
        provider: payment.provider_name,
        paymentIntent: payment.provider.payment_intent,
        charge: payment.provider.charge,
        nextAction: payment.next_action || null,
      },
      subscription: o.subscription || null,
    };
  }

  /**
   * Starts a hosted checkout in a popup of its own and settles on what paybridge says
   * of the order, never on the popup: it resolves once paybridge has the provider's
   * signed word that the order is paid, and rejects with a PayBridgeError
   * `checkout_canceled` (the customer cancelled, or `signal` aborted: the checkout was
   * ended on the server) or `checkout_expired` once the server says the checkout
   * expired. A declined card does not settle it: the customer retries on the hosted
   * page, and `onEvent` sees each `payment.failed` (and `payment.requires_action`, whose
   * payment carries `next_action.url`, when a bank asks the customer to authenticate a
   * charge made without them; see `payments.authenticate`). The popup is another site's page
   * (as Stripe Checkout is), so nothing here depends on reaching into it. To check out
   * as an existing customer (or save their card) with a publishable key, pass
   * `customer_session_secret`, the short-lived secret your server minted with
   * `POST /v1/customers/{id}/sessions`.
   */
  async function checkout({ line_items, mode = "payment", customer, success_url, cancel_url, onEvent, popup, signal, ...rest } = {}) {
    const features = "popup,width=480,height=760";
    // A window of its own (opened now, while the click that called us still counts as
    // the user's): two checkouts at once never share, or steal, a popup.
    const name = `paybridge-checkout-${Date.now().toString(36)}${Math.random().toString(36).slice(2)}`;
    const win = popup !== undefined ? popup : typeof window !== "undefined" ? window.open("", name, features) : null;
    // The SDK's return page learns which checkout it is about from `{CHECKOUT_ID}` and
    // asks paybridge (a publishable key is public; no other key is put in a URL).
    const back = (result) => {
      const k = String(key).startsWith("pb_pk_") ? `&key=${encodeURIComponent(key)}` : "";
      return `${base}/sdk/return?result=${result}&checkout={CHECKOUT_ID}${k}`;
    };
    let session;
    try {
      if (signal && signal.aborted) throw new PayBridgeError({ type: "checkout_error", code: "checkout_canceled", message: "the checkout was cancelled" });
      session = await request("POST", "/v1/checkout/sessions", {
        line_items,
        mode,
        ...(customer ? { customer } : {}),
        success_url: success_url || back("success"),
        cancel_url: cancel_url || back("cancel"),
        ...rest,
      });
    } catch (e) {
      if (win && !win.closed) win.close();
      throw e;
    }
    if (win) win.location.href = session.url;
    else if (typeof window !== "undefined") throw new PayBridgeError({ type: "invalid_request_error", code: "popup_blocked", message: "the checkout window was blocked; call checkout() from a click" });

    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = (fn, value) => {
        if (settled) return;
        settled = true;
        stop();
        if (signal) signal.removeEventListener("abort", onAbort);
        // Closes the popup where this page still can (a page that severed its opener
        // closes itself from the return page).
        try {
          if (win && !win.closed) win.close();
        } catch {
          /* not ours to close any more */
        }
        fn(value);
      };
      const paid = (o) => finish(resolve, { customerId: o.customer || session.customer || null, transactionDetails: details(o) });
      // Ended on the server: the outcome still comes from the order's stream (it may
      // have been paid a moment before, and then it resolves as paid).
      const onAbort = () => {
        request("POST", `/v1/checkout/sessions/${encodeURIComponent(session.id)}/expire`).catch(() => null);
      };
      if (signal) signal.addEventListener("abort", onAbort);
      const stop = watch(
        session.order,
        async (event) => {
          if (onEvent) {
            try {
              onEvent(event);
            } catch {
              /* the caller's handler must not break the checkout */
            }
          }
          const obj = event.data.object;
          if (event.type === "order.paid") {
            paid(await order(session.order, session.client_secret).catch(() => obj));
          } else if (event.type === "checkout.expired" && obj.id === session.id) {
            const o = await order(session.order, session.client_secret).catch(() => null);
            if (o && o.status === "paid") return paid(o);
            // Ended before its time: someone ended it (the customer's cancel, or ours).
            const early = obj.expires_at && event.created < obj.expires_at;
            finish(
              reject,
              early
                ? new PayBridgeError({ type: "checkout_error", code: "checkout_canceled", message: "the checkout was cancelled; nothing was charged" })
                : new PayBridgeError({ type: "checkout_error", code: "checkout_expired", message: "the checkout expired; nothing was charged" }),
            );
          }
        },
        { clientSecret: session.client_secret, onError: (e) => finish(reject, e) },
      );
    });
  }

  /**
   * The payment of an order (or a payment itself) that waits for its customer to
   * authenticate it (3-D Secure: status `requires_action`), with the page where they
   * do it; `null` when none does.
   */
  function nextAction(orderOrPayment) {
    const o = orderOrPayment || {};
    const payments = o.object === "payment" ? [o] : o.payments || [];
    const p = payments.find((x) => x.status === "requires_action" && x.next_action && x.next_action.url);
    return p ? { payment: p.id, type: p.next_action.type, url: p.next_action.url } : null;
  }

  /**
   * Opens the page where the customer authenticates a payment (3-D Secure), in a popup
   * (call it from a click) or, with `{ redirect: true }`, in this window. Takes an
   * order or a payment as the API shows it, or the `next_action.url` itself. The
   * outcome comes as the order's events (`payment.succeeded`, `payment.failed`), as
   * for any payment. Returns the window, or `null` when nothing needs authenticating.
   */
  function authenticate(target, { redirect = false, popup } = {}) {
    const url = typeof target === "string" ? target : (nextAction(target) || {}).url;
    if (!url) return null;
    if (redirect) {
      window.location.assign(url);
      return window;
    }
    const win = popup || window.open(url, `paybridge-authenticate-${Date.now().toString(36)}`, "popup,width=480,height=760");
    if (!win) throw new PayBridgeError({ type: "invalid_request_error", code: "popup_blocked", message: "the authentication window was blocked; call authenticate() from a click" });
    if (popup) win.location.href = url;
    return win;
  }

  return {
    configuration: {
      /** Sets the provider and its keys (admin key); resolves to `{ webhookCallbackUrl }`. */
      async update({ provider, providerPublicKey, providerPrivateKey }) {
        const body = { provider };
        if (providerPublicKey !== undefined) body.provider_public_key = providerPublicKey;
        if (providerPrivateKey !== undefined) body.provider_secret_key = providerPrivateKey;
        const r = await request("PUT", "/v1/payment_config", body);
        return { webhookCallbackUrl: r.webhook_callback_url, configured: r.configured, provider: r.provider };
      },
      /** Stores the provider's webhook signing secret (admin key). */
      async updateSigningSecret(secret) {
        const r = await request("PUT", "/v1/payment_config/signing_secret", { signing_secret: secret });
        return { configured: r.configured };
      },
    },
    /** Whether the app can take payments (any key). */
    async isConfigured() {
      return (await request("GET", "/v1/payment_config/status")).configured === true;
    },
    /** The catalog (a publishable key sees active products only). */
    getProducts() {
      return all("/v1/products");
    },
    checkout,
    logs: {
      /** A customer's payment log, newest first (server or admin key). */
      get({ customerId, limit = 100 } = {}) {
        return request("GET", `/v1/customers/${encodeURIComponent(customerId)}/events?limit=${limit}`).then((r) => r.data);
      },
    },
    customers: {
      /**
       * Mints a customer session (server key, on your server): its secret lets a browser
       * with the publishable key check out as this customer or save a card onto them.
       */
      createSession(customerId, { expiresIn } = {}) {
        return request("POST", `/v1/customers/${encodeURIComponent(customerId)}/sessions`, expiresIn ? { expires_in: expiresIn } : {});
      },
      /**
       * Opens the provider's customer portal for this customer (server key, on your
       * server): send the customer to `url`; they come back to `returnUrl`. A
       * publishable key is refused.
       */
      async createPortalSession(customerId, { returnUrl }) {
        const r = await request("POST", `/v1/customers/${encodeURIComponent(customerId)}/portal_sessions`, { return_url: returnUrl });
        return { id: r.id, customer: r.customer, url: r.url, returnUrl: r.return_url };
      },
    },
    orders: {
      get: order,
      watch,
    },
    payments: {
      nextAction,
      authenticate,
    },
    /** The raw API, for everything else: `pb.request("GET", "/v1/payments")`. */
    request,
  };
}

export default PayBridge;

if (typeof window !== "undefined") {
  window.PayBridge = PayBridge;
  window.PayBridge.Error = PayBridgeError;
  window.PayBridge.formatMoney = formatMoney;
}
