// Documents: the tenant's list (GET /v1/documents), uploads (POST /v1/documents, then the
// job at /v1/ingestions/{id} polled for each file's outcome), deletes after a confirmation.

import { apiJson, plural } from "./api.js";
import { clear, errorBox, h } from "./dom.js";

const POLL_MS = 600;
const FINISHED = new Set(["succeeded", "failed"]);

export function initDocuments(config) {
  const hint = document.getElementById("upload-hint");
  hint.textContent =
    `Formats: ${config.suffixes.join(" ")}. At most ${plural(config.max_upload_files, "file")} ` +
    `of ${megabytes(config.max_file_bytes)} each per upload; a file with the name of an ` +
    "earlier upload replaces it.";
  document.getElementById("upload-files").setAttribute("accept", config.suffixes.join(","));
  document.getElementById("upload-form").addEventListener("submit", (event) => {
    event.preventDefault();
    upload();
  });
  document.getElementById("documents-refresh").addEventListener("click", () => loadDocuments());
}

function megabytes(bytes) {
  return bytes >= 1e6 ? `${Math.round(bytes / 1e5) / 10} MB` : `${Math.round(bytes / 1e3)} kB`;
}

export async function loadDocuments(message = "") {
  const table = document.getElementById("documents-table");
  const status = document.getElementById("documents-status");
  status.textContent = message || "Loading\u2026";
  try {
    const { documents } = await apiJson("/v1/documents");
    documents.sort((a, b) => a.source.localeCompare(b.source) || a.corpus.localeCompare(b.corpus));
    status.textContent = message || (documents.length ? plural(documents.length, "document") + "." : "");
    if (!documents.length) {
      clear(table, h("p", { class: "muted" }, "No documents yet: upload some above, or ingest a folder with `make ingest`."));
      return;
    }
    clear(
      table,
      h(
        "table",
        {},
        h("caption", { class: "visually-hidden" }, "Documents, with their chunk counts"),
        h("thead", {}, h("tr", {}, ["Source", "Corpus", "Chunks", "Ingested", ""].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, documents.map(documentRow)),
      ),
    );
  } catch (error) {
    status.textContent = "";
    clear(table, errorBox(error));
  }
}

function documentRow(d) {
  const note = d.duplicate_of ? h("span", { class: "muted" }, ` (same content as ${d.duplicate_of})`) : null;
  return h(
    "tr",
    { dataset: { source: d.source } },
    h("th", { scope: "row" }, d.source, note),
    h("td", {}, d.corpus),
    h("td", { class: "num" }, String(d.chunks)),
    h("td", {}, h("time", { datetime: d.ingested_at }, formatTime(d.ingested_at))),
    h(
      "td",
      {},
      h("button", { type: "button", class: "danger small", "aria-label": `Delete ${d.source}`, onclick: () => confirmDelete(d) }, "Delete"),
    ),
  );
}

function formatTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

function confirmDelete(d) {
  const dialog = document.getElementById("confirm-dialog");
  document.getElementById("confirm-title").textContent = `Delete ${d.source}?`;
  document.getElementById("confirm-text").textContent =
    `Its ${plural(d.chunks, "chunk")} leave search at once, and an uploaded file is removed too. This cannot be undone.`;
  dialog.returnValue = "";
  dialog.addEventListener(
    "close",
    async () => {
      if (dialog.returnValue !== "confirm") return;
      const status = document.getElementById("documents-status");
      status.textContent = `Deleting ${d.source}\u2026`;
      try {
        const deleted = await apiJson(`/v1/documents/${encodeURIComponent(d.id)}`, { method: "DELETE" });
        await loadDocuments(`Deleted ${deleted.source} (${plural(deleted.chunks_deleted, "chunk")}).${deleted.note ? " " + deleted.note : ""}`);
      } catch (error) {
        clear(status, errorBox(error));
      }
    },
    { once: true },
  );
  dialog.showModal();
}

async function upload() {
  const input = document.getElementById("upload-files");
  const button = document.getElementById("upload-button");
  const panel = document.getElementById("upload-job");
  if (!input.files.length) return;
  const form = new FormData();
  for (const file of input.files) form.append("files", file, file.name);
  button.disabled = true;
  clear(panel, h("p", { class: "status" }, `Uploading ${plural(input.files.length, "file")}\u2026`));
  try {
    let job = await apiJson("/v1/documents", { method: "POST", body: form });
    input.value = "";
    renderJob(panel, job);
    while (!FINISHED.has(job.status)) {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      job = await apiJson(`/v1/ingestions/${encodeURIComponent(job.id)}`);
      renderJob(panel, job);
    }
    await loadDocuments();
  } catch (error) {
    panel.append(errorBox(error));
  } finally {
    button.disabled = false;
  }
}

const STATUS_WORDS = {
  queued: "Waiting for its turn",
  running: "Ingesting",
  succeeded: "Finished",
  failed: "Failed",
};

function renderJob(panel, job) {
  const total = job.total || job.files.length;
  const skipped = job.outcomes.filter((o) => o.status === "skipped").length;
  let summary = `${STATUS_WORDS[job.status] || job.status}: ${job.done} of ${plural(total, "file")} done`;
  if (skipped) summary += `, ${skipped} skipped`;
  clear(
    panel,
    h(
      "section",
      { class: "job", "aria-label": "Upload progress", dataset: { status: job.status } },
      h("p", { class: "job-summary" }, summary + "."),
      h("progress", { max: total, value: job.done, "aria-label": "Files done" }),
      job.error ? h("p", { class: "notice error", role: "alert" }, job.error) : null,
      h(
        "ul",
        { class: "outcomes" },
        job.files.map((name) => outcomeItem(name, job.outcomes.find((o) => o.source === name || o.source.endsWith("/" + name)))),
      ),
    ),
  );
}

function outcomeItem(name, outcome) {
  if (!outcome) return h("li", { dataset: { status: "pending" } }, h("span", { class: "file" }, name), " \u2014 waiting");
  const parts = [h("span", { class: "file" }, name), " \u2014 ", h("strong", { class: `outcome ${outcome.status}` }, outcome.status)];
  if (outcome.status !== "skipped" && outcome.status !== "deleted") parts.push(`, ${plural(outcome.chunks, "chunk")}`);
  if (outcome.reason) parts.push(h("span", { class: "reason" }, `: ${outcome.reason}`));
  return h(
    "li",
    { dataset: { status: outcome.status } },
    parts,
    outcome.warnings.length ? h("ul", { class: "warnings" }, outcome.warnings.map((w) => h("li", {}, w))) : null,
  );
}
