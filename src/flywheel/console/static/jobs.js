// #/jobs (list with filters and pagination) and #/jobs/new (the new-job form).

import { api, can, enc } from "./api.js";
import {
  announce,
  badge,
  clearFieldErrors,
  field,
  fill,
  fmtTime,
  h,
  setFieldError,
} from "./dom.js";
import { poll } from "./poll.js";

const STATUSES = ["pending", "running", "cancelling", "cancelled", "completed", "failed"];
const JOB_TYPES = ["llm_job", "embedding_job"];

function select(options, { value = "", blank = null } = {}) {
  const el = h("select", {});
  if (blank !== null) el.append(h("option", { value: "" }, blank));
  for (const opt of options) {
    const [v, label] = Array.isArray(opt) ? opt : [opt, opt];
    el.append(h("option", { value: v, selected: v === value }, label));
  }
  return el;
}

export function jobsView(root, params) {
  const filters = {
    status: params.get("status") || "",
    client_id: params.get("client_id") || "",
    workload_id: params.get("workload_id") || "",
    job_type: params.get("job_type") || "",
  };
  const cursors = [null];
  const status = select(STATUSES, { value: filters.status, blank: "any" });
  const client = h("input", { type: "text", value: filters.client_id, autocomplete: "off" });
  const workload = h("input", { type: "text", value: filters.workload_id, autocomplete: "off" });
  const jobType = select(JOB_TYPES, { value: filters.job_type, blank: "any" });
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter jobs" },
    field({ id: "f-status", label: "Status", control: status }),
    field({ id: "f-client", label: "Client", control: client }),
    field({ id: "f-workload", label: "Workload", control: workload }),
    field({ id: "f-type", label: "Job type", control: jobType }),
    h("button", { type: "submit" }, "Apply filters"),
  );
  const body = h("tbody", {});
  const pageInfo = h("span", { class: "muted" });
  const prev = h("button", { type: "button", class: "secondary", disabled: true }, "Previous page");
  const next = h("button", { type: "button", class: "secondary", disabled: true }, "Next page");
  let nextCursor = null;
  let lastPage = null;

  const table = h(
    "table",
    { class: "data", id: "jobs-table" },
    h("caption", { class: "sr-only" }, "Jobs, newest first"),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["Job", "Client / workload", "Type", "Status", "Stage", "Progress", "Created", "Finished"].map((t) =>
          h("th", { scope: "col" }, t),
        ),
      ),
    ),
    body,
  );
  fill(
    root,
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, "Jobs"),
      can("operator") ? h("a", { href: "#/jobs/new", class: "button", id: "new-job" }, "New job") : null,
    ),
    form,
    h("div", { class: "table-wrap" }, table),
    h("div", { class: "pager" }, prev, pageInfo, next),
  );

  async function load() {
    const query = new URLSearchParams({ limit: "20" });
    for (const [k, v] of Object.entries(filters)) if (v) query.set(k, v);
    const cursor = cursors[cursors.length - 1];
    if (cursor) query.set("cursor", cursor);
    const page = await api.get(`/api/jobs?${query}`);
    const text = JSON.stringify([query.toString(), page]);
    if (text === lastPage) return; // unchanged: keep the DOM (and the user's focus) as it is
    lastPage = text;
    nextCursor = page.next_cursor;
    next.disabled = !nextCursor;
    prev.disabled = cursors.length === 1;
    pageInfo.textContent = `Page ${cursors.length}`;
    if (!page.items.length) {
      fill(body, h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No jobs match.")));
      return;
    }
    fill(
      body,
      page.items.map((job) =>
        h(
          "tr",
          { "data-job-id": job.id },
          h("th", { scope: "row" }, h("a", { href: `#/jobs/${enc(job.id)}` }, job.id.slice(0, 16))),
          h("td", { class: "nowrap" }, `${job.client_id} / ${job.workload_id}`),
          h("td", {}, job.job_type),
          h("td", {}, badge(job.status)),
          h("td", {}, job.stage || "—"),
          h(
            "td",
            { class: "nowrap" },
            h("progress", { max: 100, value: job.progress, "aria-label": `progress of ${job.id}` }),
            ` ${Math.round(job.progress)}%`,
          ),
          h("td", { class: "nowrap" }, fmtTime(job.created_at)),
          h("td", { class: "nowrap" }, fmtTime(job.finished_at)),
        ),
      ),
    );
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    filters.status = status.value;
    filters.client_id = client.value.trim();
    filters.workload_id = workload.value.trim();
    filters.job_type = jobType.value;
    cursors.length = 1;
    load().catch((err) => announce(err.message, "error"));
  });
  next.addEventListener("click", () => {
    cursors.push(nextCursor);
    load().catch((err) => announce(err.message, "error"));
  });
  prev.addEventListener("click", () => {
    cursors.pop();
    load().catch((err) => announce(err.message, "error"));
  });
  return poll(load);
}

