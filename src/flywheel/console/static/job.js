// #/jobs/{id}: timeline, dataset stages, scores with CIs, training curves, actions, promotion.
// Embedding jobs show retrieval metrics instead (recall@k, nDCG@10, MRR@10), the retrieval
// dataset counts and drop reasons, and the production retriever's reference row.

import { api, can, currentPromotion, enc } from "./api.js";
import { legend, lossChart, scoreChart } from "./charts.js";
import {
  announce,
  badge,
  confirmAction,
  download,
  field,
  fill,
  fmtDuration,
  fmtMoney,
  fmtNumber,
  fmtTime,
  h,
} from "./dom.js";
import { poll } from "./poll.js";

const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const ACTIVE = new Set(["pending", "running", "cancelling"]);
const VARIANTS = ["base", "icl", "customized"];
const VARIANT_LABEL = { base: "Base", icl: "ICL (few-shot)", customized: "Customized (LoRA)" };
const EMBED_VARIANT_LABEL = { base: "Base", customized: "Customized (fine-tuned)" };
const RETRIEVAL_METRICS = ["recall@1", "recall@5", "recall@10", "ndcg@10", "mrr@10"];
const METRIC_ORDER = [
  "function_name_accuracy",
  "function_name_and_args_accuracy",
  "judge_similarity",
  "judge_tool_call_correctness",
  "format_validity_rate",
  ...RETRIEVAL_METRICS,
];
const METRIC_LABEL = {
  function_name_accuracy: "Tool name accuracy",
  function_name_and_args_accuracy: "Tool name + arguments accuracy",
  judge_similarity: "Judge similarity",
  judge_tool_call_correctness: "Judge tool-call correctness",
  format_validity_rate: "Valid output format",
  "recall@1": "Recall@1",
  "recall@5": "Recall@5",
  "recall@10": "Recall@10",
  "ndcg@10": "nDCG@10",
  "mrr@10": "MRR@10",
};
const RETRIEVAL_DROP_REASONS = {
  empty_query: "the query was empty after normalisation",
  no_retrieved: "no passage was left after passage cleaning",
  no_positives: "no passage was used or clicked",
  positive_not_retrieved: "the used passages were not among those the retriever returned",
};
const PASSAGE_ISSUES = {
  empty_text: "blank passage text",
  unsafe_doc_id: "a tab or newline in the passage id",
  repeated_in_log: "a second copy of a passage in one log",
  positive_id_not_retrieved: "a used id the retriever did not return",
};
const NEGATIVE_EXCLUSIONS = {
  relevant_for_same_query: "used or clicked for the same query elsewhere",
  exact_duplicate_of_positive: "same text as a positive",
  near_duplicate_of_positive: "nearly the same text as a positive",
};
const RETRIEVAL_COUNTS = [
  ["logs_read", "Retrieval logs read"],
  ["chat_logs_converted", "Chat logs converted"],
  ["usable_logs", "Usable logs"],
  ["dropped_logs", "Dropped logs"],
  ["unique_queries", "Unique queries"],
  ["merged_duplicate_logs", "Duplicate logs merged"],
  ["eval_queries", "Eval queries"],
  ["train_queries", "Training queries"],
  ["val_queries", "Validation queries"],
  ["train_rows", "Training rows"],
  ["val_rows", "Validation rows"],
  ["corpus_docs", "Corpus passages"],
  ["hard_negatives", "Hard negatives"],
  ["queries_short_of_negatives", "Queries short of negatives"],
  ["truncated_texts", "Truncated texts"],
  ["reference_run_queries", "Eval queries with a production ranking"],
];
const isEmbedding = (job) => job.job_type === "embedding_job";
const variantLabel = (job, v) => (isEmbedding(job) ? EMBED_VARIANT_LABEL[v] : VARIANT_LABEL[v]) || v;
const DROP_REASONS = {
  invalid_shape: "not an OpenAI-style request and response",
  error_response: "the production model answered with an error",
  truncated: "the answer was cut off at the length limit",
  empty_response: "the answer was empty",
  invalid_tool_arguments: "tool-call arguments were not valid JSON",
  unknown_tool: "called a tool the request did not offer",
  no_user_message: "no user message to learn from",
  over_context_budget: "too long for every candidate's context window",
  duplicate: "same user turns as a newer record",
  near_duplicate: "nearly the same as a newer record",
};
const STAGES = [
  ["pulled", "Pulled from the log store"],
  ["valid", "Valid records"],
  ["unique", "After removing duplicates"],
  ["within_budget", "Fit a candidate's context"],
  ["kept", "Kept for the datasets"],
];

export const metricLabel = (m) => METRIC_LABEL[m] || m;

