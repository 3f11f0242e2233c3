"""Estimate a training step's peak GPU memory from a config, without a GPU, and suggest a batch size.

The models are built on the ``meta`` device (no memory, no compute) and one
training forward runs on a single clip of the configured shape while a
``saved_tensors_hooks`` pair records every tensor autograd keeps for the
backward pass: that is the activation memory per clip, exactly as a real run
would keep it (checked against a CPU run in the tests). CUDA's bf16 autocast
is emulated with a ``TorchFunctionMode`` (convs/linears in bf16, norms and
exp in fp32, as ``torch.autocast("cuda")`` does), since autocast does not act
on meta tensors. Then

    peak ≈ static + batch × (saved activations + 2 × largest activation) per clip

where static = weights, gradients, Adam moments (fp32), autocast's bf16 weight
copies, EMA and frozen models, and the 2 × largest activation stands for the
backward's working set. ``reserve_gb`` (CUDA context, cuDNN workspace,
allocator slack) and ``headroom`` keep the suggestion on the safe side.
Not modelled: R1's double backward (``gan.r1_gamma > 0`` keeps more for the
D step), torch.compile's fusions (which usually save memory), and
``grad_accum`` (memory follows the micro-batch, ``batch_size``). Torch only;
the config is any object with PipelineConfig's attributes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

from vidgen_core.models.gan import LatentDiscriminator, build_generator, build_pixel_discriminator
from vidgen_core.models.patch_disc import PatchDiscriminator3D
from vidgen_core.models.vae import VideoVAE

if TYPE_CHECKING:
    from vidgen_core.config import PipelineConfig, TrainConfig

GIB = 1024**3
_LOW = {torch.conv3d, torch.conv2d, torch.conv1d, torch._C._nn.linear, torch.matmul, torch.mm, torch.bmm, torch.addmm}
_FP32 = {torch.group_norm, torch.layer_norm, torch.exp, torch.Tensor.exp, torch.softmax, torch.Tensor.softmax}


class _CudaAutocastEmulation(TorchFunctionMode):
    """Casts like ``torch.autocast("cuda", dtype)`` for the ops these models use (works on meta tensors)."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype = dtype

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        target = self.dtype if func in _LOW else torch.float32 if func in _FP32 else None
        if target is not None:
            args = tuple(a.to(target) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)
        return func(*args, **kwargs)


@dataclass
class ActivationProfile:
    """Per-clip activation bytes of one training forward (+ FLOPs of forward and backward)."""

    saved_bytes: int
    largest_bytes: int
    flops: float


