"""Machine-readable benchmark results: every ``benchmarks/bench_*.py`` writes its figures with ``--json PATH``.

The pattern (issue 12): a script keeps its markdown table for people and also writes one JSON
object for programs, holding its figures under stable keys (e.g. ``{"ratio": {...}}``), the
settings it ran with, and :func:`environment` — what the machine was doing, since the
machines these run on are shared (the load average before and after the run is recorded).
The file appears atomically (``datasets.atomic``) and never holds NaN or infinity.

Usage::

    parser.add_argument("--json", metavar="PATH", help=JSON_HELP)
    load_before = os.getloadavg()
    ...
    if args.json:
        write_json(args.json, {"ratio": ratios, "settings": vars(args),
                               "environment": environment(load_before)})
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from datasets.atomic import write_text_atomic  # noqa: E402

JSON_HELP = "also write the figures as JSON to this file"


def environment(load_before: tuple[float, float, float] | None = None) -> dict:
    """Where and when the figures were measured: versions, CPU, threads and the machine's load average."""
    import torch

    info = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    if load_before is not None:
        info["load_average_before"] = [round(x, 2) for x in load_before]
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def write_json(path: str | Path, results: dict) -> Path:
    """Write ``results`` as indented JSON to ``path`` atomically; NaN or infinity is refused (ValueError)."""
    return write_text_atomic(path, json.dumps(results, indent=2, sort_keys=True, allow_nan=False) + "\n")


def publish(script: str, argv: list[str] | None, table: str, results: dict, settings: dict, out: str | None,
            json_path: str | None, load_before: tuple[float, float, float]) -> None:
    """Print ``table``; append it under the command line to the markdown file ``out``; write ``results``
    (with the command, ``settings`` and :func:`environment`) to ``json_path``."""
    print(table)
    command = f"python {script} " + " ".join(argv if argv is not None else sys.argv[1:])
    if out:
        previous = open(out).read() if os.path.exists(out) else ""
        write_text_atomic(out, f"{previous}\n### `{command}`\n\n{table}\n")
    if json_path:
        write_json(json_path, {**results, "command": command, "settings": settings,
                               "environment": environment(load_before)})