/** Score-shaped entries ({value, ci_low, ci_high}) of an evaluation's scores. */
export function scoreMetrics(scores) {
  const names = Object.keys(scores || {}).filter(
    (k) => scores[k] && typeof scores[k] === "object" && "value" in scores[k] && "ci_low" in scores[k],
  );
  return names.sort((a, b) => {
    const ia = METRIC_ORDER.indexOf(a);
    const ib = METRIC_ORDER.indexOf(b);
    return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b);
  });
}

function plainError(message) {
  const m = message.toLowerCase();
  if (m.includes("min_total_records") || m.includes("not enough")) {
    return "There were not enough usable log records to build the datasets.";
  }
  if (m.includes("timed out")) return "A stage took longer than its configured timeout and was stopped.";
  if (m.includes("gpu")) return "The job needs more GPUs than the workflow may use.";
  if (m.includes("no candidate could be evaluated")) return "None of the candidate models could be evaluated.";
  if (m.includes("unavailable") || m.includes("cannot be reached")) {
    return "A service the job depends on could not be reached.";
  }
  return "The job stopped with an error.";
}

export function jobView(root, jobId) {
  let last = null;
  let job = null;
  const load = async () => {
    job = await api.get(`/api/jobs/${enc(jobId)}`);
    const text = JSON.stringify(job);
    if (text === last) return;
    last = text;
    render(root, job);
  };
  return poll(load, { until: () => job && TERMINAL.has(job.status) });
}

function render(root, job) {
  const hadFocus = document.activeElement && root.contains(document.activeElement) ? document.activeElement.id : null;
  fill(
    root,
    header(job),
    summary(job),
    job.error || job.warnings.length ? problems(job) : null,
    timeline(job),
    isEmbedding(job) ? retrievalDatasets(job) : datasets(job),
    job.recommendation ? recommendation(job) : null,
    isEmbedding(job) ? retrievalScores(job) : null,
    h("h2", {}, "Candidates"),
    judgeNote(job),
    job.candidates.length ? job.candidates.map((c) => candidate(job, c)) : h("p", { class: "muted" }, "No candidates."),
    artifacts(job),
    job.status === "completed" && can("operator") ? promoteForm(job) : null,
  );
  if (hadFocus) document.getElementById(hadFocus)?.focus();
}

function header(job) {
  const actions = h("div", { class: "actions" });
  actions.append(
    h("button", { type: "button", class: "secondary", id: "download-json", onclick: () => downloadJson(job) }, "Download JSON"),
    h("button", { type: "button", class: "secondary", id: "download-csv", onclick: () => downloadCsv(job) }, "Download CSV"),
  );
  if (can("operator") && ACTIVE.has(job.status) && job.status !== "cancelling") {
    actions.append(h("button", { type: "button", class: "danger", id: "cancel-job", onclick: () => cancelJob(job) }, "Cancel job"));
  }
  if (can("operator") && TERMINAL.has(job.status)) {
    actions.append(h("button", { type: "button", class: "danger", id: "delete-job", onclick: () => deleteJob(job) }, "Delete job"));
  }
  return h(
    "div",
    { class: "page-head" },
    h(
      "div",
      {},
      h("p", { class: "crumb" }, h("a", { href: "#/jobs" }, "Jobs"), " / ", job.id),
      h("h1", {}, `${job.client_id} / ${job.workload_id}`),
      h(
        "p",
        { class: "job-state" },
        h("span", { id: "job-status" }, badge(job.status)),
        " ",
        h("progress", { max: 100, value: job.progress, "aria-label": "Job progress" }),
        ` ${Math.round(job.progress)}%`,
        job.stage ? ` · stage: ${job.stage}` : "",
      ),
    ),
    actions,
  );
}

function summary(job) {
  const row = (term, ...desc) => [h("dt", {}, term), h("dd", {}, ...desc)];
  const started = job.started_at ? new Date(job.started_at) : null;
  const ended = job.finished_at ? new Date(job.finished_at) : null;
  return h(
    "section",
    { "aria-labelledby": "sum-h", class: "card" },
    h("h2", { id: "sum-h", class: "sr-only" }, "Summary"),
    h(
      "dl",
      { class: "summary" },
      row("Workload", h("a", { href: `#/workloads/${enc(job.client_id)}/${enc(job.workload_id)}` }, `${job.client_id} / ${job.workload_id}`)),
      row("Job type", job.job_type),
      row(
        "Configuration",
        job.config_name
          ? h("a", { href: `#/configs/${enc(job.config_name)}` }, `${job.config_name} v${job.config_version}`)
          : "shipped defaults",
      ),
      row("Created", fmtTime(job.created_at)),
      row("Finished", fmtTime(job.finished_at)),
      row("Duration", started && ended ? fmtDuration((ended - started) / 1000) : "—"),
      row("Created by", job.created_by || "—"),
    ),
  );
}

