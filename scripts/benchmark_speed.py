"""Speed, memory and FLOP benchmark of TGC-Net, VLSA-Net and an image-only MONAI baseline.

For each model, mode (inference / training step), batch size and execution variant (fp32, bf16 autocast,
channels-last, ``torch.compile``, ``torch.compile`` with CUDA graphs) it measures images per second, peak memory (of
the process, and of the tensors one step allocates), FLOPs per image (torch's ``FlopCounterMode``) and the achieved
TFLOP/s with its fraction of the device's peak, and sets each model's training step against its inference (time, FLOPs
and memory). It also times the frozen text encoder's cache (a miss, encoded batched and cut to the report's length,
against one report at a time over the full context; a hit) with the bytes it keeps per report, the data pipeline
(readers, transforms, DataLoader) of the TGC-Net bundle on demo images, and the bundle's whole training loop (its
trainer, loader, AMP setting and metric) with the share of time the loop waits for data
(:class:`monai_ext.handlers.LoaderWaitMonitor`): the figure that says whether the loader keeps up with the device.

Writes ``speed.json``, ``speed.md`` and ``throughput.png`` to ``output_dir``::

    python scripts/benchmark_speed.py --output_dir benchmark_results/speed_cpu --batch_sizes "[1,8]"
    python scripts/benchmark_speed.py --output_dir benchmark_results/speed_gpu --device cuda \
        --variants "['fp32','bf16','bf16_channels_last','bf16_compile','bf16_compile_cudagraphs']"

CLIP weights are random (timing does not depend on them), so nothing is downloaded.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import platform
import resource
import sys
import tempfile
import time
from contextlib import nullcontext

import fire
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from monai.bundle import ConfigParser  # noqa: E402
from monai.networks.nets import BasicUNet  # noqa: E402
from monai_ext.clip import get_clip_tokenizer  # noqa: E402
from monai_ext.flags import checked_flags  # noqa: E402
from monai_ext.io import atomic_write_json, atomic_write_text  # noqa: E402
from monai_ext.networks import TGCNet, VLSANet, count_parameters  # noqa: E402

FUNDUS_PROMPTS = os.path.join(REPO_ROOT, "bundles", "vlsanet", "configs", "prompts_fundus.json")
# The configs whose "loss" a training step of each model uses: its bundle's training loss.
LOSS_CONFIGS = {
    "tgcnet": ["tgcnet/configs/train.json"],
    "vlsanet": ["vlsanet/configs/train.json"],
    "basicunet": ["tgcnet/configs/train.json", "tgcnet/configs/baseline_unet.json"],
}
VARIANTS = ("fp32", "bf16", "bf16_channels_last", "bf16_compile", "bf16_compile_cudagraphs")
# torch.compile modes per variant; "reduce-overhead" records CUDA graphs, which removes the per-kernel launch cost
# that dominates small batches (on a CPU it compiles as the default mode).
COMPILE_MODES = {"bf16_compile": "default", "bf16_compile_cudagraphs": "reduce-overhead"}
# Dense (no sparsity) tensor-core peak TFLOP/s from the vendors' datasheets. "fp32" rows are compared with the TF32
# peak: cuDNN runs fp32 convolutions in TF32 by default (torch.backends.cudnn.allow_tf32), so the plain fp32 peak
# (67 TFLOP/s on an H100 SXM) would be exceeded.
PEAK_TFLOPS = {
    "H100 80GB HBM3": {"fp32": 494.7, "bf16": 989.4},
    "H100 PCIe": {"fp32": 378.0, "bf16": 756.0},
    "H200": {"fp32": 494.7, "bf16": 989.4},
    "A100": {"fp32": 156.0, "bf16": 312.0},
}


def build_model(name: str, clip_model_name: str, image_size: int) -> tuple[nn.Module, int]:
    """The network and its image channels."""
    if name == "tgcnet":
        return TGCNet(clip_model_name=clip_model_name, in_channels=1), 1
    if name == "vlsanet":
        return VLSANet(clip_model_name=clip_model_name, class_prompts=FUNDUS_PROMPTS, image_size=image_size), 3
    if name == "basicunet":
        return BasicUNet(spatial_dims=2, in_channels=1, out_channels=1), 1
    raise ValueError(f"Unknown model {name!r}; choose tgcnet, vlsanet or basicunet.")


def build_loss(name: str) -> nn.Module:
    """The training loss of the model's bundle (with its auxiliary term for TGC-Net and VLSA-Net)."""
    parser = ConfigParser()
    parser.read_config([os.path.join(REPO_ROOT, "bundles", path) for path in LOSS_CONFIGS[name]])
    return parser.get_parsed_content("loss")


