// Every call to the service: the key from session storage as a Bearer header (never in a
// URL), and every failure turned into one sentence a person can act on.

const KEY_ITEM = "rag-pilot.api-key";

export const keyStore = {
  get: () => sessionStorage.getItem(KEY_ITEM),
  set: (key) => sessionStorage.setItem(KEY_ITEM, key),
  clear: () => sessionStorage.removeItem(KEY_ITEM),
};

export class ApiError extends Error {
  constructor(sentence, { status = 0, problem = null, traceId = null } = {}) {
    super(sentence);
    this.status = status;
    this.problem = problem;
    this.traceId = traceId;
  }
}

export function plural(count, noun, nouns) {
  return `${count} ${count === 1 ? noun : nouns || noun + "s"}`;
}

function asSentence(text) {
  const trimmed = text.trim();
  return /[.!?:)]$/.test(trimmed) ? trimmed : trimmed + ".";
}

// What a failed response means, as a sentence: the status says whose move it is, the
// problem's `detail` (RFC 9457) says what to do.
export function sentence(status, problem, retryAfter, hadKey) {
  const detail = problem && typeof problem.detail === "string" ? asSentence(problem.detail) : "";
  if (status === 401) {
    if (!hadKey) return "No API key is set for this tab: enter one on the Key screen.";
    return `${detail || "The API key was not accepted."} Enter a valid key on the Key screen.`;
  }
  if (status === 403) return `This API key may not do that. ${detail}`.trim();
  if (status === 429) {
    const seconds = Number.parseInt(retryAfter || "", 10);
    const when = seconds > 0 ? `in ${plural(seconds, "second")}` : "in a moment";
    return `Too many requests with this key: try again ${when}.`;
  }
  if (detail) return detail;
  if (status >= 500) return `The service failed (${status}); its log says why.`;
  return `The service refused the request (${status}).`;
}

export async function errorOf(response, hadKey = true) {
  let problem = null;
  const type = response.headers.get("Content-Type") || "";
  if (type.includes("json")) {
    try {
      problem = await response.json();
    } catch {
      problem = null;
    }
  }
  return new ApiError(
    sentence(response.status, problem, response.headers.get("Retry-After"), hadKey),
    {
      status: response.status,
      problem,
      traceId: (problem && problem.trace_id) || response.headers.get("X-Trace-Id"),
    },
  );
}

// fetch() with the key; resolves to the Response when it is 2xx, else throws an ApiError.
// `key` overrides the stored one (checking a key before keeping it).
export async function api(path, { method = "GET", json, body, signal, key } = {}) {
  const headers = new Headers({ Accept: "application/json" });
  const sent = key === undefined ? keyStore.get() : key;
  if (sent) headers.set("Authorization", `Bearer ${sent}`);
  if (json !== undefined) {
    headers.set("Content-Type", "application/json");
    body = JSON.stringify(json);
  }
  // A body only when there is one: fetch() refuses a GET or HEAD that carries one.
  const init = { method, headers, signal, cache: "no-store" };
  if (body !== undefined) init.body = body;
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError("The service could not be reached: check that it is running.");
  }
  if (!response.ok) throw await errorOf(response, Boolean(sent));
  return response;
}

export async function apiJson(path, options) {
  const response = await api(path, options);
  return response.json();
}

// Server-Sent Events from a fetch() body (EventSource cannot POST or send a header).
export async function* sseEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
      }
    }
  } finally {
    // Stopped early (or done): cancelling closes the connection, which stops the answer.
    await reader.cancel().catch(() => {});
  }
}
