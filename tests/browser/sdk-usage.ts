// What an app writes against paybridge.js, type-checked by tsc against crates/server/web/sdk/paybridge.d.ts
// (see the_sdk_types_check). The expect-error lines below prove the types are not `any`.
import PayBridgeDefault, { PayBridge, PayBridgeError, formatMoney, type PayBridgeEvent } from "../../crates/server/web/sdk/paybridge.js";

async function shop(): Promise<string> {
  const pb = PayBridge({ baseUrl: "https://pay.example.com", key: "pb_pk_test_x" });
  const same = PayBridgeDefault({ key: "pb_pk_test_x" });
  const { webhookCallbackUrl } = await same.configuration.update({ provider: "stripe", providerPublicKey: "pk_test_1", providerPrivateKey: "sk_test_1" });
  await same.configuration.updateSigningSecret("whsec_1");
  const ready: boolean = await pb.isConfigured();
  const products = await pb.getProducts();
  const cents: number = products[0].unit_amount;
  try {
    const { customerId, transactionDetails } = await pb.checkout({
      line_items: [{ product: products[0].id, quantity: 1 }],
      mode: "payment",
      onEvent: (e: PayBridgeEvent) => console.log(e.type),
    });
    const paid: number = transactionDetails.amountPaid;
    console.log(customerId ?? "guest", paid, transactionDetails.payment?.paymentIntent);
  } catch (e) {
    if (e instanceof PayBridgeError && e.type === "card_error") console.log(e.declineCode, e.code, e.message);
  }
  const log = await pb.logs.get({ customerId: "customer_1" });
  const stop = pb.orders.watch("order_1", (e) => console.log(e.data.object), { clientSecret: "s" });
  stop();
  // A returning customer, vouched for by the app's server (a customer session).
  await pb.checkout({ line_items: [{ product: "product_1", quantity: 1 }], customer_session_secret: "customersession_1_secret_x", save_card: true });
  // A checkout the shop can end (the server says how it ended).
  const controller = new AbortController();
  const pending = pb.checkout({ line_items: [{ product: "product_1", quantity: 1 }], signal: controller.signal });
  controller.abort();
  await pending.catch((e: PayBridgeError) => e.code === "checkout_canceled");
  // A renewal or off-session charge the bank wants authenticated (3-D Secure).
  const o = await pb.orders.get("order_1", "order_1_secret_x");
  const action = pb.payments.nextAction(o);
  if (action) {
    const url: string = action.url;
    pb.payments.authenticate(o);
    pb.payments.authenticate(url, { redirect: true });
  }
  // @ts-expect-error line_items is required
  await pb.checkout({ mode: "payment" });
  // @ts-expect-error the provider is stripe or sandbox
  await pb.configuration.update({ provider: "paypal" });
  // @ts-expect-error a key is required
  PayBridge({ baseUrl: "x" });
  return `${webhookCallbackUrl} ${ready} ${cents} ${log.length} ${formatMoney(500, "jpy")}`;
}

export default shop;
