"""``speechunits segment``: syllable segments of audio files with a Sylber model.

Prints (``--out -``, the default) or writes (``--out DIR``: ``DIR/<stem>.json|tsv``) the
segments of each file in seconds. ``--format json`` gives one JSON object per file
(``file``, ``num_samples`` and ``sample_rate`` of the audio as the model saw it (resampled to
the model's rate), ``frame_rate``, ``shift``, ``segments`` in seconds, ``frames`` as
``[start, end)`` frame indices); ``--format tsv`` gives ``file<TAB>start<TAB>end`` lines.
The boundary shift (``--shift SECONDS``, default the checkpoint's, stored by
``tune-segmentation --export``, else 0) is added to every boundary: exactly in seconds, by
whole frames in ``frames``, both clipped to the audio (:mod:`speechunits.sylber.boundary_shift`).
``--plot out.png`` (one file only) draws waveform, log-mel spectrogram and frame norms with the
segments. Files whose audio cannot be read are reported on stderr and make the exit status 2;
the other files are still processed. A one-line summary (files, segments, seconds of audio,
where the output went) ends on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from speechunits.audio import load_audio
from speechunits.errors import ConfigError, SpeechUnitsError
from speechunits.io_utils import atomic_write_text
from speechunits.sylber.thresholds import add_threshold_arguments

if TYPE_CHECKING:
    from speechunits.sylber.segmenter import SegmentationResult


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files")
    parser.add_argument("--model", required=True, help="checkpoint: fairseq .pt, HF dir, torchaudio .pt or Lightning .ckpt")
    parser.add_argument("--out", default="-", help="output directory, or - for standard output (default)")
    parser.add_argument("--format", choices=("json", "tsv"), default="json")
    parser.add_argument("--plot", default=None, help="write a segmentation figure (PNG/PDF/SVG) for the single FILE")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add_threshold_arguments(parser)
    parser.add_argument("--batch-seconds", type=float, default=60.0, help="audio per model batch")


def format_result(name: str, result: SegmentationResult, fmt: str) -> str:
    """Text of one file's segments in ``json`` (one line) or ``tsv``."""
    if fmt == "json":
        return json.dumps({
            "file": name, "num_samples": result.num_samples, "sample_rate": result.sample_rate,
            "frame_rate": result.frame_rate, "shift": result.shift,
            "segments": [[round(float(s), 6), round(float(e), 6)] for s, e in result.segments_seconds],
            "frames": result.segments_frames.tolist(),
        }) + "\n"
    return "".join(f"{name}\t{s:.3f}\t{e:.3f}\n" for s, e in result.segments_seconds)


def run(args: argparse.Namespace) -> int:
    from speechunits.sylber.segmenter import Segmenter

    if args.plot is not None and len(args.files) != 1:
        raise ConfigError(None, f"--plot draws one file, got {len(args.files)} files")
    out_dir = None if args.out == "-" else Path(args.out)
    if out_dir is not None:
        stems = [Path(f).stem for f in args.files]
        dupes = sorted({s for s in stems if stems.count(s) > 1})
        if dupes:
            raise ConfigError(out_dir, f"several input files share the name(s) {dupes}; their outputs would collide")
    seg = Segmenter(args.model, device=args.device, norm_threshold=args.norm_threshold,
                    merge_threshold=args.merge_threshold, reset_count=args.reset_count, shift=args.shift)
    names, waves, failed = [], [], 0
    for f in args.files:
        try:
            waves.append(load_audio(f, target_sr=seg.sample_rate))
            names.append(f)
        except SpeechUnitsError as err:
            print(f"error: {err}", file=sys.stderr)
            failed += 1
    results = seg.segment_many(waves, seg.sample_rate, batch_seconds=args.batch_seconds,
                               progress=len(waves) > 1 and sys.stderr.isatty())
    suffix = ".json" if args.format == "json" else ".tsv"
    for name, result in zip(names, results):
        text = format_result(name, result, args.format)
        if out_dir is None:
            sys.stdout.write(text)
        else:
            atomic_write_text(out_dir / (Path(name).stem + suffix), text)
    if args.plot is not None and results:
        from speechunits.sylber.plot import plot_segmentation

        plot_segmentation(waves[0], results[0], args.plot, norm_threshold=seg.norm_threshold, title=Path(names[0]).name)
    sys.stdout.flush()
    seconds = sum(len(w) for w in waves) / seg.sample_rate
    where = "standard output" if out_dir is None else str(out_dir)
    print(f"segment: {len(results)} file(s), {sum(r.num_segments for r in results)} segments, {seconds:.1f} s of "
          f"audio -> {where}; {failed} unreadable; shift {1000 * seg.shift:+.0f} ms", file=sys.stderr)
    return 2 if failed else 0
