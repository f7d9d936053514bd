"""``speechunits synthesis-results``: the unit-to-speech RESULTS.md table and spectrogram figure.

Example::

    speechunits synthesis-results --reports exp/u2s/eval/{truth,griffin_lim,mel,units}.json \\
        --out exp/u2s/RESULTS.md --figure exp/u2s/spectrograms.png --utt 1635-29490-0000 \\
        --panel "ground truth=data/test-clean" --panel "mel vocoder=exp/u2s/synth/mel/test-clean"

The table has one row per report, in the given order. The figure stacks the log-mel
spectrograms of one utterance, one panel per ``LABEL=DATA_DIR``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speechunits.io_utils import atomic_write_text
from speechunits.features.spectrogram_plot import plot_spectrograms
from speechunits.unit2speech.results import audio_of, load_reports, markdown_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reports", nargs="+", required=True, type=Path, help="evaluate-synthesis JSON reports")
    parser.add_argument("--out", required=True, type=Path, help="markdown file to write (RESULTS.md)")
    parser.add_argument("--title", default="Unit-to-speech results", help="heading of the markdown file")
    parser.add_argument("--notes", type=Path, help="markdown text appended under the table (setup, commands)")
    parser.add_argument("--figure", type=Path, help="spectrogram figure (PNG) to write")
    parser.add_argument("--utt", help="utterance id of the figure")
    parser.add_argument("--panel", action="append", default=[], metavar="LABEL=DATA_DIR",
                        help="one spectrogram panel (repeatable, top to bottom)")


def run(args: argparse.Namespace) -> int:
    reports = load_reports(args.reports)
    text = f"# {args.title}\n\n" + markdown_table(reports)
    if args.figure is not None:
        if not args.utt or not args.panel:
            print("synthesis-results: --figure needs --utt and at least one --panel", file=sys.stderr)
            return 2
        panels = []
        for spec in args.panel:
            label, sep, data = spec.partition("=")
            if not sep:
                print(f"synthesis-results: --panel {spec!r} is not LABEL=DATA_DIR", file=sys.stderr)
                return 2
            panels.append((label, audio_of(data, args.utt)))
        plot_spectrograms(panels, args.figure, title=f"log-mel spectrograms of {args.utt}")
        text += f"\n![spectrograms of {args.utt}]({args.figure.name})\n"
    if args.notes is not None:
        text += "\n" + args.notes.read_text(encoding="utf-8")
    atomic_write_text(args.out, text)
    print(text)
    return 0
