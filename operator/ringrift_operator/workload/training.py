"""Training job of the sample workload: turn a config's data into a (fake) model file.

Reads the exported datasets ``training/<config>/*.jsonl`` under the data directory, or the games
themselves when nothing was exported, and writes
``<output>/models/<config>/<job>-a<attempt>-g<N>.pt``, whose bytes derive only from the data, the
parent model and the generation. In a distributed run
(``WORLD_SIZE`` > 1) only rank 0 writes the model, as with torchrun. Called by ``workload.main``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from ringrift_operator.api.contract import (
    GAMES_SUBDIR,
    MODELS_SUBDIR,
    TRAINING_SUBDIR,
    JobKind,
    ModelRef,
    WorkloadResult,
)
from ringrift_operator.workload.export import SAMPLE_KEYS, load_config_games
from ringrift_operator.workload.games import (
    BadInputError,
    attempt_stem,
    list_data_files,
    load_json_object,
    sha256_bytes,
    write_atomic,
)

MODEL_SUFFIX = ".pt"
MODEL_MAGIC = b"RINGRIFT-SAMPLE-MODEL\x00"
MODEL_FORMAT = "ringrift.sample-model/v1"
WEIGHT_BLOCKS = 128  # 128 x 32 bytes of fake weights
_GENERATION = re.compile(r"(?:^|[-_.])g(\d+)$")


def parse_generation(model_path: str) -> int | None:
    """The generation in a model file name (``…-g3.pt`` → 3); None when there is none."""
    if not model_path:
        return None
    match = _GENERATION.search(PurePosixPath(model_path.removeprefix("file://")).stem)
    return int(match.group(1)) if match else None


def next_generation(model_path: str) -> int:
    """Generation of the model trained from ``model_path``: its generation + 1, else 1."""
    parent = parse_generation(model_path)
    return 1 if parent is None else parent + 1


def model_path(
    *, output_dir: Path, config: str, job_name: str, attempt: int, generation: int
) -> Path:
    stem = attempt_stem(job_name=job_name, attempt=attempt)
    return output_dir / MODELS_SUBDIR / config / f"{stem}-g{generation}{MODEL_SUFFIX}"


def build_model_bytes(
    *, config: str, generation: int, parent: str, samples: int, data_sha256: str
) -> bytes:
    """A fake model: magic, a JSON header, then weights expanded from the data hash."""
    header = json.dumps(
        {
            "format": MODEL_FORMAT,
            "config": config,
            "generation": generation,
            "parent": parent or None,
            "samples": samples,
            "dataSha256": data_sha256,
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    weights = b"".join(
        hashlib.sha256(f"{data_sha256}/{generation}/{block}".encode()).digest()
        for block in range(WEIGHT_BLOCKS)
    )
    return MODEL_MAGIC + len(header).to_bytes(4, "big") + header + weights


def load_training_data(*, data_dir: Path, config: str) -> tuple[int, str, str]:
    """(samples, sha256 of the data, what was read): the exported datasets when there are any,
    else the games. Raises BadInputError when there is neither."""
    digest = hashlib.sha256()
    samples = 0
    datasets = list_data_files(data_dir / TRAINING_SUBDIR / config)
    for path in datasets:
        digest.update(path.name.encode() + b"\n")
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            sample = load_json_object(line)
            if sample is not None and all(key in sample for key in SAMPLE_KEYS):
                samples += 1
                digest.update(line.encode() + b"\n")
    if samples:
        return samples, digest.hexdigest(), f"{len(datasets)} dataset(s)"
    games, _ = load_config_games(data_dir=data_dir, config=config)
    for game in games:
        digest.update(game.model_dump_json(by_alias=True).encode() + b"\n")
        samples += game.length
    if samples:
        return samples, digest.hexdigest(), f"{len(games)} games"
    where = f"{TRAINING_SUBDIR}/{config} or {GAMES_SUBDIR}/{config}"
    raise BadInputError(f"no {config} training data under {data_dir.as_posix()} ({where})")


def run_training(
    *,
    data_dir: Path,
    output_dir: Path,
    job_name: str,
    attempt: int,
    config: str,
    parent_model: str,
    world_size: int,
    node_rank: int,
    pace: Callable[[float], None],
) -> WorkloadResult:
    """Train (fake) and write the model; non-zero ranks of a distributed run only report ok."""
    samples, data_sha256, source = load_training_data(data_dir=data_dir, config=config)
    pace(1.0)
    if node_rank != 0:
        return WorkloadResult(
            kind=JobKind.TRAINING,
            message=f"rank {node_rank}/{world_size}: trained on {samples} samples; "
            "rank 0 writes the model",
        )
    generation = next_generation(parent_model)
    data = build_model_bytes(
        config=config,
        generation=generation,
        parent=parent_model,
        samples=samples,
        data_sha256=data_sha256,
    )
    path = model_path(
        output_dir=output_dir,
        config=config,
        job_name=job_name,
        attempt=attempt,
        generation=generation,
    )
    write_atomic(path, data)
    return WorkloadResult(
        kind=JobKind.TRAINING,
        samples=samples,
        files=[path.relative_to(data_dir).as_posix()],
        model=ModelRef(
            uri=path.absolute().as_uri(), sha256=sha256_bytes(data), generation=generation
        ),
        message=f"generation {generation} of {config} from {samples} samples ({source})",
    )
