// Tells the page that opened the checkout how it ended, then closes. The opener does
// not trust this for money: it waits for the webhook-confirmed status on the stream.
const result = new URLSearchParams(location.search).get("result") === "cancel" ? "cancel" : "success";
document.getElementById("return-message").textContent =
  result === "cancel" ? "Checkout cancelled. You can close this window." : "Thank you. You can close this window.";
if (window.opener) {
  window.opener.postMessage({ source: "paybridge", result }, "*");
  setTimeout(() => window.close(), 300);
}
