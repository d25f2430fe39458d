// Key: entered once per tab, checked against the service, kept in session storage.

import { apiJson, keyStore } from "./api.js";
import { errorBox, clear, h } from "./dom.js";

export function initKeys(config, onChange) {
  const form = document.getElementById("key-form");
  const input = document.getElementById("api-key");
  const status = document.getElementById("key-status");
  if (!config.keys_required) {
    clear(status, h("p", { class: "notice info" }, "This service runs in development mode: it needs no key (never run it like this where others can reach it)."));
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    clear(status, "Checking the key\u2026");
    try {
      // Any keyed read tells a good key (200, or 403 for a key without the ingest scope)
      // from a bad one (401).
      await apiJson("/v1/documents", { key });
      keyStore.set(key);
      clear(status, h("p", { class: "notice ok" }, "Key accepted: it is kept for this tab until you close it. ", h("a", { href: "#ask" }, "Ask a question")));
    } catch (error) {
      if (error.status === 401 || error.status === 0) {
        keyStore.clear();
        clear(status, errorBox(error));
      } else if (error.status === 403) {
        keyStore.set(key);
        clear(status, h("p", { class: "notice ok" }, "Key accepted for asking questions; it lacks the ingest scope, so the Documents screen will refuse it."));
      } else {
        keyStore.set(key);
        clear(status, h("p", { class: "notice ok" }, "Key kept for this tab, but the check failed:"), errorBox(error));
      }
    }
    input.value = "";
    onChange();
  });
  document.getElementById("key-forget").addEventListener("click", () => {
    keyStore.clear();
    clear(status, h("p", { class: "notice ok" }, "Key forgotten."));
    onChange();
  });
}
