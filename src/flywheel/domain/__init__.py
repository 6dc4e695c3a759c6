"""Pure domain logic: entities, validation, datasets, metrics. No I/O; imports nothing of ours."""
