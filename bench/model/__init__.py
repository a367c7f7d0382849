"""The trainable part shared by every objective: one tower per modality (`towers`) and the one
encode path used by training and evaluation (`encode`).
"""
