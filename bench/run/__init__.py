"""Runs: one experiment from options to result file (`experiment`), sweeps over a grid (`sweep`),
the versioned result files and the one atomic writer (`results`), saved embeddings.
"""
