"""Torch networks, model files (safetensors + JSON card) and importers of published weights."""
