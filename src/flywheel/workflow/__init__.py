"""The job workflow: a persisted state machine advanced by small, idempotent Celery steps.

* :mod:`.engine` decides, from a job's persisted state alone, the one next thing to do
  (pure: no I/O, unit-tested without Celery).
* :mod:`.steps` executes one decided action against the ports (state store, log store,
  model platform, GPU capacity ledger) and writes the result with compare-and-set.
* :mod:`.celery_app` / :mod:`.tasks` are the thin Celery layer (one task,
  ``flywheel.advance(job_id)``), :mod:`.launcher` the API's way in, :mod:`.sweeper` the
  periodic recovery that turns a killed worker into a delay instead of a lost job.

See ``docs/workflow.md`` for the state diagram, queues and broker modes.
"""
