// The authenticated API client. The key lives in sessionStorage: gone when the tab closes.

const KEY = "flywheel.apiKey";

export class ApiError extends Error {
  constructor(status, message, errors) {
    super(message);
    this.status = status;
    this.errors = errors || [];
  }
}

export function getKey() {
  return sessionStorage.getItem(KEY);
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

/** Turn any error body into a message and a list of {loc, msg}. */
function parseError(status, body) {
  if (body && Array.isArray(body.detail)) {
    const errors = body.detail.map((e) => ({ loc: e.loc || [], msg: e.msg || String(e) }));
    const first = errors[0];
    const where = first ? first.loc.filter((p) => p !== "body").join(".") : "";
    return new ApiError(status, `invalid request: ${where ? `${where}: ` : ""}${first ? first.msg : ""}`, errors);
  }
  const message = (body && typeof body.detail === "string" && body.detail) || `HTTP ${status}`;
  return new ApiError(status, message, (body && body.errors) || []);
}

let onUnauthorized = () => {};
export function whenUnauthorized(callback) {
  onUnauthorized = callback;
}

export async function request(method, path, body, { raw = false } = {}) {
  const headers = { Accept: raw ? "text/csv" : "application/json" };
  const key = getKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, `the API cannot be reached (${err.message})`);
  }
  if (response.status === 204) return null;
  if (!response.ok) {
    let payload = null;
    try {
      payload = await response.json();
    } catch {
      payload = null;
    }
    const error = parseError(response.status, payload);
    if (response.status === 401) onUnauthorized(error);
    throw error;
  }
  return raw ? response.text() : response.json();
}

export const api = {
  get: (path) => request("GET", path),
  post: (path, body) => request("POST", path, body ?? {}),
  put: (path, body) => request("PUT", path, body),
  del: (path) => request("DELETE", path),
  text: (path) => request("GET", path, undefined, { raw: true }),
};

const RANK = { viewer: 0, operator: 1, admin: 2 };

/** The logged-in key: role and scope, from GET /api/auth/me. */
export const session = { me: null };

export function can(role) {
  return Boolean(session.me) && RANK[session.me.role] >= RANK[role];
}

export const enc = encodeURIComponent;

/**
 * The promotion in force for a workload, or null when nothing is promoted (404).
 * Promote and roll back send its id as `expected_current`: the API refuses (409, naming the
 * promotion in force) when someone else changed the workload after this was read.
 */
export async function currentPromotion(clientId, workloadId) {
  try {
    return await api.get(`/api/workloads/${enc(clientId)}/${enc(workloadId)}/model`);
  } catch (err) {
    if (err.status === 404) return null;
    throw err;
  }
}

/** One line on a kept webhook outcome: delivered, or why and when it failed. */
export function webhookSummary(hook) {
  if (!hook) return null;
  if (hook.delivered) return `webhook delivered (${hook.attempts} attempt${hook.attempts === 1 ? "" : "s"})`;
  const status = hook.status_code ? `HTTP ${hook.status_code}, ` : "";
  return `webhook failed after ${hook.attempts} attempt${hook.attempts === 1 ? "" : "s"} (${status}${new Date(hook.at).toLocaleString()}): ${hook.error}`;
}
