"""How fast lsmap feeds a model, against its previous engine and a TorchGeo predictor (issue 15).

In one run, on the same 4-band uint16 DEFLATE scenes (generated once, block by block):

1. Zero-cost-model feed: a 1x1 convolution saved as a real lsmap checkpoint (only the model
   builder is substituted), tile 512, overlap 128 (stride 384), batch 8, fp32, CPU, blended
   probabilities handed to a sink that drops them (inference alone, no writing). Each engine runs
   in a fresh process; figures: tiles/s and peak RSS.
   - ``lsmap before`` (with ``--before REV``): the package at a git revision (``git archive``; 97e111c
     is the engine before issue 15), as shipped; ``before+cache`` is the same with
     GDAL_CACHEMAX=256 (the memory diagnosis, issue 11).
   - ``lsmap after``: this working tree.
   - ``torchgeo``: ``RasterDataset`` + ``GridGeoSampler`` (same tile and stride) + DataLoader
     (batch 8, 2 workers) + the same model, averaged into full-scene sum/count arrays. TorchGeo is
     installed by this benchmark into its own venv under ``.bench-cache/`` (newest release on the
     index for Python 3.11, torch pinned to the project's version); if that fails it says so in one
     line and the lsmap figures are still reported.
2. Real model: improved DeepLabV3+/ResNet50 (random weights), bf16, batch 4, on a 2,048² scene
   (25 tiles): lsmap's end-to-end inference (``predict_scene``, model build included) against the
   pure forward of exactly the engine's batches (prepared, on the device), one warm-up of each,
   then ``--real-repeats`` pairs in ABBA order, medians; and the forward without ``channels_last``.

Peak RSS is the process tree's resident memory sampled 10 times a second (TorchGeo's DataLoader
workers included) and the child's own ru_maxrss. The machine may be shared: the load average is
printed, and all figures of one run are comparable with each other only.

    .venv/bin/python benchmarks/bench_feed.py [--sizes 8192 16384] [--real-size 2048] [--skip-torchgeo]
        [--before 97e111c] [--device cpu|cuda] [--real-batch 4 ...] [--real-repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".bench-cache"
TORCHGEO_VERSION = "0.8.1"  # newest on the package index that supports Python 3.11 (0.9+ are not there)
MEAN = [500.0, 800.0, 700.0, 2800.0]
STD = [300.0, 300.0, 350.0, 800.0]
TILE, OVERLAP, BATCH = 512, 128, 8
PAPER_AREA_KM2 = 21_547  # the region: six GF-6 scenes


# ------------------------------------------------------------------------------------ inputs


def feed_scene(work: Path, size: int) -> Path:
    """A ``size``² 4-band uint16 DEFLATE scene (bench_memory's scene: tiled 512, UTM 2 m, nodata-0
    corner), written block by block; reused when it exists."""
    from bench_memory import write_scene  # benchmarks/ is on sys.path: this file runs as a script

    path = Path(work) / f"feed_{size}.tif"
    if path.exists():
        return path
    tmp = path.with_suffix(".partial.tif")
    write_scene(tmp, size, {"compress": "deflate", "predictor": 2, "num_threads": "all_cpus"})
    tmp.rename(path)
    return path


def pointwise_checkpoint(path: Path) -> Path:
    """A real lsmap checkpoint holding a 1x1 convolution (4 bands -> 1 logit)."""
    import torch

    from lsmap.checkpoint import Checkpoint, InputSpec, save_checkpoint

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 1, 1)
    spec = InputSpec(["blue", "green", "red", "nir"], MEAN, STD, TILE)
    return save_checkpoint(Checkpoint("fcn", {"in_channels": 4, "num_classes": 1, "backbone": "resnet18"},
                                      conv.state_dict(), spec), path)


def use_pointwise_models() -> None:
    """Make every checkpoint build a 1x1 convolution from its weights (both engines call this)."""
    import torch

    from lsmap import checkpoint as ckpt

    def build_model(self, device="cpu"):
        conv = torch.nn.Conv2d(len(self.input.bands), 1, 1)
        conv.load_state_dict(self.state_dict)
        return conv.to(device).eval()

    ckpt.Checkpoint.build_model = build_model


def before_tree(revision: str) -> Path:
    """The lsmap package at ``revision`` (the engine before issue 15: 97e111c), extracted once."""
    base = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{revision}^{{commit}}"], capture_output=True,
                          text=True, check=True).stdout.strip()
    target = CACHE / "before" / base[:12]
    if not (target / "lsmap" / "predict.py").exists():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", base, "lsmap"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def torchgeo_python() -> tuple[Path | None, str]:
    """The python of a venv with torchgeo (created on first use), or None and the reason.

    The venv sees this environment's packages through a ``.pth`` file (``--system-site-packages``
    from inside a venv would expose the base interpreter's instead, and pip would then fetch a
    second torch with the whole CUDA stack, gigabytes); torch and torchvision are pinned to this
    environment's versions, so only torchgeo and what it adds are installed into the venv.
    """
    import site
    import sysconfig

    venv = CACHE / "torchgeo-venv"
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import torchgeo; print(torchgeo.__version__)"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python, ""
    import torch
    import torchvision

    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        venv_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip()
        ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()}
        Path(venv_site, "lsmap-project-env.pth").write_text("\n".join(sorted(ours)) + "\n")
        pins = CACHE / "torchgeo-pins.txt"  # torch as in the project, so that pip does not replace it
        pins.write_text(f"torch=={torch.__version__.split('+')[0]}\ntorchvision=={torchvision.__version__.split('+')[0]}\n")
        log = CACHE / "torchgeo-install.log"
        with open(log, "w") as out:
            done = subprocess.run([str(python), "-m", "pip", "install", f"torchgeo=={TORCHGEO_VERSION}", "-c", str(pins)],
                                  stdout=out, stderr=out)
        if done.returncode != 0:
            return None, f"pip install torchgeo=={TORCHGEO_VERSION} failed (see {log})"
        if subprocess.run(check, capture_output=True).returncode != 0:
            return None, "torchgeo installed but does not import"
        return python, ""
    except (OSError, subprocess.CalledProcessError) as exc:
        return None, f"cannot create the torchgeo venv ({exc})"


# -------------------------------------------------------------------------------- measuring


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants, from /proc."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return total


def run_child(command: list[str], env: dict | None = None) -> dict:
    """Run a measuring child; its last stdout line is JSON. Adds the sampled process-tree peak RSS."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **(env or {})})
    peak = [0]

    def sample():
        while process.poll() is None:
            peak[0] = max(peak[0], tree_rss_bytes(process.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = process.communicate()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed:\n{err[-3000:]}")
    figures = json.loads(out.strip().splitlines()[-1])
    figures["tree_peak_gb"] = peak[0] / 1e9
    return figures


def python_path(first) -> str:
    """PYTHONPATH with ``first`` (the lsmap to measure) in front of the caller's entries, which are
    kept: on the GPU machine rasterio itself comes from PYTHONPATH (benchmarks/gpu_check.sh)."""
    return os.pathsep.join([str(first), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])


def own_peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


# ------------------------------------------------------------------------------------ children


def child_lsmap(scene: str, checkpoint: str, device: str = "cpu") -> None:
    """Inference alone (a sink that drops the cores) with whichever lsmap is on sys.path."""
    import dataclasses

    import lsmap.predict as predict

    use_pointwise_models()
    names = {f.name for f in dataclasses.fields(predict.InferenceOptions)}
    options = predict.InferenceOptions(**{k: v for k, v in dict(tile_size=TILE, overlap_px=OVERLAP, batch_size=BATCH,
                                                                  device=device, precision="fp32", progress=False).items()
                                          if k in names})
    started = time.perf_counter()
    run = predict.predict_scene(scene, checkpoint, lambda block, probability: None, options)
    seconds = time.perf_counter() - started
    print(json.dumps({"tiles": run.tiles_run, "seconds": seconds, "tiles_per_s": run.tiles_run / seconds,
                      "own_peak_gb": own_peak_gb(), "lsmap": predict.__file__}))


def child_torchgeo(scene: str, checkpoint: str) -> None:
    """TorchGeo's sliding-window prediction: RasterDataset + GridGeoSampler + full-scene averaging."""
    import rasterio
    import torch
    from torch.utils.data import DataLoader
    from torchgeo.datasets import RasterDataset, stack_samples
    from torchgeo.samplers import GridGeoSampler

    state = torch.load(checkpoint, weights_only=True)
    conv = torch.nn.Conv2d(4, 1, 1)
    conv.load_state_dict(state["state_dict"])
    conv.eval()
    mean = torch.tensor(state["input"]["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(state["input"]["std"]).view(1, -1, 1, 1)

    class Scene(RasterDataset):
        filename_glob = Path(scene).name
        is_image = True

    with rasterio.open(scene) as src:
        height, width, left, top, res = src.height, src.width, src.bounds.left, src.bounds.top, src.res[0]
    dataset = Scene(paths=[str(Path(scene).parent)])
    sampler = GridGeoSampler(dataset, size=TILE, stride=TILE - OVERLAP)
    loader = DataLoader(dataset, batch_size=BATCH, sampler=sampler, num_workers=2, collate_fn=stack_samples)
    total = np.zeros((height, width), np.float32)
    count = np.zeros((height, width), np.float32)
    tiles = 0
    started = time.perf_counter()
    with torch.inference_mode():
        for batch in loader:
            x = (batch["image"].float() - mean) / std
            probability = torch.sigmoid(conv(x))[:, 0].numpy()
            for k, (xs, ys, *_) in enumerate(batch["bounds"]):
                col, row = round((xs.start - left) / res), round((top - ys.stop) / res)
                # GridGeoSampler (0.8) lays its grid from the bottom-left corner: the top row of chips
                # overhangs above the scene (row < 0) and the last column to the right; the chip's
                # pixels outside the scene are fill, the rest lands where it belongs
                r0, r1 = max(row, 0), min(row + TILE, height)
                c0, c1 = max(col, 0), min(col + TILE, width)
                if r1 <= r0 or c1 <= c0:
                    continue
                total[r0:r1, c0:c1] += probability[k, r0 - row:r1 - row, c0 - col:c1 - col]
                count[r0:r1, c0:c1] += 1
            tiles += len(probability)
    np.divide(total, count, out=total, where=count > 0)
    seconds = time.perf_counter() - started
    import torchgeo

    check = pointwise_check(scene, conv, mean, std, total, count)  # after the clock: not part of the rate
    print(json.dumps({"tiles": tiles, "seconds": seconds, "tiles_per_s": tiles / seconds, "own_peak_gb": own_peak_gb(),
                      "torchgeo": torchgeo.__version__, **check}))


def pointwise_check(scene: str, conv, mean, std, total: np.ndarray, count: np.ndarray) -> dict:
    """Is TorchGeo's map right? With a 1x1 convolution every tile gives a pixel the same
    probability, so the average must equal the model on the pixel itself, and every pixel must be
    covered. Checked on 512² pieces along the bottom and right edges (where the last chips of
    GridGeoSampler overhang), TorchGeo's own input convention (nodata read as 0)."""
    import rasterio
    import torch
    from rasterio.windows import Window

    height, width = total.shape
    pieces = {(max(0, height - TILE), c) for c in range(0, width, TILE)} | {(r, max(0, width - TILE)) for r in range(0, height, TILE)}
    error = 0.0
    with rasterio.open(scene) as src, torch.inference_mode():
        for r, c in sorted(pieces):
            h, w = min(TILE, height - r), min(TILE, width - c)
            x = torch.from_numpy(src.read(window=Window(c, r, w, h)).astype(np.float32))[None]
            direct = torch.sigmoid(conv((x - mean) / std))[0, 0].numpy()
            error = max(error, float(np.abs(total[r:r + h, c:c + w] - direct).max()))
    return {"uncovered_px": int((count == 0).sum()), "edge_max_abs_error": error}


def engine_batches(scene: str, ckpt, model, options, workers: int) -> list[np.ndarray]:
    """The batches lsmap's engine runs on ``scene``, tile for tile: each block's tiles that touch
    valid data, in chunks of ``batch_size`` (a batch never spans two blocks), normalised as the
    engine normalises them. (n, C, T, T) float32 arrays."""
    import rasterio

    from lsmap.predict import inspect_scene, make_grid, read_block

    info = inspect_scene(scene, ckpt)
    grid = make_grid(info, options, workers)
    batches = []
    with rasterio.open(scene) as src:
        for block in grid.blocks:
            pixels, valid = read_block(src, info, block, TILE)
            r0, c0 = block.extent[0], block.extent[2]
            cuts = [(slice(k.row - r0, k.row - r0 + TILE), slice(k.col - c0, k.col - c0 + TILE)) for k in block.tiles]
            tiles = [model.normalise(pixels[:, rows, cols], valid[rows, cols]) for rows, cols in cuts if valid[rows, cols].any()]
            batches += [np.stack(tiles[i:i + options.batch_size]) for i in range(0, len(tiles), options.batch_size)]
    return batches


def child_real(scene: str, checkpoint: str, batch_size: int, precision: str, device: str = "cpu", repeats: int = 3) -> None:
    """Real model: lsmap's end-to-end inference (``predict_scene``, model build included) against
    the pure forward of exactly the same batches (prepared, already on the device), after one
    warm-up of each, ``repeats`` pairs in ABBA order (so that a drifting load biases neither),
    medians; then the forward without ``channels_last`` on two batches."""
    import torch

    from lsmap.checkpoint import load_checkpoint
    from lsmap.device import available_cores, resolve_devices
    from lsmap.predict import InferenceOptions, TileModel, predict_scene

    ckpt = load_checkpoint(checkpoint)
    options = InferenceOptions(tile_size=TILE, overlap_px=OVERLAP, batch_size=batch_size, device=device,
                               precision=precision, progress=False)
    devices = resolve_devices(device)
    model = TileModel(ckpt, str(devices[0]), precision, available_cores())  # the engine's CPU worker: all cores
    cuda = model.device.type == "cuda"
    batches = engine_batches(scene, ckpt, model, options, len(devices))
    n_tiles = sum(len(b) for b in batches)

    def synchronize() -> None:
        if cuda:
            torch.cuda.synchronize()

    def forward(channels_last: bool = True, subset: int | None = None) -> float:
        """tiles/s of the model alone over the batches (or the first ``subset``), inputs on the device."""
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model.model = model.model.to(memory_format=fmt)
        inputs = [torch.from_numpy(b).to(model.device).contiguous(memory_format=fmt) for b in batches[:subset]]
        synchronize()
        started = time.perf_counter()
        for x in inputs:
            model.probabilities(x)
        synchronize()
        return sum(len(x) for x in inputs) / (time.perf_counter() - started)

    def blended() -> tuple[float, int]:
        run = predict_scene(scene, checkpoint, lambda block, probability: None, options, checkpoint=ckpt)
        synchronize()
        return run.tiles_run / run.seconds, run.tiles_run

    forward()  # warm-up: oneDNN / cuDNN kernel choice for each batch shape, caches, clocks
    _, tiles_run = blended()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    forwards, blends = [], []
    for i in range(repeats):
        if i % 2 == 0:
            forwards.append(forward())
            blends.append(blended()[0])
        else:
            blends.append(blended()[0])
            forwards.append(forward())
    gpu_peak_gb = torch.cuda.max_memory_allocated() / 1e9 if cuda else 0.0
    built = time.perf_counter()  # what each end-to-end run spends before its first tile (warm)
    TileModel(ckpt, str(devices[0]), precision, available_cores())
    synchronize()
    build_s = time.perf_counter() - built
    forward(channels_last=False, subset=1)  # warm-up of the contiguous kernels
    contiguous = forward(channels_last=False, subset=2)
    ratios = [b / f for b, f in zip(blends, forwards)]
    print(json.dumps({"tiles": tiles_run, "forward_tiles": n_tiles, "batches": len(batches), "forwards": forwards,
                      "blends": blends, "ratios": ratios, "forward": float(np.median(forwards)),
                      "blended": float(np.median(blends)), "ratio": float(np.median(ratios)),
                      "forward_contiguous": contiguous, "build_s": build_s, "precision": str(model.dtype or "fp32").replace("torch.", ""),
                      "own_peak_gb": own_peak_gb(), "gpu_peak_gb": gpu_peak_gb, "device": ",".join(map(str, devices))}))


# ---------------------------------------------------------------------------------------- main


def real_model(args, me: list[str], env: dict, work: Path) -> None:
    """Improved DeepLabV3+ (random weights: speed only) end to end against its pure forward."""
    import torch

    from lsmap.checkpoint import Checkpoint, InputSpec, save_checkpoint
    from lsmap.models import build_model

    torch.manual_seed(0)
    kwargs = dict(in_channels=4, num_classes=1, backbone=args.backbone)
    real = save_checkpoint(Checkpoint("improved_deeplabv3plus", kwargs, build_model("improved_deeplabv3plus", **kwargs).state_dict(),
                                      InputSpec(["blue", "green", "red", "nir"], MEAN, STD, TILE)), work / "real.pt")
    scene = feed_scene(args.workdir, args.real_size)
    tiles_region = PAPER_AREA_KM2 / ((TILE - OVERLAP) * 2 / 1000) ** 2
    for batch in args.real_batch:
        started = time.perf_counter()
        f = run_child([*me, "real", str(scene), str(real), str(batch), args.real_precision, args.device,
                       str(args.real_repeats)], env)
        print(f"\nimproved DeepLabV3+/{args.backbone}, {f['precision']}, batch {batch}, {args.real_size}² px "
              f"({f['tiles']} tiles in {f['batches']} batches), {f['device']}, {len(f['ratios'])} pairs after a warm-up "
              f"({time.perf_counter() - started:.0f} s):")
        if f["forward_tiles"] != f["tiles"]:
            print(f"  (the forward ran {f['forward_tiles']} tiles, the engine {f['tiles']}: not the same tiles)")
        print(f"  pure forward       : {f['forward']:.3f} tiles/s median  ({' '.join(f'{v:.3f}' for v in f['forwards'])})")
        print(f"  end to end         : {f['blended']:.3f} tiles/s median  ({' '.join(f'{v:.3f}' for v in f['blends'])})")
        print(f"  end to end / forward: {f['ratio']:.3f} median of the pairs  ({' '.join(f'{v:.3f}' for v in f['ratios'])}; "
              f"target >= 0.9)")
        steady = f["tiles"] / max(f["tiles"] / f["blended"] - f["build_s"], 1e-9)
        print(f"  model build        : {f['build_s']:.2f} s per end-to-end run (warm); without it "
              f"{steady:.3f} tiles/s, {steady / f['forward']:.3f} x the forward")
        print(f"  forward without channels_last: {f['forward_contiguous']:.3f} tiles/s "
              f"(channels_last {f['forward'] / f['forward_contiguous']:.2f}x)")
        if f["gpu_peak_gb"]:
            print(f"  peak GPU memory    : {f['gpu_peak_gb']:.2f} GB (end-to-end runs)")
        print(f"  peak RSS           : {f['tree_peak_gb']:.2f} GB")
        print(f"  implied time for {PAPER_AREA_KM2:,} km² at 2 m ({tiles_region:,.0f} tiles): "
              f"{tiles_region / f['blended'] / 60:.1f} min end to end", flush=True)



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[8192, 16384], help="zero-cost feed scenes (none: skip)")
    parser.add_argument("--real-size", type=int, default=2048, help="scene side for the real model (0: skip)")
    parser.add_argument("--real-batch", type=int, nargs="+", default=[4])
    parser.add_argument("--real-repeats", type=int, default=3, help="forward/blended pairs after the warm-up (median)")
    parser.add_argument("--device", default="cpu", help="device of lsmap after and of the real model (cpu, cuda, cuda:N)")
    parser.add_argument("--real-precision", default="bf16")
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--skip-torchgeo", action="store_true")
    parser.add_argument("--before", metavar="REV", help="also measure the lsmap of this git revision (97e111c: the "
                        "engine before issue 15), as shipped and with GDAL_CACHEMAX=256")
    parser.add_argument("--workdir", type=Path, default=CACHE / "scenes")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        {"lsmap": lambda: child_lsmap(*rest), "torchgeo": lambda: child_torchgeo(*rest),
         "real": lambda: child_real(rest[0], rest[1], int(rest[2]), rest[3], rest[4], int(rest[5]))}[kind]()
        return

    args.workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="lsmap-bench-feed-"))
    checkpoint = pointwise_checkpoint(work / "pointwise.pt")
    print(f"load average at start: {' '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} cores")
    me = [sys.executable, __file__, "--child"]
    after_env = {"PYTHONPATH": python_path(ROOT)}
    engines: list[tuple[str, list[str], dict]] = []
    if args.before:
        before = str(before_tree(args.before))
        engines += [("lsmap before", me, {"PYTHONPATH": python_path(before)}),
                    ("lsmap before+cache", me, {"PYTHONPATH": python_path(before), "GDAL_CACHEMAX": "256"})]
    engines.append(("lsmap after", me, after_env))
    if not args.skip_torchgeo:
        python, why = torchgeo_python()
        if python is None:
            print(f"torchgeo: not measured: {why}")
        else:
            engines.append(("torchgeo", [str(python), __file__, "--child"], {}))
    for size in args.sizes:
        made = time.perf_counter()
        scene = feed_scene(args.workdir, size)
        print(f"\n{size:,}² px (scene ready in {time.perf_counter() - made:.0f} s) 4-band uint16 DEFLATE, 1x1-conv model, tile {TILE} overlap {OVERLAP} batch {BATCH}, fp32, "
              f"CPU (lsmap after: {args.device}):")
        figures = {}
        for name, command, env in engines:
            kind = "torchgeo" if name == "torchgeo" else "lsmap"
            extra = [args.device] if name == "lsmap after" else []
            try:
                figures[name] = f = run_child([*command, kind, str(scene), str(checkpoint), *extra], env)
            except RuntimeError as exc:
                print(f"  {name:<19}: failed: {str(exc).splitlines()[-1]}")
                continue
            print(f"  {name:<19}: {f['tiles_per_s']:7.1f} tiles/s  peak RSS {f['tree_peak_gb']:.2f} GB "
                  f"(own {f['own_peak_gb']:.2f} GB)  {f['tiles']} tiles in {f['seconds']:.1f} s", flush=True)
            if "uncovered_px" in f:
                print(f"  {'':<19}  map check: {f['uncovered_px']} px not covered, max |p - model(pixel)| on the "
                      f"edges {f['edge_max_abs_error']:.1e} (torchgeo {f['torchgeo']})", flush=True)
        if "lsmap after" in figures and "torchgeo" in figures:
            print(f"  after / torchgeo   : {figures['lsmap after']['tiles_per_s'] / figures['torchgeo']['tiles_per_s']:.2f}x "
                  f"(target >= 2.5x at <= 2.5 GB; feed target >= 150 tiles/s)")
        if "lsmap after" in figures and "lsmap before" in figures:
            print(f"  after / before     : {figures['lsmap after']['tiles_per_s'] / figures['lsmap before']['tiles_per_s']:.2f}x")
    if args.real_size:
        real_model(args, me, after_env, work)
    print(f"\nload average at end: {' '.join(f'{v:.1f}' for v in os.getloadavg())}; "
          f"{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
