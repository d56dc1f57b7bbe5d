// Where the checkout popup lands. The shop's page does not hear from here (the hosted
// page, like Stripe's, severed the popup from its opener): what this page says, and
// what the shop says, both come from paybridge. On cancel it ends the checkout on the
// server (the shop sees `checkout.expired` on the order's stream); after paying it
// reads the checkout until paybridge has the provider's word. Then it closes itself.
const q = new URLSearchParams(location.search);
const result = q.get("result") === "cancel" ? "cancel" : "success";
const checkout = q.get("checkout") || "";
const key = q.get("key") || "";
const message = document.getElementById("return-message");
const say = (text) => {
  message.textContent = text;
};

async function call(method, path) {
  const res = await fetch(path, { method, headers: { Authorization: `Bearer ${key}` } });
  const body = await res.json().catch(() => ({}));
  return { status: res.status, body };
}

function done(text) {
  say(`${text} This window closes itself; if it does not, you can close it.`);
  setTimeout(() => window.close(), 1500);
}

async function cancel() {
  say("Cancelling the checkout…");
  const r = await call("POST", `/v1/checkout/sessions/${encodeURIComponent(checkout)}/expire`);
  if (r.status === 200 && r.body.status === "expired") done("Checkout cancelled. Nothing was charged.");
  else if (r.status === 409) confirmPaid("This checkout was already completed.");
  else say("Could not cancel the checkout. You can close this window; nothing is charged unless you pay.");
}

async function confirmPaid(prefix = "") {
  say(`${prefix} Confirming your payment…`.trim());
  for (let i = 0; i < 60; i++) {
    const r = await call("GET", `/v1/checkout/sessions/${encodeURIComponent(checkout)}`);
    if (r.status === 200 && r.body.status === "complete") return done("Payment received. Thank you.");
    if (r.status === 200 && r.body.status === "expired") return say("This checkout expired. Nothing was charged.");
    if (r.status >= 400 && r.status < 500 && r.status !== 429) break;
    await new Promise((ok) => setTimeout(ok, 1000));
  }
  say("The payment is not confirmed yet. The shop shows its status as soon as it is. You can close this window.");
}

if (!checkout.startsWith("checkout_") || !key) {
  say("You can close this window.");
} else if (result === "cancel") {
  cancel();
} else {
  confirmPaid();
}
