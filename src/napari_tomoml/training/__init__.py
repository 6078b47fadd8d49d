"""Training: the generic Trainer, losses, metrics, paired datasets and the TomoGAN recipe."""
