"""Inference helpers shared by every model: the overlapping-tile predictor."""
