// The console's entry: log in with an API key, then route #/... views.

import { api, getKey, session, setKey, whenUnauthorized } from "./api.js";
import { configView, configsView } from "./configs.js";
import { announce, clearStaleAnnouncement, field, fill, h } from "./dom.js";
import { jobView } from "./job.js";
import { jobsView, newJobView } from "./jobs.js";
import { workloadView, workloadsView } from "./workloads.js";

const main = () => document.getElementById("main");
let stopView = null;

const ROUTES = [
  [/^\/jobs\/?$/, (root, m, q) => jobsView(root, q)],
  [/^\/jobs\/new$/, (root, m, q) => newJobView(root, q)],
  [/^\/jobs\/([^/]+)$/, (root, m) => jobView(root, decodeURIComponent(m[1]))],
  [/^\/configs\/?$/, (root) => configsView(root)],
  [/^\/configs\/new$/, (root, m, q) => configView(root, null, q)],
  [/^\/configs\/([^/]+)$/, (root, m, q) => configView(root, decodeURIComponent(m[1]), q)],
  [/^\/workloads\/?$/, (root) => workloadsView(root)],
  [/^\/workloads\/([^/]+)\/([^/]+)$/, (root, m) => workloadView(root, decodeURIComponent(m[1]), decodeURIComponent(m[2]))],
];

async function route() {
  if (stopView) stopView();
  stopView = null;
  if (!session.me) return;
  clearStaleAnnouncement();
  const raw = location.hash.replace(/^#/, "") || "/jobs";
  const [path, query] = raw.split("?");
  const params = new URLSearchParams(query || "");
  const root = main();
  const section = path.split("/")[1];
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  for (const [pattern, view] of ROUTES) {
    const m = path.match(pattern);
    if (!m) continue;
    fill(root, h("p", { class: "muted" }, "Loading…"));
    try {
      const stop = await view(root, m, params);
      if (typeof stop === "function") stopView = stop;
    } catch (err) {
      fill(root, h("h1", {}, "Something went wrong"), h("p", { class: "error-box", role: "alert" }, err.message));
    }
    document.title = `${root.querySelector("h1")?.textContent || "Console"} · Flywheel`;
    return;
  }
  fill(root, h("h1", {}, "Not found"), h("p", {}, "No such page. ", h("a", { href: "#/jobs" }, "Go to jobs")));
}

function showLoggedIn() {
  document.getElementById("nav").hidden = false;
  document.getElementById("who").hidden = false;
  const me = session.me;
  const scope = me.client_ids ? ` · ${me.client_ids.join(", ")}` : "";
  document.getElementById("who-role").textContent = me.auth_enabled ? `${me.role}${scope}` : "auth off";
  document.getElementById("logout").hidden = !me.auth_enabled;
}

function showLogin(message) {
  if (stopView) stopView();
  stopView = null;
  session.me = null;
  document.getElementById("nav").hidden = true;
  document.getElementById("who").hidden = true;
  const input = h("input", { type: "password", autocomplete: "current-password", required: true, spellcheck: "false" });
  const error = h("p", { class: "form-error", role: "alert", id: "login-error" }, message || "");
  const form = h(
    "form",
    { class: "login card", id: "login-form" },
    h("h1", {}, "Log in"),
    h("p", { class: "muted" }, "Paste an API key (it starts with fw_). It is kept in this tab only and forgotten when you close it."),
    field({ id: "api-key", label: "API key", control: input }),
    error,
    h("button", { type: "submit", id: "login" }, "Log in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    setKey(input.value.trim());
    try {
      await start();
    } catch (err) {
      setKey(null);
      error.textContent = err.status === 401 ? "That key is unknown or revoked." : err.message;
      input.focus();
    }
  });
  fill(main(), form);
  input.focus();
}

async function start() {
  session.me = await api.get("/api/auth/me");
  showLoggedIn();
  announce(`Logged in as ${session.me.role}`, "info");
  if (!location.hash || location.hash === "#/" || location.hash === "#") location.hash = "#/jobs";
  else await route();
}

whenUnauthorized(() => {
  if (session.me) {
    setKey(null);
    showLogin("Your key is no longer accepted; log in again.");
  }
});

window.addEventListener("hashchange", () => {
  route();
  main().focus({ preventScroll: true });
});

document.getElementById("logout").addEventListener("click", () => {
  setKey(null);
  announce("Logged out", "info");
  showLogin();
});

(async () => {
  try {
    await start();
  } catch (err) {
    if (getKey()) setKey(null);
    showLogin(err.status === 401 ? "" : err.message);
  }
})();