def model_label(model: nn.Module, batch: int, size: int, device) -> torch.Tensor:
    """A random label: a class-index map for VLSA-Net, a binary mask for the single-channel models."""
    if isinstance(model, VLSANet):
        return torch.randint(0, model.num_classes, (batch, 1, size, size), device=device).float()
    return (torch.rand(batch, 1, size, size, device=device) > 0.5).float()


def model_inputs(name: str, channels: int, batch: int, size: int, clip_model_name: str, device) -> tuple:
    image = torch.rand(batch, channels, size, size, device=device)
    if name != "tgcnet":
        return (image,)
    tokens = get_clip_tokenizer(clip_model_name)(
        ["Bilateral pulmonary infection, upper left lung and lower right lung."]
    )
    # On the host, as the bundle's PrepareBatchTextInput passes them (the text cache is keyed there).
    return image, tokens.expand(batch, -1)


def peak_for(device: torch.device, precision: str) -> float | None:
    if device.type != "cuda":
        return None
    gpu = torch.cuda.get_device_name(device)
    for key, peaks in PEAK_TFLOPS.items():
        if key in gpu:
            return peaks[precision]
    return None


def count_flops(model: nn.Module, inputs: tuple, label: torch.Tensor, loss_fn: nn.Module | None) -> int:
    """FLOPs of one forward (inference, ``loss_fn`` None) or forward + loss + backward (training) on ``inputs``, in the
    steady state that the timed steps run in: a first, uncounted call fills the networks' text-embedding caches (a
    count of the first call would add the encoding of every prompt to one image's FLOPs)."""

    def call():
        if loss_fn is not None:
            loss_fn(model(*inputs), label).backward()
        else:
            with torch.no_grad():
                model(*inputs)

    call()
    with FlopCounterMode(display=False) as counter:
        call()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step, device: torch.device, warmup: int, iterations: int) -> float:
    """Seconds per step (median of ``iterations`` after ``warmup``)."""
    for _ in range(warmup):
        step()
    _sync(device)
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def peak_step_memory(step, device: torch.device) -> int:
    """Peak bytes of the tensors alive during one ``step`` on ``device``, above those alive before it.

    Read from the memory events of torch's profiler (every allocation and free of a tensor on the device), so it is the
    step's own working set (activations, gradients, temporaries) on a CPU as on a GPU, which the process's peak RSS
    (weights, Python, allocator caches included) hides. A replayed CUDA graph allocates nothing, so rows compiled with
    CUDA graphs count only what runs outside the graphs.
    """
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities, profile_memory=True) as prof:
        step()
        _sync(device)
    kind = device.type.upper()
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]" and e.device_type().name == kind),
        key=lambda e: e.start_ns(),
    )
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak


