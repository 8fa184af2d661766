"""What the CPU offers, and the encoder precision ``auto`` picks from it.

Machines of the same kind differ (some have AMX tiles, some AVX-512 VNNI, some only AVX2), and
the fastest encoder path that keeps quality depends on which: bf16 autocast is 2.6x fp32 on a
Xeon with AMX but no faster than fp32 where bf16 is only AVX512-BF16 dot products (an AMD EPYC,
docs/benchmarks.md). The rule is a pure function of the capability set
(:func:`auto_precision`), so it is tested without the hardware; :func:`cpu_flags` reads the set
from this machine.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from pathlib import Path
from typing import Any

#: The encoder precisions ``--precision`` accepts.
PRECISIONS = ("auto", "fp32", "bf16", "int8", "fp16")

#: The CPU features that matter to the choice (names as in /proc/cpuinfo).
CPU_FLAGS = (
    "amx_bf16",
    "amx_int8",
    "amx_tile",
    "avx512_bf16",
    "avx512_vnni",
    "avx512f",
    "avx_vnni",
    "avx2",
)

#: Whether ``auto`` picks int8 (torch dynamic quantisation) on a CPU with VNNI and no AMX.
#: Measured on a 2-core AMD EPYC with AVX512-VNNI (docs/benchmarks.md, "Encoder precision"):
#: it changed 4-6% of sentiment labels (gate: <= 2%) and was no faster, so it stays off; flip
#: only with a measurement that shows it faster *and* inside the gate.
INT8_ON_VNNI = False


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a one-line error (raised when
    the settings are built, before any file is read)."""
    if precision not in PRECISIONS:
        from nlp_seg.errors import NlpsegError

        raise NlpsegError(f"unknown encoder precision {precision!r}; use {', '.join(PRECISIONS)}")
    return precision


def auto_precision(device: str, flags: Collection[str]) -> str:
    """The precision ``auto`` means on ``device`` for a CPU with ``flags`` (why: see
    docs/benchmarks.md, "Encoder precision").

    * CUDA: fp16.
    * CPU with AMX-BF16 tiles: bf16 autocast (2.6x fp32 on an AMX Xeon, cosine >= 0.9999).
    * CPU with VNNI but no AMX: int8 if :data:`INT8_ON_VNNI` (it was measured faster and within
      the quality gate), else fp32.
    * Any other CPU: fp32 (bf16 and int8 are emulated or unmeasured there).
    """
    if device.startswith("cuda"):
        return "fp16"
    if "amx_bf16" in flags:
        return "bf16"
    if INT8_ON_VNNI and ({"avx512_vnni", "avx_vnni"} & set(flags)):
        return "int8"
    return "fp32"


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The :data:`CPU_FLAGS` this machine's CPU has: from /proc/cpuinfo on Linux, otherwise
    from torch's own CPU probes (which know fewer of them)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split()) & frozenset(CPU_FLAGS)
    return _torch_flags()


def _torch_flags() -> frozenset[str]:
    try:
        import torch.cpu as tcpu
    except ImportError:
        return frozenset()
    probes = {
        "amx_tile": "_is_amx_tile_supported",
        "avx512_bf16": "_is_avx512_bf16_supported",
        "avx512_vnni": "_is_vnni_supported",
        "avx512f": "_is_avx512_supported",
        "avx2": "_is_avx2_supported",
    }
    found = set()
    for flag, name in probes.items():
        probe = getattr(tcpu, name, None)
        try:
            if probe is not None and probe():
                found.add(flag)
        except Exception:  # noqa: BLE001 - private torch helpers; absent means "do not assume"
            pass
    if "amx_tile" in found:  # torch has no separate AMX-BF16 probe; AMX tiles imply it
        found.add("amx_bf16")
    return frozenset(found)


def torch_cpu_capability() -> str | None:
    """The SIMD level torch's CPU kernels were dispatched to (``AVX512``, ``AVX2``, ...)."""
    try:
        import torch

        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # noqa: BLE001 - older torch: unknown rather than a failed run
        return None


def cpu_capability() -> dict[str, Any]:
    """What ``run.json`` records about the CPU: torch's kernel level and the relevant flags."""
    return {"torch": torch_cpu_capability(), "flags": sorted(cpu_flags())}


def int8_engine() -> str | None:
    """The quantised-kernel engine torch has here for int8 (``x86``/``fbgemm`` on x86,
    ``qnnpack`` on ARM), or None when dynamic quantisation cannot run."""
    try:
        import torch
    except ImportError:
        return None
    engines = [e for e in torch.backends.quantized.supported_engines if e != "none"]
    for preferred in ("x86", "fbgemm", "qnnpack"):
        if preferred in engines:
            return preferred
    return engines[0] if engines else None


def quantize_int8(model: Any) -> Any:
    """``model`` with its Linear layers dynamically quantised to int8 (weights per output
    channel, activations per batch), in place; CPU only.

    Why this recipe: dynamic quantisation needs no calibration data and leaves LayerNorm,
    attention and pooling in fp32. Quantising *every* Linear per tensor moved the bundled
    encoder's embeddings too far (cosine to fp32 0.963 at worst on 96 reviews, mean 0.977);
    per-channel weights gave 0.981 / 0.986, and keeping the down-projections (the
    feed-forward output layers, ``in_features > out_features``, whose inputs carry the large
    activation outliers; the early layers' matter most) in fp32 gave 0.994 / 0.996.
    """
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    engine = int8_engine()
    if engine is None:
        from nlp_seg.errors import NlpsegError

        raise NlpsegError("int8 precision needs torch's quantised CPU kernels, absent here")
    torch.backends.quantized.engine = engine
    spec = {
        name: per_channel_dynamic_qconfig
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module.in_features <= module.out_features
    }
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which is not a dependency;
        # the eager dynamic path still works and is what is measured.
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, spec, inplace=True)
