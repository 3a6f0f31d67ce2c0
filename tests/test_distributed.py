"""The distributed engine: `lsmap map --scheduler HOST:PORT` on a real `dask scheduler` and two
`dask worker` processes on localhost gives the threaded run's map, with both workers running blocks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from lsmap.mapping import MappingOptions, map_scene
from test_mapping import tiny_checkpoint

# 718 x 791 px in blocks of about 256 px: 9 blocks of 128 px tiles, so each worker gets several.
SMALL_BLOCKS = dict(tile_size=128, overlap_px=32, chunk_px=256, batch_size=4, precision="fp32", device="cpu",
                    progress=False, workers=1)
DASK = [sys.executable, "-m", "dask"]
START_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="module")
def landsat(shared_data):
    return shared_data / "scenes" / "landsat7_rgb_byte.tif"


def map_probability(scene: Path, checkpoint: Path, out: Path, scheduler: str | None = None):
    """`lsmap map` through its Python API (mapping.scheduler = `--scheduler`): the probability raster."""
    map_scene(scene, checkpoint, out, options=MappingOptions(scheduler=scheduler, **SMALL_BLOCKS))
    with rasterio.open(out / "probability.tif") as src:
        return src.read(1), src.nodata, (src.crs, src.transform, src.shape)


def wait_for_file(path: Path, processes: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not path.exists():
        assert all(p.poll() is None for p in processes), "a dask process exited while starting"
        assert time.monotonic() < deadline, f"{path} not written within {START_TIMEOUT_S} s"
        time.sleep(0.2)


@pytest.fixture
def dask_cluster(tmp_path, project_root):
    """`dask scheduler` and two single-thread `dask worker` processes; stopped (by PID) afterwards."""
    from distributed import Client

    env = {**os.environ, "PYTHONPATH": str(project_root)}  # the workers unpickle lsmap's functions
    scheduler_file = tmp_path / "scheduler.json"
    logs = [open(tmp_path / f"{name}.log", "w") for name in ("scheduler", "worker1", "worker2")]
    processes = [subprocess.Popen([*DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                   "--scheduler-file", str(scheduler_file)], env=env, stdout=logs[0], stderr=logs[0])]
    try:
        wait_for_file(scheduler_file, processes)
        for log in logs[1:]:
            processes.append(subprocess.Popen([*DASK, "worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1",
                                               "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"],
                                              env=env, stdout=log, stderr=log))
        address = json.loads(scheduler_file.read_text())["address"]
        with Client(address, timeout=START_TIMEOUT_S) as client:
            client.wait_for_workers(2, timeout=START_TIMEOUT_S)
            yield address, client
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        for log in logs:
            log.close()
        assert all(p.poll() is not None for p in processes), "a dask process is still running"


def test_two_dask_worker_processes_map_the_scene_like_the_threaded_run(dask_cluster, landsat, checkpoint, tmp_path):
    address, client = dask_cluster
    threaded, nodata, grid = map_probability(landsat, checkpoint, tmp_path / "threaded")
    distributed, _, distributed_grid = map_probability(landsat, checkpoint, tmp_path / "distributed", scheduler=address)

    blocks_per_worker = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert len(blocks_per_worker) == 2 and all(count >= 1 for count in blocks_per_worker.values()), blocks_per_worker
    # 9 blocks at chunk_px 256 (TileGrid); fewer only if predict.py sizes blocks by the workers itself
    assert sum(blocks_per_worker.values()) >= 3

    assert grid == distributed_grid
    valid = threaded != nodata
    assert valid.mean() > 0.5 and np.array_equal(valid, distributed != nodata)
    assert np.abs(threaded - distributed).max() <= 1e-6


def test_each_workers_torch_threads_come_from_its_own_host_and_threads():
    """Not os.cpu_count() of the client divided by the cluster's threads: a worker shares its own
    host's cores with the workers on that host, in proportion to its dask threads."""
    from lsmap.predict import worker_plan

    nthreads = {"tcp://10.0.0.1:4001": 1, "tcp://10.0.0.1:4002": 1,  # node 1: 2 one-thread GPU workers
                "tcp://10.0.0.2:4001": 1,  # node 2: one worker
                "tcp://10.0.0.3:4001": 2, "tcp://10.0.0.3:4002": 1}  # node 3: 2 + 1 threads on 6 cores
    cores = {"tcp://10.0.0.1:4001": 16, "tcp://10.0.0.1:4002": 16, "tcp://10.0.0.2:4001": 16,
             "tcp://10.0.0.3:4001": 6, "tcp://10.0.0.3:4002": 6}
    plan = worker_plan(nthreads, cores)
    assert plan["tcp://10.0.0.1:4001"] == (8, 0) and plan["tcp://10.0.0.1:4002"] == (8, 1)  # rank picks the GPU
    assert plan["tcp://10.0.0.2:4001"] == (16, 0)
    assert plan["tcp://10.0.0.3:4001"][0] == 4 and plan["tcp://10.0.0.3:4002"][0] == 2
    # pinned by SLURM (srun --cpus-per-task=4): each takes its own 4 cores
    assert worker_plan({"tcp://10.0.0.4:1": 1, "tcp://10.0.0.4:2": 1}, {"tcp://10.0.0.4:1": 4, "tcp://10.0.0.4:2": 4},
                       {"tcp://10.0.0.4:1": True, "tcp://10.0.0.4:2": True})["tcp://10.0.0.4:1"] == (4, 0)
    # two one-thread workers on this 2-core machine: one torch thread each
    assert worker_plan({"tcp://127.0.0.1:1": 1, "tcp://127.0.0.1:2": 1}, {"tcp://127.0.0.1:1": 2, "tcp://127.0.0.1:2": 2}) == \
        {"tcp://127.0.0.1:1": (1, 0), "tcp://127.0.0.1:2": (1, 1)}