def benchmark_model(name, mode, batch, variant, args) -> dict:
    device = args["device"]
    torch.manual_seed(0)
    model, channels = build_model(name, args["clip_model_name"], args["image_size"])
    model = model.to(device).train(mode == "train")
    inputs = model_inputs(name, channels, batch, args["image_size"], args["clip_model_name"], device)
    precision = "bf16" if variant.startswith("bf16") else "fp32"
    if "channels_last" in variant:
        model = model.to(memory_format=torch.channels_last)
        inputs = (inputs[0].contiguous(memory_format=torch.channels_last), *inputs[1:])
    counts = count_parameters(model)
    loss_fn = build_loss(name).to(device) if mode == "train" else None
    label = model_label(model, batch, args["image_size"], device)
    flops = count_flops(
        model, model_inputs(name, channels, 1, args["image_size"], args["clip_model_name"], device), label[:1], loss_fn
    )
    # Static shapes: the text-embedding cache makes the first call (a miss) differ from later ones (hits); with
    # automatic dynamic shapes inductor then compiles a symbolic-shape graph, slower and on CPU failing to compile.
    runner = torch.compile(model, mode=COMPILE_MODES[variant], dynamic=False) if variant in COMPILE_MODES else model
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4) if mode == "train" else None

    def step():
        if mode == "train":
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss = loss_fn(runner(*inputs), label)
            loss.backward()
            optimizer.step()
        else:
            with torch.inference_mode(), autocast:
                runner(*inputs)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    # CUDA graphs are recorded only after a compiled warm-up call, so compiled variants get at least 3 warm-up steps.
    warmup = max(args["warmup"], 3) if variant in COMPILE_MODES else args["warmup"]
    seconds = time_steps(step, device, warmup, args["iterations"])
    memory = (
        torch.cuda.max_memory_allocated(device)
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    tensor_memory = peak_step_memory(step, device)
    images_per_s = batch / seconds
    achieved = flops * images_per_s / 1e12
    peak = peak_for(device, precision)
    return {
        "model": name,
        "mode": mode,
        "batch": batch,
        "variant": variant,
        "images_per_s": images_per_s,
        "ms_per_step": seconds * 1e3,
        "gflops_per_image": flops / 1e9,
        "achieved_tflops": achieved,
        "fraction_of_peak": (achieved / peak) if peak else None,
        "peak_memory_mib": memory / 2**20,
        "memory_kind": "cuda max allocated" if device.type == "cuda" else "process peak RSS (monotonic over the run)",
        "peak_step_tensor_mib": tensor_memory / 2**20,
        **counts,
    }


def benchmark_model_in_fresh_process(name, mode, batch, variant, args) -> dict:
    """:func:`benchmark_model` in a spawned process, so that the peak RSS is this row's alone (on a CPU the process's
    peak is otherwise monotonic over the whole run and every row after the largest one shows the largest)."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        row = pool.submit(benchmark_model, name, mode, batch, variant, args).result()
    return {**row, "memory_kind": "peak RSS of a fresh process for this row (Python and torch included)"}


def benchmark_reports(count: int) -> list[str]:
    """``count`` distinct reports in QaTa-COV19's style (LViT's annotations: 15-19 CLIP tokens each)."""
    zones = ["upper", "middle", "lower"]
    sides = ["left", "right"]
    numbers = ["One", "Two", "Three", "Four"]
    reports = [
        f"Bilateral pulmonary infection, {n.lower()} infected areas, {z} {s} lung and {z2} {s2} lung."
        for n in numbers
        for z in zones
        for s in sides
        for z2 in zones
        for s2 in sides
        if (z, s) != (z2, s2)
    ]
    if count > len(reports):
        raise ValueError(f"At most {len(reports)} distinct benchmark reports, asked for {count}.")
    return reports[:count]


def benchmark_text(args) -> list[dict]:
    """TGC-Net's frozen text encoder per batch of distinct reports: encoding them as the cache does on a miss (one
    call per ``miss_batch_size`` reports, cut to their token length) against one report at a time over the full
    context (the encoder before issue 16), a batch served from the cache, and the bytes the cache keeps per report
    and per knowledge sentence."""
    device = args["device"]
    model = TGCNet(clip_model_name=args["clip_model_name"], in_channels=1).to(device).eval()
    encoder = model.text_encoder
    tokenizer = get_clip_tokenizer(args["clip_model_name"])
    rows = []
    for batch in args["batch_sizes"]:
        tokens = tokenizer(benchmark_reports(batch))
        lengths = (tokens != 0).sum(dim=1).float()

        def encode_misses():
            encoder.cache.clear()
            encoder(tokens)

        def encode_one_by_one_full_context():
            with torch.no_grad():
                for row in tokens.to(device):
                    encoder._project_tokens(row.unsqueeze(0))

        with torch.no_grad():
            misses = time_steps(encode_misses, device, args["warmup"], args["iterations"])
            old = time_steps(encode_one_by_one_full_context, device, args["warmup"], args["iterations"])
            cached = time_steps(lambda: encoder(tokens), device, args["warmup"], args["iterations"])
            encoder.cache.clear()
            encoder(tokens)
            report_bytes = encoder.cache.nbytes / batch
            encoder.cache.clear()
            encoder.encode_pooled(tokens)
            sentence_bytes = encoder.cache.nbytes / batch
        rows.append(
            {
                "batch": batch,
                "tokens_per_report": lengths.mean().item(),
                "miss_ms_per_report": misses * 1e3 / batch,
                "full_context_one_by_one_ms_per_report": old * 1e3 / batch,
                "cached_ms": cached * 1e3,
                "miss_speedup": old / misses,
                "cache_bytes_per_report": report_bytes,
                "cache_bytes_per_knowledge_sentence": sentence_bytes,
                "miss_batch_size": encoder.miss_batch_size,
            }
        )
        print("   ", rows[-1], flush=True)
    return rows


def tgcnet_train_parser(args, data_dir: str, **overrides):
    """The TGC-Net bundle's ``train.json`` on the demo images in ``data_dir`` with random CLIP weights."""
    parser = ConfigParser()
    parser.read_config(os.path.join(REPO_ROOT, "bundles", "tgcnet", "configs", "train.json"))
    parser.update(
        {
            "bundle_root": os.path.join(REPO_ROOT, "bundles", "tgcnet"),
            "dataset_dir": data_dir,
            "clip_model_name": args["clip_model_name"],
            "clip_pretrained": None,
            "image_size": args["image_size"],
            **overrides,
        }
    )
    return parser


