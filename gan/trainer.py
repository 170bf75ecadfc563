"""One GAN training step (D-step, then G-step), EMA generator, and the checkpoint state.

The loop over steps, the data and the files live in `pipeline.train`; this module only
knows tensors. A checkpoint is a plain dict of tensors and builtins, so it loads with
`torch.load(weights_only=True)` and describes itself (config, label map, step, RNG).
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field

import torch

from .diffaug import diff_augment
from .losses import LeCam, d_hinge, g_hinge, group_spectral, mode_seeking
from .hyper import GANConfig, TrainHyper
from .models import Discriminator, Generator

CHECKPOINT_FORMAT = 1
ADA_INTERVAL = 4  # steps between ADA's updates of the augmentation probability (as StyleGAN2-ADA)


class NonFiniteLoss(RuntimeError):
    pass


def pick_device(name: str = "auto") -> torch.device:
    """auto: a GPU when there is one. A device asked for that is not there is a ValueError
    saying so (not a traceback from deep inside the first tensor moved to it)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
            raise ValueError(f"{name}: no such device here (torch {torch.__version__}, {build}, sees {count} "
                             "CUDA device(s))")
    return device


@dataclass
class GANTrainer:
    cfg: GANConfig
    hyper: TrainHyper = field(default_factory=TrainHyper)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    # torch.compile of G and D: False (eager), True (inductor's default mode), or a torch.compile
    # mode ("reduce-overhead": CUDA graphs, the step replayed without launching its kernels one
    # by one). A compile that fails falls back to eager at the first step (see `compile_error`).
    compile: bool | str = False

    def __post_init__(self):
        self.G = Generator(self.cfg).to(self.device)
        self.D = Discriminator(self.cfg).to(self.device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        for net in (self.G, self.D, self.G_ema):  # NHWC, as the activations (models.CHANNELS_LAST)
            net.to(memory_format=torch.channels_last)
        h = self.hyper
        # Fused Adam: one kernel for all parameters (CPU and CUDA), no host-side step counter.
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=h.lr_g, betas=h.betas, fused=True)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=h.lr_d, betas=h.betas, fused=True)
        self.lecam = LeCam(self.device) if h.lecam > 0 else None
        self._params, self._ema_params = list(self.G.parameters()), list(self.G_ema.parameters())
        self._loss_sums = torch.zeros(2, device=self.device)  # D's and G's, since the last check_finite
        # ADA's state on the device: p, and the signs of D(real) since p last moved.
        self.augment_p = torch.zeros((), device=self.device) if h.ada_target is not None else None
        self._ada_signs = torch.zeros((), device=self.device)  # sum of sign(D(real)) since p last moved
        self._ada_seen = 0  # ... over this many real images
        self._checked_at = 0
        self.step_count = 0
        self.best: dict | None = None  # the best-scoring step's G_ema and D (see mark_best)
        # What the step calls: the plain modules, or their compiled / data-parallel wrappers. The
        # G-step's D takes no gradient, so it needs no data-parallel wrapper (no gradient to average).
        self._G, self._D = self.G, self.D
        if self.compile:
            mode = self.compile if isinstance(self.compile, str) else None
            self._G, self._D = torch.compile(self.G, mode=mode), torch.compile(self.D, mode=mode)
        self._D_frozen = self._D
        self.compile_error: str | None = None  # why compiling failed, if it did (the run went on eager)
        self._first_compiled_step = bool(self.compile)

    def distribute(self, device: torch.device):
        """Data parallel over the initialized process group (DistributedDataParallel): the
        networks `step` runs average their gradients across processes, so a step on B images in
        each of N processes is a step on N x B. The plain modules keep the state: EMA,
        checkpoints and sampling never see the wrapper. Not exact, by nature: BatchNorm in G
        normalizes each process's B, not N x B, and its running statistics are rank 0's."""
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        self._G, self._D = DDP(self._G, device_ids=ids), DDP(self._D, device_ids=ids)

    # -- one step -------------------------------------------------------------------
    def _autocast(self):
        # bf16 on CUDA needs no loss scaling; the CPU runs the same code in fp32.
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    def _fake_batch(self, n: int):
        z = torch.randn(n, self.cfg.z_dim, device=self.device)
        # Uniform over classes, so rare classes get as much practice as common ones.
        y = torch.randint(0, self.cfg.n_classes, (n,), device=self.device)
        return z, y

    def conditioning(self) -> float:
        """How much the class conditions G and D at this step: 1, unless in a transition."""
        if self.hyper.transition is None:
            return 1.0
        start, end = self.hyper.transition
        return min(1.0, max(0.0, (self.step_count - start) / max(1, end - start)))

    def step(self, real: torch.Tensor, real_y: torch.Tensor) -> dict[str, torch.Tensor]:
        """real: float images in [-1, 1], NCHW on self.device. Returns the losses as tensors on
        the device: nothing here waits for the device (`losses` reads them, `check_finite` checks)."""
        if not self._first_compiled_step:
            return self._step(real, real_y)
        self._first_compiled_step = False
        try:  # the first compiled step compiles: a compiler that fails must not end the run
            return self._step(real, real_y)
        except Exception as e:  # noqa: BLE001 - any compiler error; a real error recurs eagerly below
            self.compile_error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:500]
            self._G, self._D, self._D_frozen = self.G, self.D, self.D
            self.D.requires_grad_(True)
            return self._step(real, real_y)

    def _step(self, real: torch.Tensor, real_y: torch.Tensor) -> dict[str, torch.Tensor]:
        policy, p = self.hyper.diffaug, self.augment_p
        n = real.shape[0]
        c = self.conditioning()
        self.D.power_step()  # spectral norms' sigma: one power iteration a step

        # (1) D-steps: maximize D(x|y) - D(G(z|y')|y'), hinge form. G does not change between
        # them, so one G forward makes every D-step's fakes; real and fake go through D as one
        # batch (D has no batch statistics, so this is exact): one forward, one backward a D-step.
        z, fake_y = self._fake_batch(n * self.hyper.n_dis)
        with torch.no_grad(), self._autocast():
            fakes = self._G(z, fake_y, c).to(real.dtype)
        for fake, y in zip(fakes.split(n), fake_y.split(n)):
            with self._autocast():
                logits = self._D(diff_augment(torch.cat([real, fake]), policy, p), torch.cat([real_y, y]), c)
                real_logits, fake_logits = logits.float().split(n)
                loss_d = d_hinge(real_logits, fake_logits)
                if self.lecam is not None:
                    loss_d = loss_d + self.hyper.lecam * self.lecam(real_logits, fake_logits)
            self.opt_D.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_D.step()
            self._loss_sums[0] += loss_d.detach()
            if p is not None:
                self._ada_signs += real_logits.detach().sign().sum()
                self._ada_seen += n

        # (2) G-step: make D score fresh fakes as real.
        z, fake_y = self._fake_batch(n)
        if self.hyper.mode_seeking > 0:  # pairs: the second half repeats the first half's labels
            fake_y[n // 2: 2 * (n // 2)] = fake_y[: n // 2]
        self.D.requires_grad_(False)  # D's weights get no gradient here: none computed
        with self._autocast():
            fake_g = self._G(z, fake_y, c)
            fake_logits_g = self._D_frozen(diff_augment(fake_g, policy, p), fake_y, c).float()
            loss_g = g_hinge(fake_logits_g)
            if self.hyper.mode_seeking > 0:
                loss_g = loss_g + self.hyper.mode_seeking * mode_seeking(fake_g.float(), z, n // 2)
            if self.hyper.gsr > 0:
                loss_g = loss_g + self.hyper.gsr * group_spectral(self.G)
        self.opt_G.zero_grad(set_to_none=True)
        loss_g.backward()
        self.D.requires_grad_(True)
        self.opt_G.step()
        self._loss_sums[1] += loss_g.detach()

        self._update_ema()
        self.step_count += 1
        if p is not None and self.step_count % ADA_INTERVAL == 0:
            self._adapt_augment_p()
        losses = {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(),
                  "d_real": real_logits.detach().mean(), "d_fake": fake_logits.detach().mean()}
        return losses if p is None else {**losses, "augment_p": p.clone()}

    @torch.no_grad()
    def _adapt_augment_p(self):
        """ADA's update, on the device: p moves by the images seen since the last update over
        ada_kimg thousand, up if D(real) was positive more often than the target, else down."""
        h = self.hyper
        step = torch.sign(self._ada_signs / self._ada_seen - h.ada_target) * (self._ada_seen / (h.ada_kimg * 1000))
        self.augment_p.add_(step).clamp_(0, h.ada_cap)
        self._ada_signs.zero_()
        self._ada_seen = 0

    def flops_per_step(self, real: torch.Tensor, real_y: torch.Tensor) -> int:
        """FLOPs of one step at this batch, counted on an eager twin with fresh weights (the count
        does not depend on them), so a compiled trainer is not traced under a counter and the
        training's weights and random stream stay untouched."""
        from torch.utils.flop_counter import FlopCounterMode

        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            twin = GANTrainer(self.cfg, self.hyper, self.device)
            with FlopCounterMode(display=False) as counter:
                twin.step(real, real_y)
        return counter.get_total_flops()

    @staticmethod
    def losses(step_losses: dict[str, torch.Tensor]) -> dict[str, float]:
        """A step's losses as numbers: one wait for the device (call it at log intervals)."""
        return dict(zip(step_losses, torch.stack(list(step_losses.values())).float().tolist()))

    def check_finite(self):
        """Raise NonFiniteLoss if any loss since the last check was NaN or infinite. The sums of
        every D and G loss are kept on the device (a NaN or inf stays in a sum), so a step never
        waits for the device; the caller checks at log intervals and before each checkpoint."""
        d, g = self._loss_sums.tolist()
        since, self._checked_at = self._checked_at, self.step_count
        for who, total in (("discriminator", d), ("generator", g)):
            if not math.isfinite(total):
                raise NonFiniteLoss(f"{who} loss became {total} between step {since} and step {self.step_count}; "
                                    "lower the learning rate or enable train.lecam")
        self._loss_sums.zero_()

    @torch.no_grad()
    def _update_ema(self):
        # Warm-up: early on, a 0.999 average would mostly remember the random init.
        decay = min(self.hyper.ema_decay, (1 + self.step_count) / (10 + self.step_count))
        torch._foreach_lerp_(self._ema_params, self._params, 1 - decay)

    @torch.no_grad()
    def refresh_ema_batchnorm(self, n_batches: int = 8, batch_size: int = 128):
        """Standing statistics: re-estimate G_ema's BatchNorm stats for its own weights."""
        bns = [m for m in self.G_ema.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the batches below
        self.G_ema.train()
        for _ in range(n_batches):
            with self._autocast():
                self.G_ema(*self._fake_batch(batch_size))
        self.G_ema.eval()
        for bn in bns:
            bn.momentum = 0.1

    def mark_best(self, metric: float):
        """Keep this step's sampler (G_ema + D) as the best so far under a validation metric."""
        def copy(net):
            return {k: v.detach().clone() for k, v in net.state_dict().items()}

        self.best = {"step": self.step_count, "metric": float(metric),
                     "G_ema": copy(self.G_ema), "D": copy(self.D)}

    # -- checkpoint -------------------------------------------------------------------
    def state_dict(self, label_map: dict[str, int], extra: dict | None = None) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.cfg.to_dict(),
            "hyper": {**asdict(self.hyper), "betas": list(self.hyper.betas),
                      "diffaug": list(self.hyper.diffaug),
                      "transition": list(self.hyper.transition) if self.hyper.transition else None},
            "label_map": dict(label_map),
            "step": self.step_count,
            "G": self.G.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "D": self.D.state_dict(),
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "lecam": self.lecam.state() if self.lecam else None,
            "ada": ({"p": float(self.augment_p), "signs": float(self._ada_signs), "seen": self._ada_seen}
                    if self.augment_p is not None else None),
            "best": self.best,
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state() if self.device.type == "cuda" else None,
            "extra": extra or {},
        }

    @classmethod
    def from_state_dict(cls, state: dict, device: torch.device, compile: bool | str = False,
                        hyper: TrainHyper | None = None) -> "GANTrainer":
        check_format(state)
        saved = state["hyper"]
        hyper = hyper or TrainHyper(**{**saved, "betas": tuple(saved["betas"]), "diffaug": tuple(saved["diffaug"]),
                                       "transition": tuple(saved["transition"]) if saved.get("transition") else None})
        trainer = cls(GANConfig(**state["config"]), hyper, device, compile)
        trainer.G.load_state_dict(state["G"])
        trainer.G_ema.load_state_dict(state["G_ema"])
        trainer.D.load_state_dict(state["D"])
        trainer.opt_G.load_state_dict(state["opt_G"])
        trainer.opt_D.load_state_dict(state["opt_D"])
        if trainer.lecam is not None and state.get("lecam"):
            trainer.lecam.load(state["lecam"])
        if trainer.augment_p is not None and isinstance(state.get("ada"), dict):
            trainer.augment_p.fill_(float(state["ada"]["p"]))
            trainer._ada_signs.fill_(float(state["ada"]["signs"]))
            trainer._ada_seen = int(state["ada"]["seen"])
        trainer.step_count = trainer._checked_at = state["step"]
        trainer.best = state.get("best")
        torch.set_rng_state(state["rng_cpu"])
        if state.get("rng_cuda") is not None and device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"])
        return trainer


def check_format(state: dict):
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"not a ganaug checkpoint of format {CHECKPOINT_FORMAT} (found {got!r})")


def load_sampler(state: dict, device: torch.device) -> tuple[Generator, Discriminator]:
    """The EMA generator and the discriminator of a checkpoint, in eval mode, for sampling:
    those of its best step when training kept one, else of its last step."""
    check_format(state)
    cfg = GANConfig(**state["config"])
    G, D = Generator(cfg).to(device), Discriminator(cfg).to(device)
    nets = state.get("best") or state
    G.load_state_dict(nets["G_ema"])
    D.load_state_dict(nets["D"])
    return G.eval().requires_grad_(False), D.eval().requires_grad_(False)
