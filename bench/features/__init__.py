"""Frozen features: the backbones that turn texts and images into vectors (a plugin folder,
`backbones/`) and the content-addressed feature cache in front of them.
"""
