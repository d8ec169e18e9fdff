#!/usr/bin/env python
"""Render a synthetic MANO hand dataset (RGB, depth, mask, 3D/2D joints) into HDF5 shards.

Resumable (rerun the same command to finish what is missing), deterministic (same seed and
settings → bitwise the same shard files for any --workers, flag order or interruption; the
command lines are recorded in manifest.json's "invocations"), shardable across machines.

Example:
    python tools/render_synth.py --out data/synth --num 50000 --seed 0 --workers 2
    # job array of 8 machines filling one directory:
    python tools/render_synth.py --out /shared/synth --num 50000 --shard-index $I --shard-count 8
"""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import (add_progress_switch, apply_progress_switch, positive_int, run_tool, tool_parser,  # noqa: E402
                        writing_into)
from render.gl import GLUnavailableError  # noqa: E402


def parse_args(argv: list[str] | None = None):
    parser = tool_parser(__doc__)
    parser.add_argument("--out", required=True, type=Path, help="dataset directory (created if missing)")
    parser.add_argument("--num", type=positive_int, default=50000, help="number of samples")
    parser.add_argument("--seed", type=int, default=0, help="global seed")
    parser.add_argument("--workers", type=positive_int, default=1, help="worker processes")
    parser.add_argument("--shard-size", type=positive_int, default=1000, help="samples per shard")
    parser.add_argument("--size", type=positive_int, default=256, help="image size in pixels")
    parser.add_argument("--backgrounds", help="folder of background images (default: procedural backgrounds)")
    parser.add_argument("--skin-texture", help="image whose colours replace the skin palette")
    parser.add_argument("--mano", help="MANO_RIGHT.pkl/.npz (default: the embedded open hand)")
    parser.add_argument("--shards", help="render only these shards, e.g. '3-7,9' (default: all)")
    parser.add_argument("--shard-index", type=int,
                        help="this job's index in a job array, 0 … count-1 (with --shard-count)")
    parser.add_argument("--shard-count", type=positive_int, help="number of jobs in the job array")
    parser.add_argument("--domain", choices=("source", "target"),
                        help="a domain of the experiments (render.domains): source (background families noise, "
                             "gradient, texture) or its shifted target (darker skin, dimmer light, stripes and "
                             "shapes backgrounds); default: every background family and skin tone")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a SynthConfig field, VALUE as JSON, e.g. --set margin=0.1 "
                             "--set 'pose_range=[-1.5,1.5]' --set background_families=noise,stripes (repeatable)")
    add_progress_switch(parser)
    args = parser.parse_args(argv)
    if (args.shard_index is None) != (args.shard_count is None):
        parser.error("--shard-index and --shard-count go together")
    if args.shards is not None and args.shard_index is not None:
        parser.error("use either --shards or --shard-index/--shard-count, not both")
    return args


def parse_overrides(items: list[str]) -> dict:
    """``["margin=0.1", "rotation=\"none\""]`` → ``{"margin": 0.1, "rotation": "none"}`` (bare words are strings)."""
    values = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, found {item!r}")
        try:
            values[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            values[key.strip()] = text
    return values


def _main(argv: list[str] | None) -> int:
    args = parse_args(argv)
    show_progress = apply_progress_switch(args)
    from render.domains import domain_options
    from render.sampling import SynthConfig
    from render.synth import GenerationJob, generate, job_array_shards, parse_shard_ranges, plan_shards

    overrides = dict(domain_options(args.domain)[0] if args.domain else {}, image_size=args.size, backgrounds=args.backgrounds,
                     skin_texture=args.skin_texture)
    overrides.update(parse_overrides(args.set))
    config = SynthConfig.from_dict(overrides)
    num_shards = len(plan_shards(args.num, args.shard_size))
    shards = None
    if args.shards is not None:
        shards = parse_shard_ranges(args.shards, num_shards)
    elif args.shard_index is not None:
        shards = job_array_shards(args.shard_index, args.shard_count, num_shards)
    command = shlex.join([sys.executable, *sys.argv]) if argv is None else shlex.join(argv)
    job = GenerationJob(out=args.out, num=args.num, seed=args.seed, shard_size=args.shard_size,
                        workers=args.workers, config=config, mano=args.mano, shards=shards, command=command)
    with writing_into(args.out):
        manifest = generate(job, progress_bar=show_progress)
    print(f"{args.out}: {manifest.get('num_samples', 0)} samples in {len(manifest['shards'])} shards")
    return 0


def main(argv: list[str] | None = None) -> int:
    # SynthError, BackgroundError, ShardError, ManoFileError and bad config values are ValueErrors.
    return run_tool(_main, argv, extra_errors=(GLUnavailableError,))


if __name__ == "__main__":
    sys.exit(main())
