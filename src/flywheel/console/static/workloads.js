// #/workloads (pairs with record counts and current model) and #/workloads/{c}/{w}.

import { api, can, currentPromotion, enc, webhookSummary } from "./api.js";
import { announce, confirmAction, fill, fmtMoney, fmtMs, fmtNumber, fmtTime, h } from "./dom.js";
import { metricLabel } from "./job.js";
import { poll } from "./poll.js";

export function workloadsView(root) {
  const body = h("tbody", {});
  fill(
    root,
    h("h1", {}, "Workloads"),
    h("p", { class: "muted" }, "Every client and workload the log store holds, and the model promoted for it."),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "data", id: "workloads-table" },
        h("caption", { class: "sr-only" }, "Workloads"),
        h("thead", {}, h("tr", {}, ["Client / workload", "Chat records", "Retrieval records", "Newest record", "Promoted model", ""].map((t) => h("th", { scope: "col" }, t)))),
        body,
      ),
    ),
  );
  let lastList = null;
  const load = async () => {
    const list = await api.get("/api/workloads");
    const models = await Promise.all(list.items.map((w) => currentPromotion(w.client_id, w.workload_id)));
    const text = JSON.stringify([list, models]);
    if (text === lastList) return;
    lastList = text;
    if (!list.items.length) {
      fill(body, h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No logs yet. Load logs with POST /api/logs or `flywheel logs load`.")));
      return;
    }
    fill(
      body,
      list.items.map((w, i) =>
        h(
          "tr",
          {},
          h("th", { scope: "row" }, h("a", { href: `#/workloads/${enc(w.client_id)}/${enc(w.workload_id)}` }, `${w.client_id} / ${w.workload_id}`)),
          h("td", { class: "num" }, w.chat_records),
          h("td", { class: "num" }, w.retrieval_records),
          h("td", {}, fmtMs(w.newest_timestamp)),
          h("td", {}, models[i] ? `${models[i].model} (${models[i].variant})` : h("span", { class: "muted" }, "none: configured model")),
          h(
            "td",
            {},
            can("operator")
              ? h("a", { href: `#/jobs/new?client_id=${enc(w.client_id)}&workload_id=${enc(w.workload_id)}` }, "New job")
              : null,
          ),
        ),
      ),
    );
  };
  return poll(load);
}

const PLAIN = {
  latency_p50_ms: ["p50 latency", (v) => `${fmtNumber(v, 0)} ms`],
  latency_p95_ms: ["p95 latency", (v) => `${fmtNumber(v, 0)} ms`],
  cost_per_1k_requests: ["Cost per 1k requests", fmtMoney],
};

