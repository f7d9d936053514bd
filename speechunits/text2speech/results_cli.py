"""``speechunits tts-results``: the TTS RESULTS.md tables and figures from tts-evaluate reports.

Example::

    speechunits tts-results --reports none=exp/tts/none/eval.json VAE=exp/tts/vae/eval.json \\
        --out exp/tts/RESULTS.md --figures exp/tts/figures \\
        --attention exp/tts/vae/synth/transfer --attention-utt LJ001-0001 \\
        --contours exp/tts/vae/synth/prior_t0.3 exp/tts/vae/synth/prior_t1.0 --contour-utt LJ001-0001

One row per report in the given order, then the diversity-vs-temperature table. With
``--figures DIR``: ``attention_<ID>.png`` (one utterance's alignment, from ``--attention``) and
``f0_contours_<ID>.png`` (prior samples of one sentence, a panel per temperature found in the
``--contours`` directories, a line per seed), linked from the markdown.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from speechunits.io_utils import atomic_write_text
from speechunits.text2speech.results import diversity_table, load_report, markdown_table, parse_report_spec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reports", nargs="+", required=True, metavar="NAME=REPORT",
                        help="tts-evaluate reports, one table row each (a bare path is named after its file)")
    parser.add_argument("--out", required=True, type=Path, help="markdown file to write (RESULTS.md)")
    parser.add_argument("--title", default="TTS results", help="heading of the markdown file")
    parser.add_argument("--notes", type=Path, help="markdown text appended at the end (setup, commands)")
    parser.add_argument("--figures", type=Path, metavar="DIR", help="write the figures (PNG) into DIR")
    parser.add_argument("--attention", type=Path, metavar="SYNTH_DIR",
                        help="synthesis output directory of the attention figure")
    parser.add_argument("--attention-utt", metavar="ID", help="utterance of the attention figure (default: the first)")
    parser.add_argument("--contours", nargs="+", type=Path, metavar="SYNTH_DIR",
                        help="synthesis output directories with prior samples (mode text) at different temperatures")
    parser.add_argument("--contour-utt", metavar="SOURCE_ID",
                        help="sentence (source_id) of the F0 contour figure (default: the one with most samples)")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def run(args: argparse.Namespace) -> int:
    from speechunits.text2speech.figures import find_row, plot_attention, plot_f0_contours, prior_samples

    wants_figures = args.attention is not None or args.contours is not None
    if args.figures is None and (wants_figures or args.attention_utt or args.contour_utt):
        print("tts-results: --attention/--contours need --figures DIR", file=sys.stderr)
        return 2
    if args.figures is not None and not wants_figures:
        print("tts-results: --figures needs --attention SYNTH_DIR and/or --contours SYNTH_DIR ...", file=sys.stderr)
        return 2
    if args.attention_utt and args.attention is None or args.contour_utt and args.contours is None:
        print("tts-results: --attention-utt needs --attention, --contour-utt needs --contours", file=sys.stderr)
        return 2
    reports = [(name, load_report(path)) for name, path in map(parse_report_spec, args.reports)]
    text = f"# {args.title}\n\n" + markdown_table(reports)
    diversity = diversity_table(reports)
    if diversity:
        text += "\n## Diversity across seeds\n\n" + diversity
    links = []
    if args.attention is not None:
        row = find_row(args.attention, args.attention_utt)
        path = plot_attention(args.attention, row.id, args.figures / f"attention_{_safe(row.id)}.png")
        links.append(f"![attention alignment of {row.id}]({os.path.relpath(path, args.out.parent)})")
    if args.contours is not None:
        source_id, _ = prior_samples(args.contours, args.contour_utt)
        path = plot_f0_contours(args.contours, source_id, args.figures / f"f0_contours_{_safe(source_id)}.png")
        links.append(f"![F0 contours of prior samples of {source_id}]({os.path.relpath(path, args.out.parent)})")
    if links:
        text += "\n## Figures\n\n" + "\n\n".join(links) + "\n"
    if args.notes is not None:
        text += "\n" + args.notes.read_text(encoding="utf-8")
    atomic_write_text(args.out, text)
    print(text)
    return 0