def profile_step(
    modules: list[nn.Module], step: Callable[[], torch.Tensor], dtype: torch.dtype, device: str = "meta"
) -> ActivationProfile:
    """Run ``step()`` (forward + loss on ONE clip) and its backward, counting saved tensors and FLOPs.

    Tensors are deduplicated by storage; parameters are excluded (they are static memory).
    """
    param_ids = {id(p) for m in modules for p in m.parameters()}
    storages: dict[Any, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in param_ids:
            s = t.untyped_storage()
            key = s._cdata if t.device.type == "meta" else s.data_ptr()
            storages[key] = max(storages.get(key, 0), s.nbytes())
        return t

    emulate = _CudaAutocastEmulation(dtype) if dtype != torch.float32 else None
    with FlopCounterMode(display=False) as flops:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            if emulate is not None:
                with emulate:
                    loss = step()
            else:
                loss = step()
        loss.backward()
    return ActivationProfile(sum(storages.values()), max(storages.values(), default=0), float(flops.get_total_flops()))


@dataclass
class MemoryEstimate:
    """One training job's plan: bytes per GPU at the configured batch and the largest batch that fits."""

    job: str
    params: int
    static_bytes: int
    bytes_per_clip: int
    batch_size: int
    peak_bytes: int
    gpu_memory_gb: float
    suggested_batch_size: int
    flops_per_clip: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        fits = "fits" if self.suggested_batch_size >= self.batch_size else "does NOT fit"
        return (
            f"{self.job}: {self.params / 1e6:.2f} M trained params, static {self.static_bytes / GIB:.2f} GiB + "
            f"{self.bytes_per_clip / 2**20:.1f} MiB/clip -> peak ≈ {self.peak_bytes / GIB:.2f} GiB at batch_size "
            f"{self.batch_size} ({fits} in {self.gpu_memory_gb:g} GB); suggested batch_size ≤ {self.suggested_batch_size}; "
            f"{self.flops_per_clip / 1e9:.1f} GFLOP/clip per training step"
        )


def _dtype(train_cfg: TrainConfig) -> torch.dtype:
    # Planned for a GPU: "auto" means bf16 there.
    return {"auto": torch.bfloat16, "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[train_cfg.precision]


def _n(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def _estimate(
    job: str, train_cfg: TrainConfig, trained: int, frozen: int, ema: int, per_clip: int, flops: float,
    gpu_memory_gb: float, reserve_gb: float, headroom: float,
) -> MemoryEstimate:
    dtype = _dtype(train_cfg)
    cast_copy = 2 if dtype != torch.float32 else 0  # autocast caches a low-precision copy of each weight
    static = trained * (4 + 4 + 8 + cast_copy) + (frozen + ema) * 4
    batch = train_cfg.batch_size
    budget = gpu_memory_gb * 1e9 * headroom - reserve_gb * GIB - static
    suggested = max(int(budget // per_clip), 0) if per_clip else 0
    return MemoryEstimate(
        job=job, params=trained, static_bytes=int(static), bytes_per_clip=int(per_clip), batch_size=batch,
        peak_bytes=int(static + batch * per_clip + reserve_gb * GIB), gpu_memory_gb=gpu_memory_gb,
        suggested_batch_size=suggested, flops_per_clip=flops,
    )


def plan_vae(cfg: PipelineConfig, gpu_memory_gb: float = 80.0, reserve_gb: float = 1.5, headroom: float = 0.9) -> MemoryEstimate:
    """Memory plan of ``train_vae`` on clips of ``ingest.clip_len`` × ``ingest.size``²."""
    tc, t, s = cfg.train_vae, cfg.ingest.clip_len, cfg.ingest.size
    with torch.device("meta"):
        vae = VideoVAE(cfg.vae)
        disc = PatchDiscriminator3D(tc.adv_disc_channels) if tc.adv_weight > 0 else None
        x = torch.zeros(1, 3, t, s, s)

    def step() -> torch.Tensor:
        out = vae(x)
        loss = (out.recon.float() - x).pow(2).mean() + out.posterior.kl().mean()
        return loss + (disc(out.recon).float().mean() if disc is not None else 0.0)

    prof = profile_step([vae] + ([disc] if disc else []), step, _dtype(tc))
    if disc is not None:  # D's own step: real + reconstruction, 2 clips per clip of batch
        with torch.device("meta"):
            both = torch.zeros(2, 3, t, s, s)
        d_prof = profile_step([disc], lambda: disc(both).float().mean(), _dtype(tc))
        prof = ActivationProfile(max(prof.saved_bytes, d_prof.saved_bytes), prof.largest_bytes, prof.flops + d_prof.flops)
    trained = _n(vae) + (_n(disc) if disc is not None else 0)
    return _estimate(
        "train_vae", tc, trained, 0, 0, prof.saved_bytes + 2 * prof.largest_bytes, prof.flops,
        gpu_memory_gb, reserve_gb, headroom,
    )


def plan_gan(cfg: PipelineConfig, gpu_memory_gb: float = 80.0, reserve_gb: float = 1.5, headroom: float = 0.9) -> MemoryEstimate:
    """Memory plan of ``train_gan`` (latent GAN with its frozen VAE encoder, or pixel GAN)."""
    tc, t, s = cfg.train_gan, cfg.ingest.clip_len, cfg.ingest.size
    pixel = cfg.gan.space == "pixel"
    # The probes below run D on 1-2 samples, which a minibatch-std D refuses (it needs whole
    # groups); its extra input is one channel of D's last stage, negligible here, so D is probed without it.
    d_cfg = cfg.gan.model_copy(update={"minibatch_std": 0})
    with torch.device("meta"):
        vae = None if pixel else VideoVAE(cfg.vae).requires_grad_(False)
        shape = (3, t, s, s) if pixel else vae.latent_shape(t, s)
        g = build_generator(cfg.gan, shape, 0)
        d = LatentDiscriminator(d_cfg, shape, 0)
        noise, real2 = torch.zeros(1, cfg.gan.noise_dim), torch.zeros(2, *shape)
    dtype = _dtype(tc)
    d_prof = profile_step([g, d], lambda: d(real2).float().mean(), dtype)  # D step: real + fake per clip
    g_prof = profile_step([g, d], lambda: d(g(noise)).float().mean(), dtype)  # G step
    per_clip = max(d_prof.saved_bytes + 2 * d_prof.largest_bytes, g_prof.saved_bytes + 2 * g_prof.largest_bytes)
    flops = d_prof.flops + g_prof.flops
    if vae is not None:  # the frozen encoder's forward: no saved tensors, one live activation at a time
        with torch.device("meta"):
            x = torch.zeros(1, 3, t, s, s)
        with FlopCounterMode(display=False) as fc:
            vae.encode(x)
        flops += fc.get_total_flops()
    trained = _n(g, d)
    if vae is not None and cfg.gan.pixel_d_weight > 0:
        # The pixel D: pixel_d_batch of each batch_size samples are decoded (the whole clip, or one
        # latent time slice alone: gan.pixel_d_decode; gradient through the frozen decoder) and the
        # frames of one slice judged; its cost per clip of the batch.
        slices = shape[1] if cfg.gan.pixel_d_decode == "clip" else 1
        with torch.device("meta"):
            z1 = torch.zeros(1, shape[0], slices, *shape[2:], requires_grad=True)
            decoded = vae.decode(z1).shape  # (1, 3, T_px, H, W)
            k = decoded[2] // slices  # frames per latent time slice
            pd = build_pixel_discriminator(d_cfg, (3, k, *decoded[3:]), 0)  # as trained: its grid and width
        p_prof = profile_step([g, pd], lambda: pd(vae.decode(z1)[:, :, :k]).float().mean(), dtype)
        share = min(1.0, cfg.gan.pixel_d_batch / tc.batch_size)
        # An upper bound: the D step decodes without grad, but its pixel D sees real + fake.
        per_clip += int(share * 2 * (p_prof.saved_bytes + 2 * p_prof.largest_bytes))
        flops += int(share * 3 * p_prof.flops)  # D step (real + fake) and G step
        trained += _n(pd)
    ema = _n(g) if cfg.gan.ema_decay > 0 else 0
    return _estimate("train_gan", tc, trained, _n(vae) if vae is not None else 0, ema, per_clip, flops,
                     gpu_memory_gb, reserve_gb, headroom)


def plan_memory(cfg: PipelineConfig, gpu_memory_gb: float = 80.0, reserve_gb: float = 1.5, headroom: float = 0.9) -> list[MemoryEstimate]:
    """Plans for both training jobs of ``cfg`` on a GPU with ``gpu_memory_gb`` (decimal GB, as sold)."""
    if gpu_memory_gb <= 0 or not 0 < headroom <= 1 or reserve_gb < 0:
        raise ValueError("gpu_memory_gb must be > 0, headroom in (0, 1], reserve_gb >= 0")
    return [plan_vae(cfg, gpu_memory_gb, reserve_gb, headroom), plan_gan(cfg, gpu_memory_gb, reserve_gb, headroom)]

