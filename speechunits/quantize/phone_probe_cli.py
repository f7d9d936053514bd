"""``speechunits probe-phones``: how much phone information k-means finds in each layer of each system.

Example::

    speechunits probe-phones --system mfcc=mfcc --system logmel=logmel \\
        --system hubert=exp/hubert/iter1/model.pt --data data/dev-clean \\
        --alignments data/alignments --tier phones --k 100 --max-utts 200 --seed 0 \\
        --json exp/probe/probe.json --markdown exp/probe/probe.md --plot exp/probe/probe.png

For every (system, layer), the frames of the first ``--max-utts`` utterances (by id) that
have a ``<id>.TextGrid`` under ``--alignments`` are clustered with k-means (``--k``, squared
Euclidean, ``--seed``) and scored against the phone at each frame's centre: phone purity,
cluster purity and PNMI as in HuBERT (Hsu et al. 2021); see
:mod:`speechunits.quantize.phone_probe` and :mod:`speechunits.eval.frame_purity`.

Outputs (each optional): ``--json`` (``{"rows": [{system, layer, phone_purity,
cluster_purity, pnmi, frames, phones, clusters}], "systems": ..., "settings": ...}``, scores
as fractions), ``--markdown`` (one table per score, systems x layers), ``--plot`` (score vs
layer). Without any of them the tables go to stdout. The last line on stdout is a one-line
summary.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from speechunits.device import resolve_device
from speechunits.errors import AudioError, ConfigError, ManifestError
from speechunits.io_utils import atomic_write_json, atomic_write_text
from speechunits.quantize.phone_probe import (
    collect_frames,
    load_source,
    load_tiers,
    parse_systems,
    score_layers,
    select_utterances,
)
from speechunits.quantize.phone_probe_report import markdown_tables, plot_probe

VERB = "probe-phones"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--system", action="append", default=[], metavar="NAME=SPEC", required=True,
                        help="a system to probe (repeat): SPEC = mfcc | logmel (signal features, layer 0) | an "
                             "encoder checkpoint (every transformer layer 1..L)")
    parser.add_argument("--data", required=True, type=Path, help="Kaldi data dir or JSONL manifest")
    parser.add_argument("--alignments", required=True, type=Path,
                        help="directory searched recursively for <utt id>.TextGrid")
    parser.add_argument("--tier", default="phones", help="TextGrid tier with the reference phones (default phones)")
    parser.add_argument("--k", type=int, default=100, help="k-means clusters (default 100)")
    parser.add_argument("--max-utts", type=int, default=200,
                        help="probe the first N utterances (by id) that have a TextGrid (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="k-means seed (default 0)")
    parser.add_argument("--iters", type=int, default=100, help="k-means iterations at most (default 100)")
    parser.add_argument("--json", type=Path, default=None, help="write the report as JSON")
    parser.add_argument("--markdown", type=Path, default=None, help="write the tables as Markdown")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG of score vs layer")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (models and k-means)")
    parser.add_argument("--batch-seconds", type=float, default=60.0, help="padded audio per batch (default 60)")
    parser.add_argument("--num-workers", type=int, default=2, help="parallel audio decoding calls (default 2)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def check_args(args: argparse.Namespace) -> None:
    """ConfigError for option values no run can honour."""
    problems = []
    for flag, value in (("--k", args.k), ("--max-utts", args.max_utts), ("--iters", args.iters),
                        ("--num-workers", args.num_workers)):
        if value < 1:
            problems.append(f"{flag} must be >= 1, got {value}")
    if not args.batch_seconds > 0:
        problems.append(f"--batch-seconds must be > 0, got {args.batch_seconds}")
    if problems:
        raise ConfigError(None, "; ".join(problems))


def probe(args: argparse.Namespace) -> dict[str, Any]:
    """Run the probe the parsed arguments ask for; returns the JSON-ready report."""
    from speechunits.data.jsonl import load_manifest

    check_args(args)
    systems = parse_systems(args.system)
    utts = load_manifest(args.data, require_text=False)
    if not utts:
        raise ManifestError(args.data, "the corpus has no utterances")
    chosen = select_utterances(utts, args.alignments, args.max_utts)
    if chosen.missing:
        print(f"{VERB}: warning: {len(chosen.missing)} of the {len(utts)} utterance(s) of {args.data} have no "
              f"TextGrid under {args.alignments}; skipped", file=sys.stderr)
    tiers = load_tiers(chosen, args.tier)
    device = resolve_device(args.device)
    progress = not args.quiet
    rows: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    for system in systems:
        source = load_source(system, device)
        frames = collect_frames(source, chosen, tiers, batch_seconds=args.batch_seconds,
                                num_workers=args.num_workers, progress=progress)
        if frames.utterances == 0:
            raise AudioError(args.data, f"system {system.name}: none of the {len(chosen.utts)} probe utterances "
                                        f"could be used: {'; '.join(frames.bad[:3])}")
        for layer, scores in score_layers(system.name, frames, args.k, seed=args.seed, iters=args.iters,
                                          device=device, progress=progress):
            rows.append({"system": system.name, "layer": layer, **scores.as_dict()})
        info[system.name] = {"spec": system.spec, **source.info, "layers": source.layers, "window": source.window,
                             "hop": source.hop, "sample_rate": source.sample_rate, "utterances": frames.utterances,
                             "bad_utts": frames.bad, "all_frames": int(frames.phones.shape[0])}
        del source, frames
    return {
        "rows": rows,
        "systems": info,
        "settings": {"k": args.k, "seed": args.seed, "iters": args.iters, "metric": "euclidean",
                     "max_utts": args.max_utts, "tier": args.tier,
                     "frame_label": "phone at the centre of the frame's receptive field, (i * hop + window / 2) / "
                                    "sample_rate; stress digits removed; silence and unlabelled frames dropped",
                     "kmeans_frames": "all frames of the probe utterances (silence included)"},
        "data": str(args.data),
        "alignments": str(args.alignments),
        "utterances": len(chosen.utts),
        "utterance_ids": [u.id for u in chosen.utts],
        "missing_alignments": len(chosen.missing),
        "missing_ids": chosen.missing[:100],
    }


def summary(report: dict[str, Any], written: list[Path]) -> str:
    """The one-line summary printed last."""
    rows = report["rows"]
    scored = [r for r in rows if r["pnmi"] is not None]
    best = max(scored, key=lambda r: r["pnmi"]) if scored else None
    frames = max((r["frames"] for r in rows), default=0)
    text = (f"{VERB}: {len(report['systems'])} system(s), {len(rows)} (system, layer) row(s), "
            f"{report['utterances']} utterance(s), {frames} phone frame(s), k={report['settings']['k']}")
    if best is not None:
        text += f"; best PNMI {best['pnmi']:.3f} ({best['system']} layer {best['layer']})"
    if written:
        text += "; wrote " + ", ".join(str(p) for p in written)
    return text


def run(args: argparse.Namespace) -> int:
    report = probe(args)
    written: list[Path] = []
    tables = markdown_tables(report)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.json, report)
        written.append(args.json)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.markdown, tables + "\n")
        written.append(args.markdown)
    if args.plot is not None:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        written.append(plot_probe(report, args.plot))
    if not written:
        print(tables)
    print(summary(report, written))
    return 0


__all__ = ["add_arguments", "probe", "run", "summary"]
