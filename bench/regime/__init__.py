"""Regimes: where a catalog sits among the conditions that decide which objective wins.

    design      the regime map's cells: a seeded Sobol design over the synthetic generator's knobs
    indicators  a data set's regime indicators from its frozen features (`ftbench data profile`)
"""
