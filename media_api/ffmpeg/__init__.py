"""The FFmpeg layer: the only code that probes, seeks, decodes, encodes or runs ffmpeg.

Split by job: ``probe`` (probe and frame index), ``index`` (the index structure),
``frames`` (exact frame reading), ``process`` (ffmpeg process lifecycle and job pool),
``encode`` (segments and clips), ``overlays`` (box/label rendering).
"""