def test_a_scene_of_one_default_block_is_cut_for_the_workers(dask_cluster, checkpoint, tmp_path):
    """1,448² px with the default chunk_px 4096 is one block; with two workers both get blocks."""
    from rasterio.transform import from_origin

    from lsmap.predict import InferenceOptions, predict_scene

    address, client = dask_cluster
    path = tmp_path / "one_block.tif"
    data = np.random.default_rng(0).integers(1, 255, (3, 1448, 1448), dtype=np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=1448, height=1448, count=3, dtype="uint8", nodata=0,
                       crs="EPSG:32648", transform=from_origin(500000, 3000000, 2, 2)) as dst:
        dst.write(data)
    before = client.run(lambda dask_worker: dask_worker.state.executed_count)
    cores = []
    run = predict_scene(path, checkpoint, lambda block, probability: cores.append(block.index),
                        InferenceOptions(tile_size=512, overlap_px=128, batch_size=4, precision="fp32", device="cpu",
                                         progress=False, scheduler=address))
    after = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert len(cores) >= 4 and run.tiles_run == run.tiles_total == 16
    assert all(after[w] > before[w] for w in after), (before, after)


def test_tta_through_dask_workers_equals_threaded_tta_and_differs_from_no_tta(dask_cluster, landsat, checkpoint):
    """--tta reaches the dask workers' model: the same views, so the threaded map to 1e-6."""
    from lsmap.predict import InferenceOptions, predict_array

    address, client = dask_cluster
    options = {key: value for key, value in SMALL_BLOCKS.items() if key != "workers"}
    threaded = predict_array(landsat, checkpoint, InferenceOptions(**options, tta="flip"))
    distributed = predict_array(landsat, checkpoint, InferenceOptions(**options, tta="flip", scheduler=address))
    plain = predict_array(landsat, checkpoint, InferenceOptions(**options, scheduler=address))

    valid = threaded >= 0
    assert valid.mean() > 0.5 and np.array_equal(valid, distributed >= 0)
    assert np.abs(threaded - distributed).max() <= 1e-6
    assert np.abs(threaded - plain)[valid].max() > 1e-3  # the random FCN is not mirror-symmetric
    assert sum(client.run(lambda dask_worker: dask_worker.state.executed_count).values()) >= 2 * 3
