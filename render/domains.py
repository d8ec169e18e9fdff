"""The two synthetic domains: ``source`` (the default renders) and a shifted ``target``.

The target differs in appearance only (hand poses, shapes, cameras are drawn as in the source):
darker skin tones, dimmer and flatter lighting and other procedural background families. The
experiments and the demo use it as the stand-in for a real target set; ``tools/render_synth.py
--domain target`` renders it.
"""
from __future__ import annotations

#: procedural background families of each domain
SOURCE_BACKGROUNDS = ("noise", "gradient", "texture")
TARGET_BACKGROUNDS = ("stripes", "shapes")
DOMAINS = ("source", "target")


def domain_options(domain: str) -> tuple[dict, str]:
    """``SynthConfig`` options of the ``source`` or ``target`` domain and a description of the shift."""
    from render.sampling import SKIN_TONES

    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; expected one of {DOMAINS}")
    if domain == "source":
        return {"background_families": SOURCE_BACKGROUNDS}, "default"
    options = {"skin_tones": SKIN_TONES[4:], "light_intensity_range": (0.8, 1.8), "ambient_range": (0.45, 0.7),
               "background_families": TARGET_BACKGROUNDS}
    description = (f"darker skin tones (the 4 darkest of 8), dimmer and flatter lighting, other procedural "
                   f"background families ({', '.join(TARGET_BACKGROUNDS)}; source: {', '.join(SOURCE_BACKGROUNDS)})")
    return options, description
