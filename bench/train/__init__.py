"""Training: one loop for every objective (`loop`: sampler, stepper, train) and multi-process
training under torchrun (`distributed`).
"""
