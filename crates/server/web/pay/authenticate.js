// paybridge's 3-D Secure page on Stripe. Stripe.js runs the bank's challenge with the
// intent's client secret (given to this page only, when it was served); the payment's
// outcome then reaches paybridge through Stripe's webhooks, as any other.
(function () {
  "use strict";
  const meta = (name) => {
    const el = document.querySelector(`meta[name="${name}"]`);
    return el ? el.content : "";
  };
  const result = document.getElementById("result");
  const button = document.getElementById("authenticate");
  const say = (text, kind) => {
    result.textContent = text;
    result.className = kind || "note";
  };

  async function authenticate() {
    if (typeof window.Stripe !== "function") {
      say("Stripe.js could not be loaded. Check your connection and try again.", "error");
      return;
    }
    button.disabled = true;
    say("Waiting for your bank…");
    try {
      const stripe = window.Stripe(meta("pb-stripe-key"));
      const clientSecret = meta("pb-client-secret");
      const paymentMethod = meta("pb-payment-method");
      // An intent waiting on its next action is handed to Stripe.js as it is; one that
      // Stripe refused off-session (`authentication_required`) is confirmed again with
      // its card, which brings up the challenge.
      const out =
        meta("pb-intent-status") === "requires_action"
          ? await stripe.handleNextAction({ clientSecret })
          : await stripe.confirmCardPayment(
              clientSecret,
              paymentMethod ? { payment_method: paymentMethod } : undefined,
            );
      if (out.error) {
        say(out.error.message || "Authentication failed.", "error");
      } else if (
        out.paymentIntent &&
        ["succeeded", "processing", "requires_capture"].includes(out.paymentIntent.status)
      ) {
        say("Authentication complete. The payment is being confirmed; you can close this page.", "ok");
        button.hidden = true;
        return;
      } else {
        say("The payment was not authenticated. Try again.", "error");
      }
    } catch (e) {
      say(String((e && e.message) || e), "error");
    }
    button.disabled = false;
  }

  button.addEventListener("click", authenticate);
  authenticate();
})();
