"""``fitnets frontier``: which student? A family of candidate students, their free facts (parameters, MACs,
latency), budgets, an optional cheap screen, full training of each (candidate, method, seed) through an Optuna
trial queue with the teacher paid once, and the answer — the Pareto-optimal students and the pick under the
budget. ``fitnets.frontier`` is the same engine in Python (``fitnets.tools.frontier.api``)."""