function problems(job) {
  return h(
    "section",
    { class: "card problems", "aria-labelledby": "prob-h" },
    h("h2", { id: "prob-h" }, job.error ? "What went wrong" : "Warnings"),
    job.error
      ? h("div", { class: "error-box", role: "alert", id: "job-error" }, h("p", {}, h("strong", {}, plainError(job.error))), h("p", {}, job.error))
      : null,
    job.warnings.length ? h("ul", { class: "warnings" }, job.warnings.map((w) => h("li", {}, w))) : null,
  );
}

function timeline(job) {
  const timings = (job.recommendation && job.recommendation.timings) || {};
  const items = [];
  const step = (state, title, detail) =>
    items.push(
      h(
        "li",
        { class: `tl-${state}` },
        h("span", { class: "tl-dot", "aria-hidden": "true" }),
        h("span", { class: "tl-title" }, title),
        h("span", { class: "sr-only" }, ` (${{ done: "done", current: "in progress", todo: "not started", failed: "failed" }[state]})`),
        detail ? h("span", { class: "tl-detail" }, detail) : null,
      ),
    );
  const terminal = TERMINAL.has(job.status);
  step("done", "Queued", fmtTime(job.created_at));
  step(job.started_at ? "done" : terminal ? "failed" : "current", "Started", job.started_at ? fmtTime(job.started_at) : "waiting for a worker");
  step(
    job.dataset_stats ? "done" : job.stage === "datasets" ? "current" : terminal ? "failed" : "todo",
    "Datasets built",
    job.dataset_stats
      ? isEmbedding(job)
        ? `${job.dataset_stats.unique_queries ?? "?"} unique queries, ${job.dataset_stats.eval_queries ?? "?"} for eval · ${fmtDuration(timings.datasets_s)}`
        : `kept ${job.dataset_stats.stages?.kept ?? "?"} records · ${fmtDuration(timings.datasets_s)}`
      : null,
  );
  for (const c of job.candidates) {
    const evals = c.evaluations || [];
    const done = evals.filter((e) => ["completed", "failed", "cancelled", "skipped"].includes(e.status)).length;
    const failed = c.status === "failed" || evals.some((e) => e.status === "failed");
    const state = c.status === "completed" ? (failed ? "failed" : "done") : c.status === "pending" ? (terminal ? "failed" : "todo") : failed ? "failed" : "current";
    const ct = (timings.candidates || {})[c.name];
    const progress = evals.length ? `${done}/${evals.length} evaluations ended` : "not started";
    step(state, `Candidate ${c.name}`, `${progress}${ct ? ` · ${fmtDuration(ct.total_s)}` : ""}`);
  }
  const endState = job.status === "completed" ? "done" : terminal ? "failed" : "todo";
  step(endState, terminal ? `Finished: ${job.status}` : "Finished", terminal ? fmtTime(job.finished_at) : null);
  return h("section", { "aria-labelledby": "tl-h" }, h("h2", { id: "tl-h" }, "Timeline"), h("ol", { class: "timeline", id: "timeline" }, items));
}

