"""Cost: time and peak memory against the number of views (`scaling`), the exact-search and
Sinkhorn-solver benchmarks, and what they measure the same way (`measure`).
"""
