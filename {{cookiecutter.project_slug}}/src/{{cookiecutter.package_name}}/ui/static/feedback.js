// Feedback on one answer: thumbs up or down and an optional comment, sent to
// POST /v1/feedback with the answer's trace id (the operator finds the trace by it).

import { api } from "./api.js";
import { clear, errorBox, h } from "./dom.js";

let forms = 0;
// A thumb drawn here (no icon font, no emoji font needed); "down" is the same, turned over.
const THUMB = "M2 10h4v11H2z M8 21h9.5a2 2 0 0 0 2-1.6l1.4-7A2 2 0 0 0 19 10h-5.5l.9-4.3A1.6 1.6 0 0 0 12.8 4L8 9.5z";

function thumb(down) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("class", down ? "icon down" : "icon");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", THUMB);
  svg.append(path);
  return svg;
}

export function feedbackForm(traceId) {
  forms += 1;
  const id = `feedback-${forms}`;
  let rating = null;
  const status = h("div", { class: "status", "aria-live": "polite" });
  const comment = h("textarea", { id: `${id}-comment`, rows: 2, maxlength: 2000 });
  const send = h("button", { type: "submit", disabled: true }, "Send feedback");
  const choice = (value, label) =>
    h(
      "button",
      {
        type: "button",
        class: "thumb",
        "aria-pressed": "false",
        dataset: { rating: value },
        onclick: (event) => {
          rating = value;
          for (const b of form.querySelectorAll(".thumb")) b.setAttribute("aria-pressed", String(b === event.currentTarget));
          send.disabled = false;
        },
      },
      thumb(value === "down"),
      " ",
      label,
    );
  const form = h(
    "form",
    {
      class: "feedback",
      "aria-labelledby": `${id}-legend`,
      onsubmit: async (event) => {
        event.preventDefault();
        if (!rating) return;
        send.disabled = true;
        clear(status, "Sending\u2026");
        try {
          await api("/v1/feedback", {
            method: "POST",
            json: { trace_id: traceId, rating, comment: comment.value.trim() || null },
          });
          form.dataset.sent = rating;
          for (const control of form.querySelectorAll("button, textarea")) control.disabled = true;
          clear(status, h("p", { class: "notice ok" }, "Thank you: your feedback was recorded."));
        } catch (error) {
          send.disabled = false;
          if (error.status === 404 && error.problem && error.problem.detail === "Not Found") {
            // No such route (a service from before the feedback endpoint), not a bad trace id.
            error.message = "This service does not take feedback (it has no POST /v1/feedback).";
          }
          clear(status, errorBox(error));
        }
      },
    },
    h("p", { id: `${id}-legend`, class: "legend" }, "Was this answer useful?"),
    h("div", { class: "row" }, choice("up", "Yes"), choice("down", "No")),
    h("label", { for: `${id}-comment` }, "Comment (optional)"),
    comment,
    h("div", { class: "row" }, send),
    status,
  );
  return form;
}
