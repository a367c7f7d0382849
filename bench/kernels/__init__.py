"""Numerical kernels with no knowledge of the rest of the package (torch and numpy only):
batched entropic Sinkhorn, RecGOAT's feature transport, GRAM volumes, exact chunked search.
"""
