#!/usr/bin/env python
"""Draw exact vs sensor-model depth (render.depth_sensor) of a few synthetic hands into one PNG.

Example:
    python tools/show_depth_sensor.py --out docs/images/depth_sensor.png
    python tools/show_depth_sensor.py --data data/synth --count 6 --sensors kinect_v1,strong
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/images/depth_sensor.png", help="PNG to write")
    parser.add_argument("--data", default="", help="shard directory with exact depth (default: render a few)")
    parser.add_argument("--count", type=int, default=5, help="hands to show (default: 5)")
    parser.add_argument("--size", type=int, default=64, help="image size when rendering (default: 64)")
    parser.add_argument("--sensors", default="kinect_v1,strong", help="comma-separated presets of render.depth_sensor")
    args = parser.parse_args(argv)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from datasets import build_dataset
    from render.depth_sensor import apply_depth_sensor, sensor_config, sensor_rng

    sensors = [s for s in args.sensors.split(",") if s]
    for name in sensors:
        sensor_config(name)  # unknown names list the known ones
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if not data:
            os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
            from render.sampling import SynthConfig
            from render.synth import GenerationJob, generate

            data = str(Path(tmp) / "synth")
            generate(GenerationJob(out=Path(data), num=args.count, seed=0, shard_size=args.count, workers=1,
                                   config=SynthConfig(image_size=args.size), command="tools/show_depth_sensor.py"),
                     progress_bar=False, log=lambda message: None)
        dataset = build_dataset("shards", data)
        count = min(args.count, len(dataset))
        fig, axes = plt.subplots(1 + len(sensors), count, figsize=(2.2 * count, 2.2 * (1 + len(sensors))),
                                 squeeze=False)
        for col in range(count):
            item = dataset[col]
            depth, K = item["depth"][0].numpy(), item["K"].numpy()
            valid = depth[depth > 0]
            lo, hi = (valid.min() - 0.01, valid.max() + 0.01) if len(valid) else (0, 1)
            rows = [("exact", depth)] + [(n, apply_depth_sensor(depth, K, sensor_config(n), sensor_rng(0, col)))
                                         for n in sensors]
            for row, (name, image) in enumerate(rows):
                shown = np.ma.masked_where(image <= 0, image)
                ax = axes[row][col]
                ax.imshow(shown, cmap="viridis", vmin=lo, vmax=hi, interpolation="nearest")
                ax.set_facecolor("black")
                ax.set_xticks([]), ax.set_yticks([])
                if col == 0:
                    ax.set_ylabel(name)
        fig.suptitle("exact depth vs sensor-model depth (black: no data)")
        fig.tight_layout()
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
