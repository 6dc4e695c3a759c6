// Live views: run load() now and every 2 s while the view is shown.

import { announce } from "./dom.js";

export const POLL_MS = 2000;

/** Returns a stop function; load errors are shown once, then retried silently. */
export function poll(load, { until = () => false } = {}) {
  let stopped = false;
  let timer = null;
  let lastError = null;
  const tick = async () => {
    if (stopped) return;
    try {
      await load();
      lastError = null;
    } catch (err) {
      if (lastError !== err.message) announce(err.message, "error");
      lastError = err.message;
      if (err.status === 404 || err.status === 401) stopped = true;
    }
    if (!stopped && !until()) timer = setTimeout(tick, POLL_MS);
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