function evidence(scores) {
  const rows = [];
  for (const [k, v] of Object.entries(scores || {})) {
    if (k === "candidate" || v === null || v === undefined) continue;
    if (typeof v === "object") {
      rows.push([metricLabel(k), `${fmtNumber(v.value)} (95% CI ${fmtNumber(v.ci_low)} – ${fmtNumber(v.ci_high)}, n=${v.n ?? "—"})`]);
    } else if (k in PLAIN) {
      rows.push([PLAIN[k][0], PLAIN[k][1](v)]);
    } else {
      rows.push([k.replaceAll("_", " "), typeof v === "number" ? fmtNumber(v) : String(v)]);
    }
  }
  return h("dl", { class: "summary" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

/** The webhook outcome kept on a promotion; a failure is shown as an alert-styled box. */
function webhookNote(hook, id) {
  if (!hook) return null;
  const text = webhookSummary(hook);
  return hook.delivered
    ? h("p", { class: "muted", id, "data-delivered": "true" }, `Applications were told: ${text}.`)
    : h(
        "p",
        { class: "error-box", id, "data-delivered": "false" },
        `The promotion stands, but the ${text}. Applications polling the model endpoint see it; others were not told.`,
      );
}

function historyWebhook(p) {
  const parts = [];
  if (p.webhook) parts.push(h("span", { class: p.webhook.delivered ? "muted" : "warnings" }, p.webhook.delivered ? "delivered" : `failed: ${p.webhook.error}`));
  if (p.rollback_webhook) parts.push(h("span", { class: p.rollback_webhook.delivered ? "muted" : "warnings" }, p.rollback_webhook.delivered ? " · rollback delivered" : ` · rollback failed: ${p.rollback_webhook.error}`));
  return parts.length ? parts : "—";
}

export function workloadView(root, clientId, workloadId) {
  const base = `/api/workloads/${enc(clientId)}/${enc(workloadId)}`;
  const current = h("section", { class: "card", "aria-labelledby": "cur-h", id: "current-model" });
  const historyBody = h("tbody", {});
  fill(
    root,
    h("p", { class: "crumb" }, h("a", { href: "#/workloads" }, "Workloads"), " / ", `${clientId} / ${workloadId}`),
    h("div", { class: "page-head" }, h("h1", {}, `${clientId} / ${workloadId}`), can("operator") ? h("a", { class: "button", href: `#/jobs/new?client_id=${enc(clientId)}&workload_id=${enc(workloadId)}` }, "New job") : null),
    current,
    h(
      "section",
      { "aria-labelledby": "hist-h" },
      h("h2", { id: "hist-h" }, "Promotion history"),
      h(
        "table",
        { class: "data compact", id: "promotion-history" },
        h("thead", {}, h("tr", {}, ["Promoted", "Model", "Variant", "Job", "By", "Note", "State", "Webhook"].map((t) => h("th", { scope: "col" }, t)))),
        historyBody,
      ),
    ),
  );
  let last = null;
  let shown = null; // the promotion on screen: what a rollback expects to be in force
  const load = async () => {
    const [model, history] = await Promise.all([currentPromotion(clientId, workloadId), api.get(`${base}/promotions`)]);
    const text = JSON.stringify([model, history]);
    if (text === last) return;
    last = text;
    shown = model;
    fill(
      current,
      h("h2", { id: "cur-h" }, "Model in production"),
      model
        ? [
            h("p", { class: "model-name" }, h("strong", { id: "current-model-name" }, model.model), ` · ${model.variant}`, model.scores?.candidate && model.scores.candidate !== model.model ? ` of ${model.scores.candidate}` : ""),
            h("p", { class: "muted" }, `Promoted ${fmtTime(model.promoted_at)} by ${model.promoted_by || "—"} from job `, model.job_id ? h("a", { href: `#/jobs/${enc(model.job_id)}` }, model.job_id) : "—", model.note ? ` — “${model.note}”` : ""),
            webhookNote(model.webhook, "current-webhook"),
            h("h3", {}, "Evidence"),
            evidence(model.scores),
          ]
        : h("p", { class: "muted" }, "No model promoted: the application keeps its configured model."),
      h("p", { class: "muted" }, "Applications read this from ", h("code", {}, `GET ${base}/model`), "."),
      model && can("operator") ? h("button", { type: "button", class: "danger", id: "rollback", onclick: rollback }, "Roll back to the previous model") : null,
    );
    fill(
      historyBody,
      history.items.length
        ? history.items.map((p) =>
            h(
              "tr",
              { class: p.rolled_back ? "rolled-back" : null },
              h("th", { scope: "row" }, fmtTime(p.promoted_at)),
              h("td", {}, p.model),
              h("td", {}, p.variant),
              h("td", {}, p.job_id ? h("a", { href: `#/jobs/${enc(p.job_id)}` }, p.job_id.slice(0, 16)) : "—"),
              h("td", {}, p.promoted_by || "—"),
              h("td", {}, p.note || "—"),
              h("td", {}, p.rolled_back ? "rolled back" : p.id === model?.id ? "in production" : "superseded"),
              h("td", { class: "webhook" }, historyWebhook(p)),
            ),
          )
        : h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No promotions yet.")),
    );
  };
  async function rollback() {
    const seen = shown;
    if (!seen) return;
    const ok = await confirmAction("Roll back?", `${seen.model} (${seen.variant}) is rolled back for ${clientId} / ${workloadId}; the previous promotion (or the configured model) serves again.`, "Roll back");
    if (!ok) return;
    try {
      // expected_current: if someone promoted or rolled back since this page loaded, the API
      // refuses with 409 naming the promotion in force, instead of rolling back that one.
      const out = await api.post(`${base}/promotions/rollback`, { expected_current: seen.id });
      const hook = out.webhook && !out.webhook.delivered ? ` The ${webhookSummary(out.webhook)}.` : "";
      const what = out.current ? `Rolled back; ${out.current.model} serves again.` : "Rolled back; the configured model serves again.";
      announce(what + hook, hook ? "error" : "ok");
    } catch (err) {
      announce(err.message, "error");
    }
    load().catch((err) => announce(err.message, "error"));
  }
  return poll(load);
}