def benchmark_data_pipeline(args, data_dir: str) -> list[dict]:
    """Images/s through the TGC-Net bundle's training dataset and a DataLoader, on demo PNGs.

    One row per (cache_rate, num_workers): the bundle's ``CacheDataset`` with ``cache_rate`` 0 loads, rescales and
    resizes every image at every step; 1 does that once and keeps it. Workers persist across epochs as in the bundle,
    so worker start-up is paid in the untimed warm-up epoch; the timed figure is the steady state over
    ``loader_epochs`` epochs.
    """
    from monai.data import DataLoader

    rows = []
    for cache_rate in args["loader_cache_rates"]:
        parser = tgcnet_train_parser(args, data_dir, cache_rate=cache_rate, num_workers=max(args["loader_workers"]))
        started = time.perf_counter()
        dataset = parser.get_parsed_content("train#dataset")
        cache_seconds = time.perf_counter() - started
        for workers in args["loader_workers"]:
            loader = DataLoader(
                dataset, batch_size=16, num_workers=workers, shuffle=True, persistent_workers=workers > 0
            )
            for _ in loader:  # warm-up epoch: worker start, file cache, tokenizer memo
                pass
            start = time.perf_counter()
            count = sum(batch["image"].shape[0] for _ in range(args["loader_epochs"]) for batch in loader)
            rows.append(
                {
                    "cache_rate": cache_rate,
                    "num_workers": workers,
                    "cache_seconds": cache_seconds,
                    "images_per_s": count / (time.perf_counter() - start),
                }
            )
            print("   ", rows[-1], flush=True)
            del loader
    return rows


