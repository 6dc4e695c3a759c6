// #/configs (list), #/configs/new and #/configs/{name} (view, edit, version history).

import { api, can, enc } from "./api.js";
import { announce, clearFieldErrors, field, fill, fmtTime, h, setFieldError } from "./dom.js";

/** The body sections the form edits, each a JSON textarea; the rest goes to "other". */
const SECTIONS = [
  ["candidates", "Candidate models", "A list: [{\"name\": ..., \"context_length\": ..., \"pricing\": {...}}]"],
  ["data_split_config", "Data split", "{\"eval_size\": 20, \"val_ratio\": 0.1, ...}"],
  ["icl_config", "In-context learning (ICL)", "{\"max_examples\": 3, \"example_selection\": ...}"],
  ["training_config", "Training", "{\"epochs\": 2, \"batch_size\": 16, \"learning_rate\": 0.0001}"],
  ["lora_config", "LoRA", "{\"adapter_dim\": 32, \"alpha\": 16, ...}"],
  ["llm_judge_config", "LLM judge", "{\"type\": \"none\"} or {\"type\": \"remote\", \"url\": ..., \"model_name\": ...}"],
];
const KNOWN = new Set(SECTIONS.map(([k]) => k));

export async function configsView(root) {
  const list = await api.get("/api/configs");
  fill(
    root,
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, "Configurations"),
      can("admin") ? h("a", { href: "#/configs/new", class: "button", id: "new-config" }, "New configuration") : null,
    ),
    h("p", { class: "muted" }, "Named, versioned job configurations over the shipped defaults. Jobs keep a snapshot of the version they used."),
    list.items.length
      ? h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            { class: "data", id: "configs-table" },
            h("caption", { class: "sr-only" }, "Named configurations"),
            h("thead", {}, h("tr", {}, ["Name", "Job type", "Version", "Description", "Updated"].map((t) => h("th", { scope: "col" }, t)))),
            h(
              "tbody",
              {},
              list.items.map((c) =>
                h(
                  "tr",
                  {},
                  h("th", { scope: "row" }, h("a", { href: `#/configs/${enc(c.name)}` }, c.name)),
                  h("td", {}, c.job_type),
                  h("td", { class: "num" }, c.version),
                  h("td", {}, c.description || "—"),
                  h("td", {}, fmtTime(c.created_at)),
                ),
              ),
            ),
          ),
        )
      : h("p", { class: "muted" }, "No named configurations yet; jobs use the shipped defaults."),
  );
}

export async function configView(root, name, params) {
  if (name === null) {
    renderEditor(root, null, []);
    return;
  }
  const [latest, versions] = await Promise.all([
    api.get(`/api/configs/${enc(name)}`),
    api.get(`/api/configs/${enc(name)}/versions`),
  ]);
  const wanted = Number(params.get("version")) || latest.version;
  const shown = versions.items.find((v) => v.version === wanted) || latest;
  renderEditor(root, { latest, shown }, versions.items);
}

