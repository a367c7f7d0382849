"""Regimes: where a catalog sits among the conditions that decide which objective wins.

advise      a Gaussian process per objective from the map's indicators to its gain over clip;
            leave-one-cell-out validation
design      the regime map's cells: a seeded Sobol design over the synthetic generator's knobs
indicators  a data set's regime indicators from its frozen features (`ftbench data profile`)
"""
