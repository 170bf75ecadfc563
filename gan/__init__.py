"""Pure PyTorch conditional GAN: models, losses, one training step, sampling, checkpoint state.

Knows nothing of files, pandas, DVC or Prefect.
"""
from . import health
from .models import Discriminator, GANConfig, Generator
from .sample import sample_images, score
from .trainer import GANTrainer, NonFiniteLoss, TrainHyper, check_format, load_sampler, pick_device

__all__ = ["GANConfig", "Generator", "Discriminator", "GANTrainer", "TrainHyper",
           "NonFiniteLoss", "check_format", "health", "load_sampler", "pick_device", "sample_images", "score"]
