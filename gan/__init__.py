"""Pure PyTorch conditional GAN: models, losses, one training step, sampling, checkpoint state.

Knows nothing of files, pandas, DVC or Prefect. Its names load on first use (PEP 562), so that
`ganaug.gan.hyper`, torch-free, can be read (pipeline/plumbing/params.py) without loading torch.
"""
from importlib import import_module

_WHERE = {"GANConfig": "hyper", "TrainHyper": "hyper", "Generator": "models", "Discriminator": "models",
          "sample_images": "sample", "score": "sample", "GANTrainer": "trainer", "NonFiniteLoss": "trainer",
          "check_format": "trainer", "load_sampler": "trainer", "pick_device": "trainer", "health": None}
__all__ = list(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = import_module(f".{_WHERE[name] or name}", __name__)
    return module if _WHERE[name] is None else getattr(module, name)