function datasets(job) {
  const stats = job.dataset_stats;
  const section = h("section", { "aria-labelledby": "ds-h" }, h("h2", { id: "ds-h" }, "Datasets"));
  if (!stats) {
    section.append(h("p", { class: "muted" }, "Not built yet."));
    return section;
  }
  const stages = stats.stages || {};
  const dropped = stages.dropped || {};
  const parts = [];
  if (stages.pulled !== undefined) {
    parts.push(
      h(
        "table",
        { class: "data compact", id: "stage-counts" },
        h("caption", {}, "Records at each stage"),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Stage"), h("th", { scope: "col", class: "num" }, "Records"))),
        h("tbody", {}, STAGES.filter(([k]) => k in stages).map(([k, label]) => h("tr", {}, h("th", { scope: "row" }, label), h("td", { class: "num", "data-stage": k }, stages[k])))),
      ),
    );
  }
  const reasons = Object.entries(dropped);
  parts.push(
    reasons.length
      ? h(
          "table",
          { class: "data compact", id: "drop-reasons" },
          h("caption", {}, "Dropped records and why"),
          h("thead", {}, h("tr", {}, ["Reason", "Records", "What it means"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, reasons.map(([r, n]) => h("tr", {}, h("th", { scope: "row" }, h("code", {}, r)), h("td", { class: "num" }, n), h("td", {}, DROP_REASONS[r] || "")))),
        )
      : h("p", { class: "muted" }, "No records were dropped."),
  );
  const splits = stats.splits || {};
  if (Object.keys(splits).length) {
    parts.push(
      h(
        "table",
        { class: "data compact", id: "splits" },
        h("caption", {}, "Splits"),
        h("thead", {}, h("tr", {}, ["Split", "Records", "By label"].map((t) => h("th", { scope: "col" }, t)))),
        h(
          "tbody",
          {},
          Object.entries(splits).map(([name, sp]) =>
            h(
              "tr",
              {},
              h("th", { scope: "row" }, name),
              h("td", { class: "num" }, sp.records),
              h("td", {}, Object.entries(sp.by_label || {}).map(([l, n]) => `${l}: ${n}`).join(", ") || "—"),
            ),
          ),
        ),
      ),
    );
  }
  section.append(h("div", { class: "cols" }, parts));
  if (stats.workload_type) section.append(h("p", { class: "muted" }, `Workload type: ${stats.workload_type}`));
  return section;
}

function countTable(id, caption, entries, explain) {
  return h(
    "table",
    { class: "data compact", id },
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, ["Reason", "Count", "What it means"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, entries.map(([r, n]) => h("tr", {}, h("th", { scope: "row" }, h("code", {}, r)), h("td", { class: "num", "data-reason": r }, n), h("td", {}, explain[r] || "")))),
  );
}

function retrievalDatasets(job) {
  const stats = job.dataset_stats;
  const section = h("section", { "aria-labelledby": "ds-h" }, h("h2", { id: "ds-h" }, "Datasets"));
  if (!stats) {
    section.append(h("p", { class: "muted" }, "Not built yet."));
    return section;
  }
  const parts = [
    h(
      "table",
      { class: "data compact", id: "retrieval-counts" },
      h("caption", {}, "Logs, queries and rows"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Count"), h("th", { scope: "col", class: "num" }, "Value"))),
      h(
        "tbody",
        {},
        RETRIEVAL_COUNTS.filter(([k]) => k in stats).map(([k, label]) => h("tr", {}, h("th", { scope: "row" }, label), h("td", { class: "num", "data-count": k }, stats[k]))),
      ),
    ),
  ];
  const drops = Object.entries(stats.drop_reasons || {});
  parts.push(drops.length ? countTable("drop-reasons", "Dropped logs and why", drops, RETRIEVAL_DROP_REASONS) : h("p", { class: "muted" }, "No logs were dropped."));
  const issues = Object.entries(stats.passage_issues || {});
  if (issues.length) parts.push(countTable("passage-issues", "Passages left out of a log", issues, PASSAGE_ISSUES));
  const exclusions = Object.entries(stats.negative_exclusions || {});
  if (exclusions.length) parts.push(countTable("negative-exclusions", "Passages kept out of the hard negatives", exclusions, NEGATIVE_EXCLUSIONS));
  section.append(h("div", { class: "cols" }, parts));
  return section;
}

/** The production retriever's level on one metric, as a chart reference line (or null). */
function referenceLevel(job, metric) {
  const sc = job.reference?.metrics?.[metric];
  if (!sc || sc.value === null || sc.value === undefined) return null;
  return { value: sc.value, label: `production retriever ${Number(sc.value).toFixed(3)}`, kind: "production" };
}

/** The value cell's attributes: where the platform's own aggregate differs, it is shown beside ours. */
function valueAttrs(sc) {
  if (!sc.differs) return { class: "num", "data-col": "value" };
  const theirs = fmtNumber(sc.platform_value);
  return {
    class: "num differs",
    "data-col": "value",
    "data-platform-value": theirs,
    title: `Recomputed by Flywheel from the per-item results; the platform's own aggregate is ${theirs}.`,
  };
}

function scoreCell(sc, metric) {
  if (!sc || sc.value === null || sc.value === undefined) return h("td", { class: "num muted", "data-metric": metric }, "—");
  return h(
    "td",
    { class: "num", "data-metric": metric },
    h("span", { class: "v" }, fmtNumber(sc.value)),
    h("span", { class: "ci" }, sc.ci_low === null ? "—" : `${fmtNumber(sc.ci_low)} – ${fmtNumber(sc.ci_high)}`),
  );
}

/** Every candidate variant and the reference row side by side, one column per metric. */
function retrievalScores(job) {
  const rows = [];
  for (const c of job.candidates) {
    for (const e of c.evaluations || []) {
      const scores = e.scores || {};
      if (!RETRIEVAL_METRICS.some((m) => scores[m])) continue;
      const n = RETRIEVAL_METRICS.map((m) => scores[m]?.n).find((v) => v !== undefined);
      rows.push(
        h(
          "tr",
          { "data-row": `${c.name}/${e.eval_type}` },
          h("th", { scope: "row" }, `${c.name} · ${variantLabel(job, e.eval_type)}`),
          RETRIEVAL_METRICS.map((m) => scoreCell(scores[m], m)),
          h("td", { class: "num", "data-col": "n" }, n ?? "—"),
        ),
      );
    }
  }
  const ref = job.reference;
  if (ref) {
    rows.push(
      h(
        "tr",
        { "data-row": "reference", class: "reference-row" },
        h("th", { scope: "row" }, `${ref.name} (reference, not a candidate)`),
        RETRIEVAL_METRICS.map((m) => scoreCell(ref.metrics[m], m)),
        h("td", { class: "num", "data-col": "n" }, ref.queries),
      ),
    );
  }
  if (!rows.length && !job.reference_note) return null;
  return h(
    "section",
    { class: "card", "aria-labelledby": "rs-h", id: "retrieval-scores" },
    h("h2", { id: "rs-h" }, "Retrieval scores"),
    rows.length
      ? h(
          "table",
          { class: "data compact retrieval", id: "retrieval-table" },
          h("caption", {}, "Mean over eval queries, with 95% confidence intervals; n = queries scored"),
          h("thead", {}, h("tr", {}, ["Model", ...RETRIEVAL_METRICS.map(metricLabel), "n"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, rows),
        )
      : null,
    ref
      ? h(
          "p",
          { class: "muted", id: "reference-coverage" },
          `The production retriever's own logged ranking, scored the same way over the ${ref.queries} of ${ref.eval_queries} eval queries that have one` +
            (ref.excluded_queries ? ` (${ref.excluded_queries} without a ranking left out).` : "."),
        )
      : job.reference_note
        ? h("p", { class: "muted", id: "reference-note" }, job.reference_note)
        : null,
  );
}

function recommendation(job) {
  const rec = job.recommendation;
  const ranked = rec.ranked || [];
  const rejected = rec.rejected || [];
  const best = rec.best;
  const llm = "reference_cost_per_1k_requests" in rec;
  return h(
    "section",
    { "aria-labelledby": "rec-h", class: "card" },
    h("h2", { id: "rec-h" }, "Recommendation"),
    h(
      "p",
      { class: best ? "rec-best" : "muted", id: "rec-best" },
      best
        ? ["Recommended: ", h("strong", {}, best)]
        : isEmbedding(job)
          ? "No candidate could be scored."
          : "No candidate reached parity with the reference model.",
    ),
    !llm && job.reference && rec.metric
      ? h(
          "p",
          { class: "muted", id: "rec-reference" },
          `Production retriever (reference, not a candidate): ${metricLabel(rec.metric)} ${fmtNumber(job.reference.metrics[rec.metric]?.value)} over ${job.reference.queries} eval queries.`,
        )
      : null,
    llm
      ? h("p", { class: "muted" }, `Reference model: ${fmtMoney(rec.reference_cost_per_1k_requests)} per 1k requests, ${fmtMoney(rec.reference_monthly_cost)} per month at ${rec.requests_last_30_days} requests in the last 30 days.`)
      : null,
    ranked.length
      ? h(
          "table",
          { class: "data compact", id: "ranked" },
          h("caption", {}, "Candidates at parity, best first"),
          h(
            "thead",
            {},
            h("tr", {}, (llm ? ["Rank", "Candidate / variant", "Cost per 1k requests", "Monthly cost", "Monthly savings", "p95 latency"] : ["Rank", "Candidate / variant", metricLabel(rec.metric)]).map((t) => h("th", { scope: "col" }, t))),
          ),
          h(
            "tbody",
            {},
            ranked.map((r) =>
              llm
                ? h("tr", {}, h("td", {}, r.rank), h("th", { scope: "row" }, r.name), h("td", { class: "num" }, fmtMoney(r.cost_per_1k_requests)), h("td", { class: "num" }, fmtMoney(r.projected_monthly_cost)), h("td", { class: "num" }, fmtMoney(r.projected_monthly_savings)), h("td", { class: "num" }, r.p95_latency_ms === null ? "—" : `${fmtNumber(r.p95_latency_ms, 0)} ms`))
                : h("tr", {}, h("td", {}, r.rank), h("th", { scope: "row" }, r.name), h("td", { class: "num" }, fmtNumber(r[rec.metric]))),
            ),
          ),
        )
      : null,
    rejected.length
      ? h("div", {}, h("h3", {}, "Not at parity"), h("ul", {}, rejected.map((r) => h("li", {}, h("strong", {}, r.name), ": ", (r.reasons || []).join("; ")))))
      : null,
  );
}

export const JUDGE_NOT_CONFIGURED = "judge: not configured (set llm_judge_config for judge scores)";

/** LLM jobs without a judge have no judge score (absent, not 0): say so, from the config snapshot. */
export function judgeNote(job) {
  if (isEmbedding(job) || !job.config || typeof job.config !== "object") return null;
  const type = job.config.llm_judge_config?.type ?? "none";
  return type === "none" ? h("p", { class: "muted judge-note", "data-note": "judge" }, JUDGE_NOT_CONFIGURED) : null;
}

function candidate(job, c) {
  const evals = Object.fromEntries((c.evaluations || []).map((e) => [e.eval_type, e]));
  const order = VARIANTS.filter((v) => v in evals).concat(Object.keys(evals).filter((v) => !VARIANTS.includes(v)));
  const metrics = [...new Set(order.flatMap((v) => scoreMetrics(evals[v].scores)))];
  const embedding = job.job_type === "embedding_job";
  const margin = job.config?.evaluation_config?.parity_margin;
  const slug = c.name.replace(/[^A-Za-z0-9_-]/g, "_");
  const section = h(
    "section",
    { class: "card candidate", "aria-labelledby": `cand-${slug}`, "data-candidate": c.name },
    h("h3", { id: `cand-${slug}` }, c.name, " ", badge(c.status)),
  );
  if (c.error) section.append(h("p", { class: "error-box", role: "alert" }, c.error));
  for (const metric of metrics) {
    const rows = order.map((v) => {
      const sc = (evals[v].scores || {})[metric];
      return { label: variantLabel(job, v), kind: v, value: sc?.value ?? null, ci_low: sc?.ci_low ?? null, ci_high: sc?.ci_high ?? null };
    });
    const baseValue = (evals.base?.scores || {})[metric]?.value;
    const reference = embedding
      ? job.reference
        ? referenceLevel(job, metric)
        : baseValue !== undefined && baseValue !== null
          ? { value: baseValue, label: `base model ${Number(baseValue).toFixed(3)}` }
          : null
      : { value: 1, label: "reference model 1.00" };
    const threshold = !embedding && margin !== undefined ? { value: 1 - margin } : null;
    section.append(
      h(
        "figure",
        { class: "score-figure", "data-metric": metric },
        h("figcaption", {}, `${metricLabel(metric)} with 95% confidence intervals`),
        scoreChart({ title: `${c.name}: ${metricLabel(metric)}`, rows, reference, threshold }),
      ),
    );
  }
  if (metrics.length) {
    section.append(
      legend(
        [
          [
            "sw-reference",
            embedding
              ? job.reference
                ? `dashed: production retriever, its own logged ranking (${job.reference.queries} queries; a yardstick, not a candidate)`
                : "dashed: base model"
              : "dashed: reference (production) model, whose answers are the ground truth",
          ],
          embedding || margin === undefined ? null : ["sw-threshold", `dotted: parity threshold (1 − margin ${margin})`],
          ["sw-whisker", "whiskers: 95% confidence interval"],
        ].filter(Boolean),
      ),
    );
  }
  if (!order.length) {
    section.append(h("p", { class: "muted" }, c.status === "pending" ? "Not started yet." : "No evaluations yet."));
  } else {
    section.append(scoresTable(job, c, order, evals, metrics));
    section.append(embedding ? statusTable(job, c, order, evals) : latencyTable(c, order, evals, embedding));
  }
  if (c.customization) section.append(training(c, embedding));
  return section;
}

function scoresTable(job, c, order, evals, metrics) {
  const rows = [];
  for (const v of order) {
    const scores = evals[v].scores || {};
    if (!metrics.length || !Object.keys(scores).length) {
      rows.push(h("tr", { "data-variant": v }, h("th", { scope: "row" }, variantLabel(job, v)), h("td", { colspan: 4, class: "muted" }, `${evals[v].status}${evals[v].error ? `: ${evals[v].error}` : ""}`)));
      continue;
    }
    for (const m of metrics) {
      const sc = scores[m];
      if (!sc) continue;
      rows.push(
        h(
          "tr",
          { class: "score-row", "data-candidate": c.name, "data-variant": v, "data-metric": m },
          h("th", { scope: "row" }, variantLabel(job, v)),
          h("td", {}, metricLabel(m)),
          h("td", valueAttrs(sc), fmtNumber(sc.value)),
          h("td", { class: "num", "data-col": "ci" }, sc.ci_low === null ? "—" : `${fmtNumber(sc.ci_low)} – ${fmtNumber(sc.ci_high)}`),
          h("td", { class: "num", "data-col": "n" }, sc.n ?? "—"),
        ),
      );
    }
  }
  return h(
    "table",
    { class: "data compact scores" },
    h("caption", {}, `Scores of ${c.name}`),
    h("thead", {}, h("tr", {}, ["Variant", "Metric", "Value", "95% CI", "n"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows),
  );
}

/** Embedding jobs: no latency, cost or parity gate (ranking is by nDCG@10). */
function statusTable(job, c, order, evals) {
  return h(
    "table",
    { class: "data compact latency" },
    h("caption", {}, `Status and runtime of ${c.name}`),
    h("thead", {}, h("tr", {}, ["Variant", "Status", "Runtime"].map((t) => h("th", { scope: "col" }, t)))),
    h(
      "tbody",
      {},
      order.map((v) =>
        h(
          "tr",
          { "data-variant": v },
          h("th", { scope: "row" }, variantLabel(job, v)),
          h("td", {}, badge(evals[v].status), evals[v].error ? ` ${evals[v].error}` : ""),
          h("td", { class: "num" }, fmtDuration(evals[v].runtime_seconds)),
        ),
      ),
    ),
  );
}

function latencyTable(c, order, evals, embedding) {
  return h(
    "table",
    { class: "data compact latency" },
    h("caption", {}, `Status, latency and cost of ${c.name}`),
    h("thead", {}, h("tr", {}, ["Variant", "Status", "p50 latency", "p95 latency", "Cost per 1k requests", "Parity gate", "Runtime"].map((t) => h("th", { scope: "col" }, t)))),
    h(
      "tbody",
      {},
      order.map((v) => {
        const e = evals[v];
        const sc = e.scores || {};
        const lat = sc.latency || {};
        const gate = sc.gate;
        return h(
          "tr",
          { "data-variant": v },
          h("th", { scope: "row" }, VARIANT_LABEL[v] || v),
          h("td", {}, badge(e.status)),
          h("td", { class: "num" }, lat.p50_ms === undefined || lat.p50_ms === null ? "—" : `${fmtNumber(lat.p50_ms, 0)} ms`),
          h("td", { class: "num" }, lat.p95_ms === undefined || lat.p95_ms === null ? "—" : `${fmtNumber(lat.p95_ms, 0)} ms`),
          h("td", { class: "num" }, embedding ? "—" : fmtMoney(sc.cost?.cost_per_1k_requests)),
          h("td", {}, gate ? (gate.passed ? "passed" : `failed${gate.reasons?.length ? `: ${gate.reasons.join("; ")}` : ""}`) : "—"),
          h("td", { class: "num" }, fmtDuration(e.runtime_seconds)),
        );
      }),
    ),
  );
}

function training(c, embedding = false) {
  const cu = c.customization;
  const d = cu.details || {};
  const train = Array.isArray(d.train_loss) ? d.train_loss : Number.isFinite(d.loss) ? [d.loss] : [];
  const val = Array.isArray(d.val_loss) ? d.val_loss : Number.isFinite(d.val_loss) ? [d.val_loss] : [];
  const facts = [
    ["Status", badge(cu.status)],
    ["Steps", d.steps ?? d.step ?? "—"],
    ["Epochs", d.epochs_completed ?? d.epoch ?? "—"],
    ["Final loss", fmtNumber(d.final_loss ?? d.loss)],
    ["Training time", fmtDuration(d.train_seconds ?? cu.runtime_seconds)],
  ];
  return h(
    "div",
    { class: "training", "data-candidate": c.name },
    h("h4", {}, embedding ? "Customization (fine-tuning)" : "Customization (LoRA fine-tuning)"),
    h("dl", { class: "summary inline" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    cu.error ? h("p", { class: "error-box" }, cu.error) : null,
    h(
      "figure",
      { class: "loss-figure" },
      h("figcaption", {}, "Loss per step (line) and validation loss per epoch (dots)"),
      lossChart({ title: `${c.name}: training loss`, train, validation: val }),
    ),
  );
}

function artifacts(job) {
  const items = [];
  for (const d of job.datasets || []) items.push([`dataset: ${d.role}`, d.path]);
  for (const c of job.candidates) {
    if (c.deployment?.handle) items.push([`${c.name}: deployment`, JSON.stringify(c.deployment.handle)]);
    for (const e of c.evaluations || []) if (e.handle) items.push([`${c.name}: ${e.eval_type} evaluation`, JSON.stringify(e.handle)]);
    const out = c.customization?.details?.output_model;
    if (out) items.push([`${c.name}: customized model`, out]);
  }
  return h(
    "section",
    { "aria-labelledby": "art-h" },
    h("h2", { id: "art-h" }, "Datasets and artifacts"),
    items.length
      ? h(
          "ul",
          { class: "artifacts", id: "artifacts" },
          items.map(([label, value]) =>
            h("li", {}, h("span", { class: "muted" }, `${label}: `), /^https?:\/\//.test(value) ? h("a", { href: value, rel: "noopener" }, value) : h("code", {}, value)),
          ),
        )
      : h("p", { class: "muted" }, "None yet."),
  );
}

function promoteForm(job) {
  const evaluated = {};
  for (const c of job.candidates) {
    const vs = (c.evaluations || []).filter((e) => e.status === "completed" && e.scores).map((e) => e.eval_type);
    if (vs.length) evaluated[c.name] = vs;
  }
  const names = Object.keys(evaluated);
  const section = h("section", { class: "card", "aria-labelledby": "promo-h" }, h("h2", { id: "promo-h" }, "Promote a model"));
  if (!names.length) {
    section.append(h("p", { class: "muted" }, "No evaluated candidate to promote."));
    return section;
  }
  const cand = h("select", {}, names.map((n) => h("option", { value: n }, n)));
  const variant = h("select", {});
  const best = job.recommendation?.best;
  const fillVariants = () => {
    fill(variant, evaluated[cand.value].map((v) => h("option", { value: v, selected: best === `${cand.value}/${v}` }, variantLabel(job, v))));
  };
  if (best && best.includes("/")) cand.value = best.split("/")[0] in evaluated ? best.split("/")[0] : names[0];
  fillVariants();
  cand.addEventListener("change", fillVariants);
  const note = h("textarea", { rows: 2, maxlength: 2000 });
  const result = h("div", { id: "promote-result", "aria-live": "polite" });
  const button = h("button", { type: "submit", id: "promote" }, "Promote");
  const form = h(
    "form",
    { class: "stack", id: "promote-form" },
    h("p", { class: "muted" }, `Applications of ${job.client_id} / ${job.workload_id} read the promoted model from GET /api/workloads/${job.client_id}/${job.workload_id}/model.`),
    h("div", { class: "grid" }, field({ id: "promote-candidate", label: "Candidate", control: cand }), field({ id: "promote-variant", label: "Variant", control: variant })),
    field({ id: "promote-note", label: "Note (why this model)", control: note }),
    h("div", { class: "actions" }, button),
    result,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const what = `${cand.value} (${variantLabel(job, variant.value)})`;
    let seen; // the promotion this replaces, sent as expected_current (409 if it changed since)
    try {
      seen = await currentPromotion(job.client_id, job.workload_id);
    } catch (err) {
      fill(result, h("p", { class: "error-box", role: "alert" }, err.message));
      return;
    }
    const replaces = seen ? ` It replaces ${seen.model} (${seen.variant}).` : " It replaces the configured model.";
    const ok = await confirmAction("Promote this model?", `${what} will serve ${job.client_id} / ${job.workload_id}.${replaces} Applications switch on their next read.`, "Promote");
    if (!ok) return;
    button.disabled = true;
    try {
      const out = await api.post(`/api/workloads/${enc(job.client_id)}/${enc(job.workload_id)}/promotions`, {
        job_id: job.id,
        candidate: cand.value,
        variant: variant.value,
        note: note.value,
        expected_current: seen ? seen.id : null,
      });
      const hook = out.webhook;
      fill(
        result,
        h(
          "p",
          { class: "ok-box" },
          `Promoted ${out.current.model} (${out.current.variant}). `,
          hook ? (hook.delivered ? "The webhook was notified. " : `The webhook failed: ${hook.error}. `) : "",
          h("a", { href: `#/workloads/${enc(job.client_id)}/${enc(job.workload_id)}` }, "See the workload"),
        ),
      );
      announce(`Promoted ${out.current.model} for ${job.client_id} / ${job.workload_id}`, "ok");
    } catch (err) {
      fill(result, h("p", { class: "error-box", role: "alert" }, err.message));
      announce(err.message, "error");
    } finally {
      button.disabled = false;
    }
  });
  section.append(form);
  return section;
}

async function cancelJob(job) {
  if (!(await confirmAction("Cancel this job?", `Job ${job.id} stops; platform work it started is stopped too.`, "Cancel job"))) return;
  try {
    const out = await api.post(`/api/jobs/${enc(job.id)}/cancel`);
    announce(`Job ${job.id}: ${out.message}`, "ok");
    window.dispatchEvent(new HashChangeEvent("hashchange"));
  } catch (err) {
    announce(err.message, "error");
  }
}

async function deleteJob(job) {
  if (!(await confirmAction("Delete this job?", `Job ${job.id} and its results are deleted. This cannot be undone.`, "Delete job"))) return;
  try {
    await api.del(`/api/jobs/${enc(job.id)}`);
    announce(`Job ${job.id} deleted`, "ok");
    location.hash = "#/jobs";
  } catch (err) {
    announce(err.message, "error");
  }
}

function downloadJson(job) {
  download(`${job.id}.json`, JSON.stringify(job, null, 2), "application/json");
}

async function downloadCsv(job) {
  try {
    download(`${job.id}-results.csv`, await api.text(`/api/jobs/${enc(job.id)}/results.csv`), "text/csv");
  } catch (err) {
    announce(err.message, "error");
  }
}
