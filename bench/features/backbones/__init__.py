"""features/backbones"""
