// Ask: the question goes to POST /v1/query with stream=true; tokens are shown as they come,
// then the final body replaces them with the answer, its [n] citations, and feedback.

import { api, ApiError, sseEvents } from "./api.js";
import { clear, errorBox, h, traceLine } from "./dom.js";
import { feedbackForm } from "./feedback.js";

let running = null; // the AbortController of the answer being streamed

export function initAsk() {
  const form = document.getElementById("ask-form");
  const question = document.getElementById("question");
  const stop = document.getElementById("ask-stop");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = question.value.trim();
    if (text) ask(text);
  });
  question.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });
  stop.addEventListener("click", () => running && running.abort());
  initCitationDialog();
}

async function ask(text) {
  if (running) running.abort();
  const controller = new AbortController();
  running = controller;
  const result = document.getElementById("ask-result");
  const button = document.getElementById("ask-button");
  const stop = document.getElementById("ask-stop");
  const body = h("p", { class: "answer-text" });
  const article = h(
    "article",
    { class: "answer", "aria-busy": "true", "aria-label": "Answer", dataset: { state: "streaming", tokens: "0" } },
    h("p", { class: "asked" }, h("span", { class: "muted" }, "Question: "), text),
    body,
    h("p", { class: "status muted" }, "Answering\u2026"),
  );
  clear(result, article);
  button.disabled = true;
  stop.hidden = false;
  let tokens = 0;
  try {
    const response = await api("/v1/query", {
      method: "POST",
      json: { question: text, stream: true },
      signal: controller.signal,
    });
    let final = null;
    for await (const { event, data } of sseEvents(response)) {
      if (event === "token") {
        tokens += 1;
        article.dataset.tokens = String(tokens);
        body.append(data.text);
      } else if (event === "final") {
        final = data;
      } else if (event === "error") {
        throw new ApiError(data.detail || "The answer failed.", {
          status: data.status,
          problem: data,
          traceId: data.trace_id,
        });
      }
    }
    if (!final) throw new ApiError("The answer stopped before it was complete; ask again.");
    clear(article, ...answerView(text, final));
    article.dataset.state = final.refused ? "refused" : "answered";
  } catch (error) {
    if (error.name === "AbortError") {
      article.dataset.state = "stopped";
      article.querySelector(".status")?.replaceChildren("Stopped.");
    } else {
      article.dataset.state = "error";
      clear(article, h("p", { class: "asked" }, h("span", { class: "muted" }, "Question: "), text), errorBox(error));
    }
  } finally {
    article.setAttribute("aria-busy", "false");
    if (running === controller) {
      // Not when a newer question replaced this one: its answer is still coming.
      running = null;
      button.disabled = false;
      stop.hidden = true;
    }
  }
}

function where(citation) {
  const parts = [citation.source];
  if (citation.page != null) parts.push(`page ${citation.page}`);
  if (citation.row != null) parts.push(`row ${citation.row}`);
  if (citation.line != null) parts.push(`line ${citation.line}`);
  return parts.join(", ");
}

function answerView(question, final) {
  const asked = h("p", { class: "asked" }, h("span", { class: "muted" }, "Question: "), question);
  const byNumber = new Map(final.citations.map((c) => [c.number, c]));
  if (final.refused) {
    return [
      asked,
      h(
        "div",
        { class: "notice refusal", role: "status" },
        h("h2", {}, "The documents do not answer this question"),
        h("p", {}, "Nothing in your tenant's documents says this, so no answer was made up. Try other words, or upload the document that answers it on the Documents screen."),
        final.answer ? h("p", { class: "muted" }, "The service said: ", final.answer) : null,
      ),
      traceLine(final.trace_id),
      feedbackForm(final.trace_id),
    ];
  }
  const answer = h("p", { class: "answer-text" });
  // "[2]" becomes a button opening citation 2; a number with no citation stays text.
  for (const piece of final.answer.split(/(\[\d+\])/)) {
    const match = /^\[(\d+)\]$/.exec(piece);
    const citation = match && byNumber.get(Number(match[1]));
    if (citation) {
      answer.append(
        h(
          "button",
          {
            type: "button",
            class: "cite",
            "aria-label": `Citation ${citation.number}: ${where(citation)}`,
            dataset: { number: citation.number },
            onclick: () => openCitation(citation),
          },
          piece,
        ),
      );
    } else if (piece) {
      answer.append(piece);
    }
  }
  const notes = [];
  if (!final.grounded) notes.push("This answer cites passages the service could not match to the documents: check it against the sources.");
  if (final.cached) notes.push("Answered from the cache.");
  if (final.fallback_used) notes.push("Written by the fallback model.");
  return [
    asked,
    answer,
    notes.length ? h("p", { class: "hint" }, notes.join(" ")) : null,
    final.citations.length
      ? h(
          "section",
          { class: "citations", "aria-label": "Citations" },
          h("h2", {}, "Sources"),
          h(
            "ol",
            {},
            final.citations.map((c) =>
              h(
                "li",
                { value: c.number },
                h("button", { type: "button", class: "link", onclick: () => openCitation(c) }, where(c)),
              ),
            ),
          ),
        )
      : null,
    h("p", { class: "hint" }, final.model ? `Model: ${final.model}` : "Quoted from the documents (extractive answerer)."),
    traceLine(final.trace_id),
    feedbackForm(final.trace_id),
  ];
}

function initCitationDialog() {
  const dialog = document.getElementById("citation-dialog");
  dialog.querySelector("[data-close]").addEventListener("click", () => dialog.close());
  // A click on the backdrop (outside the dialog's box) closes it too; Escape does natively.
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close();
  });
}

function openCitation(citation) {
  const dialog = document.getElementById("citation-dialog");
  document.getElementById("citation-title").textContent = `Citation [${citation.number}]`;
  document.getElementById("citation-where").textContent = where(citation);
  document.getElementById("citation-text").textContent = citation.text;
  const scores = [];
  if (citation.dense_score != null) scores.push(`similarity to the question ${citation.dense_score.toFixed(2)}`);
  if (citation.rerank_score != null) scores.push(`reranker score ${citation.rerank_score.toFixed(2)}`);
  document.getElementById("citation-scores").textContent = scores.length ? `Evidence: ${scores.join(", ")}.` : "";
  dialog.showModal();
}