def benchmark_training_loop(args, data_dir: str) -> list[dict]:
    """Images/s of the TGC-Net bundle's own trainer (loader, AMP on a GPU as in the bundle, loss, optimiser, metric) and
    the share of that time spent waiting for the next batch, per DataLoader worker count.

    Validation, checkpoints and logging handlers are left out; the first epoch (worker start-up, text-embedding cache
    fill, cuDNN autotuning) is untimed, the row averages the ``loop_epochs`` epochs after it.
    """
    from monai_ext.handlers import LoaderWaitMonitor

    rows = []
    for workers in args["loop_workers"]:
        parser = tgcnet_train_parser(
            args,
            data_dir,
            num_workers=workers,
            batch_size=args["loop_batch_size"],
            max_epochs=1 + args["loop_epochs"],
            device=args["device"],
            amp=args["device"].type == "cuda",
            **{"train#handlers": []},
        )
        trainer = parser.get_parsed_content("train#trainer")
        monitor = LoaderWaitMonitor(log=False)
        monitor.attach(trainer)
        parser.get_parsed_content("initialize")
        trainer.run()
        timed = monitor.epochs[1:]
        seconds = sum(e["seconds"] for e in timed)
        images = sum(e["images"] for e in timed)
        rows.append(
            {
                "num_workers": workers,
                "batch": args["loop_batch_size"],
                "amp": bool(trainer.amp),
                "images": images,
                "images_per_s": images / seconds,
                "wait_fraction": sum(e["wait_seconds"] for e in timed) / seconds,
            }
        )
        print("   ", rows[-1], flush=True)
        del trainer
        if args["device"].type == "cuda":
            torch.cuda.empty_cache()
    return rows


def training_ratios(rows: list[dict]) -> list[dict]:
    """Training over inference per (model, batch, variant) measured in both modes: time per step and FLOPs per image,
    with the training step's tensor peak."""
    done = {(r["model"], r["batch"], r["variant"], r["mode"]): r for r in rows if "error" not in r}
    ratios = []
    for (model, batch, variant, mode), train in done.items():
        inference = done.get((model, batch, variant, "inference"))
        if mode != "train" or inference is None:
            continue
        ratios.append(
            {
                "model": model,
                "batch": batch,
                "variant": variant,
                "time_ratio": train["ms_per_step"] / inference["ms_per_step"],
                "flop_ratio": train["gflops_per_image"] / inference["gflops_per_image"],
                "train_step_tensor_mib": train["peak_step_tensor_mib"],
            }
        )
    return ratios


