// Eval: the gate's latest HTML report (GET /ui/eval-report, keyed), shown in a sandboxed
// frame: it runs no script and reaches nothing, whatever the report holds.

import { api } from "./api.js";
import { clear, errorBox, h } from "./dom.js";

export function initEval() {
  document.getElementById("eval-refresh").addEventListener("click", () => loadEval());
}

let downloadUrl = null;

export async function loadEval() {
  const body = document.getElementById("eval-body");
  clear(body, h("p", { class: "status" }, "Loading the report\u2026"));
  try {
    const response = await api("/ui/eval-report");
    const html = await response.text();
    const frame = h("iframe", { class: "report", title: "Eval report", sandbox: "" });
    frame.srcdoc = html;
    if (downloadUrl) URL.revokeObjectURL(downloadUrl);
    downloadUrl = URL.createObjectURL(new Blob([html], { type: "text/html" }));
    const download = h("a", { href: downloadUrl, download: "eval-report.html" }, "Download the report");
    clear(body, h("p", {}, download), frame);
  } catch (error) {
    if (error.status === 404) {
      clear(
        body,
        h(
          "div",
          { class: "notice info", role: "status", dataset: { missing: "true" } },
          h("h2", {}, "No eval report yet"),
          h("p", {}, error.message),
          h("p", {}, "The operator runs the gate where the service runs (the store must not be in use, so stop the server first), then reloads this screen."),
        ),
      );
    } else {
      clear(body, errorBox(error));
    }
  }
}
