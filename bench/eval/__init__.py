"""Evaluation: the tasks (`evaluator`; their names in `ftbench.schema`) and the ranking metrics
(`metrics`).
"""
