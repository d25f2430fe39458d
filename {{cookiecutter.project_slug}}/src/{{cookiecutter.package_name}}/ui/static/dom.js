// A small element builder: text goes in as text nodes, never as HTML.

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : String(child));
  }
}

export function clear(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

// An error as people read it: the sentence, and the trace id to quote to the operator.
export function errorBox(error) {
  return h(
    "div",
    { class: "notice error", role: "alert" },
    h("p", {}, error.message || String(error)),
    error.traceId ? traceLine(error.traceId) : null,
  );
}

export function traceLine(traceId) {
  const code = h("code", { class: "trace-id" }, traceId);
  const status = h("span", { class: "copied", "aria-live": "polite" });
  const copy = h(
    "button",
    {
      type: "button",
      class: "secondary small",
      "aria-label": "Copy the trace id",
      onclick: async () => {
        status.textContent = (await copyText(traceId, code)) ? "Copied." : "Select it and copy.";
      },
    },
    "Copy",
  );
  return h("p", { class: "trace" }, "Trace id ", code, " ", copy, " ", status);
}

async function copyText(text, element) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // No clipboard API (a plain-http origin that is not localhost): select it instead.
    const range = document.createRange();
    range.selectNodeContents(element);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    return false;
  }
}