const SPLIT_FIELDS = [
  ["eval_size", "Eval size", "number", "Records held out for evaluation"],
  ["val_ratio", "Validation ratio", "number", "Share of the rest for validation (0–1)"],
  ["min_total_records", "Minimum records", "number", "Fewer clean records fail the job"],
  ["limit", "Record limit", "number", "Most recent records pulled"],
  ["random_seed", "Random seed", "number", "Seed for splits and sampling"],
];

export async function newJobView(root, params) {
  const [workloads, configs] = await Promise.all([api.get("/api/workloads"), api.get("/api/configs")]);
  const pair = h("select", { required: true });
  for (const w of workloads.items) {
    const value = `${w.client_id}\u0000${w.workload_id}`;
    const selected = w.client_id === params.get("client_id") && w.workload_id === params.get("workload_id");
    pair.append(
      h(
        "option",
        { value, selected },
        `${w.client_id} / ${w.workload_id} — ${w.chat_records} chat, ${w.retrieval_records} retrieval records`,
      ),
    );
  }
  const jobType = select(JOB_TYPES);
  const config = h("select", {});
  const fillConfigs = () => {
    fill(config, h("option", { value: "" }, "(shipped defaults)"));
    for (const c of configs.items.filter((c) => c.job_type === jobType.value)) {
      config.append(h("option", { value: c.name }, `${c.name} (v${c.version})`));
    }
  };
  fillConfigs();
  jobType.addEventListener("change", fillConfigs);
  const splitControls = {};
  const splitFields = SPLIT_FIELDS.map(([name, label, type, hint]) => {
    const control = h("input", { type, step: name === "val_ratio" ? "any" : "1", inputmode: "decimal" });
    splitControls[name] = control;
    return field({ id: `split-${name}`, label, control, hint });
  });
  const strategy = select(["stratified", "time"], { blank: "(config's choice)" });
  splitControls.split_strategy = strategy;
  splitFields.push(field({ id: "split-split_strategy", label: "Split strategy", control: strategy }));
  const submit = h("button", { type: "submit", id: "create-job" }, "Create job");
  const summary = h("div", { class: "form-error", role: "alert", id: "job-form-error" });
  const form = h(
    "form",
    { class: "stack", id: "job-form", novalidate: true },
    summary,
    field({
      id: "job-workload",
      label: "Client and workload",
      control: pair,
      hint: workloads.items.length ? "Pairs the log store holds, with record counts" : "No logs yet: load logs first",
    }),
    field({ id: "job-type", label: "Job type", control: jobType }),
    field({ id: "job-config", label: "Named configuration", control: config }),
    h(
      "fieldset",
      {},
      h("legend", {}, "Data split overrides (leave empty to keep the configuration's value)"),
      h("div", { class: "grid" }, splitFields),
    ),
    h("div", { class: "actions" }, h("a", { href: "#/jobs", class: "button secondary" }, "Cancel"), submit),
  );
  fill(root, h("h1", {}, "New job"), form);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    summary.textContent = "";
    const [client_id, workload_id] = (pair.value || "\u0000").split("\u0000");
    const body = { client_id, workload_id, job_type: jobType.value };
    if (config.value) body.config_name = config.value;
    const split = {};
    for (const [name, control] of Object.entries(splitControls)) {
      const raw = control.value.trim();
      if (!raw) continue;
      split[name] = control.tagName === "SELECT" ? raw : Number(raw);
    }
    if (Object.keys(split).length) body.data_split_config = split;
    submit.disabled = true;
    try {
      const created = await api.post("/api/jobs", body);
      announce(`Job ${created.id} created: ${created.message}`, "ok");
      location.hash = `#/jobs/${enc(created.id)}`;
    } catch (err) {
      showJobErrors(form, summary, err);
    } finally {
      submit.disabled = false;
    }
  });
}

function showJobErrors(form, summary, err) {
  summary.textContent = err.message;
  let focused = false;
  for (const e of err.errors || []) {
    const loc = (e.loc || []).filter((p) => p !== "body");
    let id = null;
    if (loc[0] === "data_split_config") id = loc[1] ? `split-${loc[1]}` : "split-eval_size";
    else if (loc[0] === "client_id" || loc[0] === "workload_id") id = "job-workload";
    else if (loc[0] === "config_name") id = "job-config";
    else if (loc[0] === "job_type") id = "job-type";
    if (id && setFieldError(form, id, e.msg)) {
      if (!focused) form.querySelector(`#${id}`).focus();
      focused = true;
    }
  }
}