function renderEditor(root, loaded, versions) {
  const creating = loaded === null;
  const editable = can("admin") && (creating || loaded.shown.version === loaded.latest.version);
  const body = creating ? {} : loaded.shown.body;
  const name = h("input", { type: "text", required: true, value: creating ? "" : loaded.latest.name, readonly: !creating, autocomplete: "off" });
  const jobType = h(
    "select",
    { disabled: !editable },
    ["llm_job", "embedding_job"].map((t) => h("option", { value: t, selected: !creating && loaded.shown.job_type === t }, t)),
  );
  const description = h("input", { type: "text", value: creating ? "" : loaded.shown.description, readonly: !editable, maxlength: 2000 });
  const areas = {};
  const sectionFields = SECTIONS.map(([key, label, hint]) => {
    const area = h("textarea", { rows: key === "candidates" ? 8 : 4, spellcheck: "false", readonly: !editable, class: "code" });
    area.value = key in body ? JSON.stringify(body[key], null, 2) : "";
    areas[key] = area;
    return field({ id: `cfg-${key}`, label, control: area, hint: `JSON; empty keeps the default. ${hint}` });
  });
  const other = Object.fromEntries(Object.entries(body).filter(([k]) => !KNOWN.has(k)));
  const otherArea = h("textarea", { rows: 4, spellcheck: "false", readonly: !editable, class: "code" });
  otherArea.value = Object.keys(other).length ? JSON.stringify(other, null, 2) : "";
  const summary = h("div", { class: "form-error", role: "alert", id: "config-form-error" });
  const save = h("button", { type: "submit", id: "save-config" }, creating ? "Create configuration" : "Save as new version");
  const form = h(
    "form",
    { class: "stack", id: "config-form", novalidate: true },
    summary,
    h(
      "div",
      { class: "grid" },
      field({ id: "cfg-name", label: "Name", control: name, hint: "Letters, digits, '.', '_' or '-'" }),
      field({ id: "cfg-job_type", label: "Job type", control: jobType }),
    ),
    field({ id: "cfg-description", label: "Description", control: description }),
    h("div", { class: "sections" }, sectionFields),
    field({ id: "cfg-other", label: "Other settings", control: otherArea, hint: "JSON object: evaluation_config, embedding_config, timeouts, …" }),
    editable ? h("div", { class: "actions" }, save) : null,
  );
  const title = creating ? "New configuration" : `${loaded.latest.name}`;
  const versionNote = creating
    ? null
    : h(
        "p",
        { class: "muted" },
        `Showing version ${loaded.shown.version} of ${loaded.latest.version}` +
          (loaded.shown.version !== loaded.latest.version ? " (older versions are read-only)" : "") +
          ` · saved ${fmtTime(loaded.shown.created_at)} by ${loaded.shown.created_by || "—"}`,
      );
  fill(
    root,
    h("p", { class: "crumb" }, h("a", { href: "#/configs" }, "Configurations"), " / ", creating ? "new" : loaded.latest.name),
    h("h1", {}, title),
    versionNote,
    form,
    creating ? null : history(loaded, versions),
  );

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    summary.textContent = "";
    const payload = {};
    let bad = false;
    for (const [key, area] of [...Object.entries(areas), ["other", otherArea]]) {
      const text = area.value.trim();
      if (!text) continue;
      try {
        const value = JSON.parse(text);
        if (key === "other") Object.assign(payload, value);
        else payload[key] = value;
      } catch (err) {
        setFieldError(form, `cfg-${key}`, `not valid JSON: ${err.message}`);
        bad = true;
      }
    }
    if (bad) {
      summary.textContent = "Fix the fields marked below.";
      form.querySelector("[aria-invalid]")?.focus();
      return;
    }
    save.disabled = true;
    try {
      let saved;
      if (creating) {
        saved = await api.post("/api/configs", { name: name.value.trim(), job_type: jobType.value, description: description.value, body: payload });
      } else {
        saved = await api.put(`/api/configs/${enc(loaded.latest.name)}`, {
          expected_version: loaded.latest.version,
          job_type: jobType.value,
          description: description.value,
          body: payload,
        });
      }
      announce(`Saved ${saved.name} version ${saved.version}`, "ok");
      if (creating) location.hash = `#/configs/${enc(saved.name)}`;
      else window.dispatchEvent(new HashChangeEvent("hashchange"));
    } catch (err) {
      showConfigErrors(form, summary, err);
    } finally {
      save.disabled = false;
    }
  });
}

function showConfigErrors(form, summary, err) {
  summary.textContent = err.message;
  for (const e of err.errors || []) {
    const loc = (e.loc || []).filter((p) => p !== "body");
    const top = loc[0];
    const path = loc.slice(1).join(".");
    const message = path ? `${path}: ${e.msg}` : e.msg;
    let id = "cfg-other";
    if (top === "name" || top === "job_type" || top === "description") id = `cfg-${top}`;
    else if (KNOWN.has(top)) id = `cfg-${top}`;
    const el = form.querySelector(`#${id}-error`);
    const existing = el ? el.textContent : "";
    setFieldError(form, id, existing ? `${existing}; ${message}` : message);
  }
  form.querySelector("[aria-invalid]")?.focus();
}

function history(loaded, versions) {
  return h(
    "section",
    { "aria-labelledby": "hist-h" },
    h("h2", { id: "hist-h" }, "Version history"),
    h(
      "table",
      { class: "data compact", id: "config-versions" },
      h("thead", {}, h("tr", {}, ["Version", "Saved", "By", "Description", ""].map((t) => h("th", { scope: "col" }, t)))),
      h(
        "tbody",
        {},
        [...versions].reverse().map((v) =>
          h(
            "tr",
            { class: v.version === loaded.shown.version ? "current" : null },
            h("th", { scope: "row" }, `v${v.version}`),
            h("td", {}, fmtTime(v.created_at)),
            h("td", {}, v.created_by || "—"),
            h("td", {}, v.description || "—"),
            h(
              "td",
              {},
              v.version === loaded.shown.version
                ? h("span", { class: "muted" }, "shown")
                : h("a", { href: `#/configs/${enc(loaded.latest.name)}?version=${v.version}` }, `View v${v.version}`),
            ),
          ),
        ),
      ),
    ),
  );
}