def _markdown(results: dict) -> str:
    env = results["environment"]
    lines = [
        "# Speed benchmark",
        "",
        f"Device: {env['device_name']}; torch {env['torch']}; {env['cpu_count']} CPU threads; image "
        f"{env['image_size']}x{env['image_size']}; CLIP {env['clip_model_name']} (random weights); {env['date']}.",
        "",
        f"Command: `{env['command']}`",
        "",
    ]
    if results["models"]:
        lines += [
            "Median of the timed steps after warm-up. Training = forward + the bundle's loss + backward + AdamW step on "
            "the trainable parameters. FLOPs counted with torch.utils.flop_counter for one image (training: forward "
            "+ loss + backward). "
            "'of peak': achieved TFLOP/s over the datasheet's dense tensor-core peak (bf16; fp32 rows against TF32, "
            "which cuDNN uses for fp32 convolutions by default).",
            "",
            "'peak MiB': the process's peak RSS on a CPU (each row in a fresh process unless isolate_rows=False), "
            "torch's max allocated on a GPU; 'step MiB': the peak of the tensors one step allocates above those alive "
            "before it (weights, cached text embeddings), from the profiler's memory events.",
            "",
            "| model | mode | batch | variant | images/s | ms/step | GFLOP/image | TFLOP/s | of peak | peak MiB |"
            " step MiB | trainable / total params |",
            "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
    for r in results["models"]:
        frac = f"{100 * r['fraction_of_peak']:.1f}%" if r.get("fraction_of_peak") else "n/a"
        if "error" in r:
            lines.append(
                f"| {r['model']} | {r['mode']} | {r['batch']} | {r['variant']} | failed: {r['error']} |"
                " | | | | | | |"
            )
            continue
        lines.append(
            f"| {r['model']} | {r['mode']} | {r['batch']} | {r['variant']} | {r['images_per_s']:.1f} | "
            f"{r['ms_per_step']:.1f} | {r['gflops_per_image']:.1f} | {r['achieved_tflops']:.2f} | {frac} | "
            f"{r['peak_memory_mib']:.0f} | {r['peak_step_tensor_mib']:.0f} | {r['trainable'] / 1e6:.2f}M / "
            f"{r['total'] / 1e6:.1f}M |"
        )
    ratios = training_ratios(results["models"])
    if ratios:
        lines += [
            "",
            "## Training step against inference",
            "",
            "Each model's training row over its inference row (same batch and variant): time per step, FLOPs per "
            "image, and the training step's tensor peak.",
            "",
            "| model | batch | variant | time ratio | FLOP ratio | training step MiB |",
            "| --- | ---: | --- | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {r['model']} | {r['batch']} | {r['variant']} | {r['time_ratio']:.2f}x | {r['flop_ratio']:.2f}x | "
            f"{r['train_step_tensor_mib']:.0f} |"
            for r in ratios
        ]
    if results.get("text"):
        lines += [
            "",
            "## Text encoding: cache misses, hits and bytes (TGC-Net's frozen CLIP text encoder)",
            "",
            "Distinct reports in QaTa-COV19's style. 'miss': the cache's encoding of reports it lacks (calls of "
            "`miss_batch_size` rows, cut to the reports' token length); 'before': one report at a time over the full "
            "77-token context, as the encoder did before; 'cached': the whole batch served from the cache. Bytes: "
            "what the cache keeps per report (projected token features, float32 here) and per knowledge sentence "
            "(its pooled embedding), keys included.",
            "",
            "| reports | tokens each | miss (ms/report) | before (ms/report) | speed-up | cached batch (ms) "
            "| KiB per report | KiB per knowledge sentence |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {r['batch']} | {r['tokens_per_report']:.1f} | {r['miss_ms_per_report']:.2f} | "
            f"{r['full_context_one_by_one_ms_per_report']:.2f} | {r['miss_speedup']:.1f}x | {r['cached_ms']:.3f} | "
            f"{r['cache_bytes_per_report'] / 1024:.1f} | {r['cache_bytes_per_knowledge_sentence'] / 1024:.1f} |"
            for r in results["text"]
        ]
    if results.get("data_pipeline"):
        lines += [
            "",
            "## Data pipeline (TGC-Net train dataset + DataLoader, batch 16, demo PNGs, steady state)",
            "",
            "| cache_rate | num_workers | images/s | time to fill the cache (s) |",
            "| ---: | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {r['cache_rate']} | {r['num_workers']} | {r['images_per_s']:.1f} | {r['cache_seconds']:.1f} |"
            for r in results["data_pipeline"]
        ]
    if results.get("training_loop"):
        lines += [
            "",
            "## Training loop (the TGC-Net bundle's trainer on demo PNGs, epochs after the first)",
            "",
            "'waiting for data': share of the loop's time spent fetching the next batch; near 0 means the "
            "network, not the loader, sets the pace.",
            "",
            "| num_workers | batch | AMP | images/s | waiting for data |",
            "| ---: | ---: | --- | ---: | ---: |",
        ]
        lines += [
            f"| {r['num_workers']} | {r['batch']} | {'yes' if r['amp'] else 'no'} | {r['images_per_s']:.1f} | "
            f"{100 * r['wait_fraction']:.1f}% |"
            for r in results["training_loop"]
        ]
    return "\n".join(lines) + "\n"


def _plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, mode in zip(axes, ("inference", "train")):
        for model, variant in sorted({(r["model"], r["variant"]) for r in results["models"] if "error" not in r}):
            rows = sorted(
                (
                    r
                    for r in results["models"]
                    if r["model"] == model and r["variant"] == variant and r["mode"] == mode and "error" not in r
                ),
                key=lambda r: r["batch"],
            )
            if rows:
                ax.plot(
                    [r["batch"] for r in rows],
                    [r["images_per_s"] for r in rows],
                    marker="o",
                    label=f"{model} {variant}",
                )
        ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="images / s", title=mode)
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.suptitle(results["environment"]["device_name"])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(
    output_dir: str = "benchmark_results/speed",
    device: str = "auto",
    models=("tgcnet", "vlsanet", "basicunet"),
    modes=("inference", "train"),
    batch_sizes=(1, 8, 32),
    variants=("fp32",),
    image_size: int = 224,
    clip_model_name: str = "ViT-B-16",
    warmup: int = 2,
    iterations: int = 5,
    text: bool = True,
    data_pipeline: bool = True,
    loader_workers=(0, 2),
    loader_cache_rates=(0.0, 1.0),
    loader_images: int = 256,
    loader_epochs: int = 2,
    training_loop: bool = True,
    loop_workers=(0, 2),
    loop_batch_size: int = 16,
    loop_epochs: int = 1,
    isolate_rows: bool | None = None,
) -> str:
    """Run the benchmark; returns the path of ``speed.md``. ``variants`` from: fp32, bf16, bf16_channels_last,
    bf16_compile, bf16_compile_cudagraphs (bf16 variants use torch.autocast). ``--models "[]" --text False`` times
    only the data pipeline and the training loop; both run on ``loader_images`` demo images. ``isolate_rows`` (default:
    on a CPU) times each model row in a fresh process, so that its peak memory is its own."""
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise ValueError(f"Unknown variants {sorted(unknown)}; choose from {VARIANTS}.")
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    args = {
        "device": dev,
        "image_size": image_size,
        "clip_model_name": clip_model_name,
        "warmup": warmup,
        "iterations": iterations,
        "batch_sizes": list(batch_sizes),
        "loader_workers": list(loader_workers),
        "loader_cache_rates": list(loader_cache_rates),
        "loader_images": loader_images,
        "loader_epochs": loader_epochs,
        "loop_workers": list(loop_workers),
        "loop_batch_size": loop_batch_size,
        "loop_epochs": loop_epochs,
    }
    os.makedirs(output_dir, exist_ok=True)
    results = {
        "environment": {
            "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "CPU",
            "torch": torch.__version__,
            "cpu_count": torch.get_num_threads(),
            "image_size": image_size,
            "clip_model_name": clip_model_name,
            "date": time.strftime("%Y-%m-%d"),
            "command": "python " + " ".join([os.path.relpath(sys.argv[0], REPO_ROOT), *sys.argv[1:]]),
        },
        "models": [],
    }
    combos = [(m, mode, b, v) for m in models for mode in modes for b in batch_sizes for v in variants]
    isolate = dev.type == "cpu" if isolate_rows is None else isolate_rows
    run_row = benchmark_model_in_fresh_process if isolate else benchmark_model
    for index, (name, mode, batch, variant) in enumerate(combos, 1):
        print(f"[{index}/{len(combos)}] {name} {mode} batch {batch} {variant}", flush=True)
        try:
            row = run_row(name, mode, batch, variant, args)
        except Exception as error:  # one failing variant (out of memory, a compiler error) must not lose the others
            kind = "out of memory" if isinstance(error, torch.OutOfMemoryError) else type(error).__name__
            message = str(error).strip().splitlines()[0] if str(error).strip() else ""
            row = {
                "model": name,
                "mode": mode,
                "batch": batch,
                "variant": variant,
                "error": f"{kind}: {message}".replace("|", "/")[:120],
            }
        finally:
            torch._dynamo.reset()
        print("   ", {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
        results["models"].append(row)
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    if text:
        print("text encoding: misses, hits, bytes per report", flush=True)
        results["text"] = benchmark_text(args)
    if data_pipeline or training_loop:
        from monai_ext.demo import make_chest_xray_dataset

        with tempfile.TemporaryDirectory() as tmp:
            data_dir = os.path.join(tmp, "chest")
            make_chest_xray_dataset(data_dir, n_train=loader_images, n_val=2, n_test=2, image_size=image_size, seed=0)
            if data_pipeline:
                print("data pipeline", flush=True)
                results["data_pipeline"] = benchmark_data_pipeline(args, data_dir)
            if training_loop:
                print("training loop", flush=True)
                results["training_loop"] = benchmark_training_loop(args, data_dir)
    results["training_vs_inference"] = training_ratios(results["models"])
    atomic_write_json(os.path.join(output_dir, "speed.json"), results, overwrite=True)
    markdown_path = os.path.join(output_dir, "speed.md")
    atomic_write_text(markdown_path, _markdown(results), overwrite=True)
    if results["models"]:
        _plot(results, os.path.join(output_dir, "throughput.png"))
    print(_markdown(results))
    return markdown_path


if __name__ == "__main__":
    fire.Fire(checked_flags(main))
