"""Re-running declared evaluations: the plan keyed by content (:mod:`.plan`), the runner (:mod:`.run`),
the evaluator that runs in a worker (:mod:`.evaluator`), metrics (:mod:`.metrics`) and the results store
(:mod:`.results`).
"""
