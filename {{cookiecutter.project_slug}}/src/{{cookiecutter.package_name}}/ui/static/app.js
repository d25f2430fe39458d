// The app's shell: the service's name and settings, the four screens by #hash, the key state.

import { apiJson, keyStore } from "./api.js";
import { initAsk } from "./ask.js";
import { initDocuments, loadDocuments } from "./documents.js";
import { errorBox } from "./dom.js";
import { initEval, loadEval } from "./evalreport.js";
import { initKeys } from "./keys.js";

const SCREENS = ["ask", "documents", "eval", "key"];
let config = null;

function showKeyState() {
  const state = document.getElementById("key-state");
  if (!config.keys_required) state.textContent = "Development mode: no key needed";
  else state.textContent = keyStore.get() ? "Key set for this tab" : "No key set";
  document.body.dataset.key = keyStore.get() ? "set" : "unset";
}

function show() {
  let screen = location.hash.slice(1);
  if (!SCREENS.includes(screen)) screen = config.keys_required && !keyStore.get() ? "key" : "ask";
  for (const name of SCREENS) {
    document.getElementById(`screen-${name}`).hidden = name !== screen;
    const link = document.querySelector(`nav a[data-screen="${name}"]`);
    if (name === screen) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.body.dataset.screen = screen;
  if (screen === "documents") loadDocuments();
  if (screen === "eval") loadEval();
}

function moveFocus() {
  // After a screen change, a keyboard or screen-reader user lands on its heading.
  document.querySelector(`#screen-${document.body.dataset.screen} h1`)?.focus();
}

async function start() {
  try {
    config = await apiJson("/ui/config.json");
  } catch (error) {
    document.getElementById("main").prepend(errorBox(error));
    return;
  }
  document.getElementById("project-name").textContent = config.project;
  document.getElementById("project-version").textContent = `v${config.version}`;
  document.title = config.project;
  initAsk();
  initDocuments(config);
  initEval();
  initKeys(config, () => {
    showKeyState();
  });
  showKeyState();
  window.addEventListener("hashchange", () => {
    show();
    moveFocus();
  });
  show();
  document.body.dataset.ready = "true";
}

start();
