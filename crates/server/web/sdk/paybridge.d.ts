// Types of paybridge.js (served at /sdk/paybridge.d.ts).

export interface ApiErrorFields {
  type?: string;
  code?: string | null;
  message?: string;
  param?: string | null;
  status?: number;
  declineCode?: string | null;
}

/** Every failure: the API's error `type`, `code`, `message` and `param`. */
export declare class PayBridgeError extends Error {
  constructor(fields?: ApiErrorFields);
  /** `invalid_request_error`, `card_error`, `checkout_error`, `api_connection_error`, … */
  type: string;
  code: string | null;
  param: string | null;
  /** The HTTP status (0 when the server was not reached). */
  status: number;
  /** The issuer's reason for a decline (`insufficient_funds`, …). */
  declineCode: string | null;
}

export interface Options {
  /** The paybridge server (default: this page's origin). */
  baseUrl?: string;
  /** A publishable key in browsers; server or admin keys on servers. */
  key: string;
  fetch?: typeof fetch;
}

export interface Product {
  id: string;
  object: "product";
  name: string;
  description: string | null;
  /** Minor units (cents; yen). */
  unit_amount: number;
  currency: string;
  recurring: { interval: "day" | "week" | "month" | "year"; interval_count: number } | null;
  active: boolean;
  metadata: Record<string, string>;
}

export interface LineItem {
  product?: string;
  price?: string;
  quantity: number;
}

/** One of paybridge's events, as `GET /v1/events` and the streams show it. */
export interface PayBridgeEvent {
  id: string;
  object: "event";
  type: string;
  created: number;
  data: { object: any };
}

export interface TransactionDetails {
  order: string;
  status: string;
  amount: number;
  amountPaid: number;
  currency: string;
  payment: {
    id: string;
    status: string;
    amount: number;
    currency: string;
    method: string;
    provider: string;
    paymentIntent: string | null;
    charge: string | null;
    /** While `status` is `requires_action`: where the customer authenticates it. */
    nextAction: NextAction | null;
  } | null;
  subscription: string | null;
}

/** What the customer must do before a payment can go on (3-D Secure). */
export interface NextAction {
  type: "authenticate";
  /** paybridge's page where the customer authenticates the payment. */
  url: string;
}

/** A payment awaiting its customer's authentication, from `payments.nextAction`. */
export interface PendingAction {
  payment: string;
  type: "authenticate";
  url: string;
}

export interface CheckoutParams {
  line_items: LineItem[];
  mode?: "payment" | "subscription";
  /** An existing customer. With a publishable key, only with `customer_session_secret`. */
  customer?: string;
  /**
   * The `client_secret` of a customer session your server minted for this customer
   * (`POST /v1/customers/{id}/sessions`, short-lived): lets a browser check out as
   * that customer and save a card onto them. It names the customer itself.
   */
  customer_session_secret?: string;
  /**
   * Where the popup goes after paying (default: paybridge's return page, which reads
   * the checkout's status from paybridge and closes itself). `{CHECKOUT_ID}` in either
   * URL becomes the checkout's id.
   */
  success_url?: string;
  /** Where the popup goes on cancel (default: the return page, which ends the checkout on the server). */
  cancel_url?: string;
  /** Save the card onto the customer (with a publishable key: needs `customer_session_secret`). */
  save_card?: boolean;
  expires_in?: number;
  metadata?: Record<string, string>;
  /** Every event of the order as it happens (live status). */
  onEvent?: (event: PayBridgeEvent) => void;
  /** A window to use instead of opening a popup (null: none, e.g. on a server). */
  popup?: Window | null;
  /**
   * Aborting ends the checkout on the server (`POST /v1/checkout/sessions/{id}/expire`);
   * the promise then rejects with `checkout_canceled`, or resolves if it was paid first.
   */
  signal?: AbortSignal;
}

export interface CheckoutResult {
  customerId: string | null;
  transactionDetails: TransactionDetails;
}

export interface WatchOptions {
  /** The order's client secret (with a publishable key). */
  clientSecret?: string;
  onError?: (error: PayBridgeError) => void;
}

export interface Client {
  configuration: {
    update(config: {
      provider: "stripe" | "sandbox";
      providerPublicKey?: string;
      providerPrivateKey?: string;
    }): Promise<{ webhookCallbackUrl: string; configured: boolean; provider: string }>;
    updateSigningSecret(secret: string): Promise<{ configured: boolean }>;
  };
  isConfigured(): Promise<boolean>;
  getProducts(): Promise<Product[]>;
  /**
   * Resolves once the payment is confirmed by the provider's signed webhook; rejects
   * with `checkout_canceled` or `checkout_expired` once paybridge says the checkout
   * ended unpaid. A decline does not settle it (the customer retries on the page).
   */
  checkout(params: CheckoutParams): Promise<CheckoutResult>;
  logs: {
    get(params: { customerId: string; limit?: number }): Promise<PayBridgeEvent[]>;
  };
  customers: {
    /** Server key: a customer session whose secret lets a browser act as this customer. */
    createSession(customerId: string, options?: { expiresIn?: number }): Promise<{ id: string; object: "customer_session"; customer: string; client_secret: string; expires_at: number; created: number }>;
    /** Server key: the provider's customer portal for this customer. */
    createPortalSession(customerId: string, options: { returnUrl: string }): Promise<{ id: string; customer: string; url: string; returnUrl: string }>;
  };
  orders: {
    get(id: string, clientSecret?: string): Promise<any>;
    /** Calls `callback` with each of the order's events; returns a function that stops. */
    watch(id: string, callback: (event: PayBridgeEvent) => void, options?: WatchOptions): () => void;
  };
  payments: {
    /**
     * The payment of an order (or the payment given) whose status is `requires_action`,
     * with the page where its customer authenticates it; `null` when none is.
     */
    nextAction(orderOrPayment: { object?: string; status?: string; next_action?: NextAction | null; payments?: any[] }): PendingAction | null;
    /**
     * Opens that page in a popup (call it from a click), or in this window with
     * `redirect: true`; takes an order, a payment or the URL itself. The outcome comes
     * as the order's events. Returns the window, or `null` when nothing needs it.
     */
    authenticate(target: string | { object?: string; next_action?: NextAction | null; payments?: any[] }, options?: { redirect?: boolean; popup?: Window }): Window | null;
  };
  request<T = any>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<T>;
}

export declare function PayBridge(options: Options): Client;
export declare function formatMoney(amount: number, currency: string, locale?: string): string;
export declare function minorUnits(currency: string): number;
export default PayBridge;
