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
  } | null;
  subscription: string | null;
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
  orders: {
    get(id: string, clientSecret?: string): Promise<any>;
    /** Calls `callback` with each of the order's events; returns a function that stops. */
    watch(id: string, callback: (event: PayBridgeEvent) => void, options?: WatchOptions): () => void;
  };
  request<T = any>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<T>;
}

export declare function PayBridge(options: Options): Client;
export declare function formatMoney(amount: number, currency: string, locale?: string): string;
export declare function minorUnits(currency: string): number;
export default PayBridge;
