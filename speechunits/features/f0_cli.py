"""``speechunits extract-f0``: the F0 track of every utterance of a corpus, sharded and resumable.

Example::

    speechunits extract-f0 --data data/train --out exp/f0/train --nj 4

Writes an F0 directory (:mod:`speechunits.features.f0_store`): ``OUT/f0/<utt_id>.npy`` per
utterance (Praat's autocorrelation pitch at the file's own sample rate, every
``--hop-seconds``), ``OUT/meta.json`` with the corpus's log-F0 mean and std over voiced
frames, ``OUT/bad_utts.txt`` and, last, ``OUT/provenance.json``.

It runs on the sharded-job runner (:mod:`speechunits.jobs`, ``--nj``/``--job``/``--cmd``/
``--threads``). Resume is per utterance: a track is finished when its file exists (each is
written atomically), so a killed job redoes at most the utterance in flight and the tracks
do not depend on ``--nj``. ``OUT/f0_config.json`` records the settings the tracks were made
with: a run with other settings deletes the old tracks first (a ``--job`` run refuses, since
other tasks of its array may be writing them). ``--force`` redoes every track.

Audio that is missing, empty, corrupt or non-finite is left out and listed in
``OUT/bad_utts.txt`` with the reason. A sound shorter than Praat's analysis window
(``3 / floor_hz`` s) gets an all-unvoiced track. Praat is single-threaded: ``--threads``
has nothing to limit.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from speechunits.audio import audio_info, load_audio
from speechunits.data.utterance import Utterance, manifest_fingerprint
from speechunits.errors import AudioError, ConfigError, ManifestError
from speechunits.features.f0 import METHOD, F0Config, extract_f0
from speechunits.features.f0_store import (
    F0_SUBDIR,
    META_NAME,
    check_utt_id,
    f0_path,
    log_f0_stats,
    read_f0,
    stored_ids,
    write_f0,
    write_meta,
)
from speechunits.io_utils import atomic_write_json
from speechunits.jobs import JobRunner, add_job_arguments, check_job_args, log_to_stderr

logger = logging.getLogger(__name__)

VERB = "extract-f0"
CLAIM_NAME = "f0_config.json"
MANIFEST_NAME = "manifest.jsonl"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = F0Config()
    parser.add_argument("--data", required=True, type=Path,
                        help="Kaldi data dir (or a dir holding only manifest.jsonl), or a .jsonl manifest")
    parser.add_argument("--out", required=True, type=Path, help="F0 directory to write")
    parser.add_argument("--hop-seconds", type=float, default=defaults.hop_seconds,
                        help=f"time step of the track (default {defaults.hop_seconds})")
    parser.add_argument("--floor-hz", type=float, default=defaults.floor_hz,
                        help=f"Praat pitch floor (default {defaults.floor_hz:g})")
    parser.add_argument("--ceiling-hz", type=float, default=defaults.ceiling_hz,
                        help=f"Praat pitch ceiling (default {defaults.ceiling_hz:g})")
    parser.add_argument("--force", action="store_true", help="redo every track, even of a complete output")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_job_arguments(parser)


def read_corpus(data: Path) -> list[Utterance]:
    """The utterances of ``--data``: a Kaldi data dir, a dir with only ``manifest.jsonl``, or a ``.jsonl``."""
    from speechunits.data.jsonl import load_manifest, read_jsonl_manifest

    if data.is_dir() and not (data / "wav.scp").is_file() and (data / MANIFEST_NAME).is_file():
        utts = read_jsonl_manifest(data / MANIFEST_NAME)
    else:
        utts = load_manifest(data, require_text=False)
    if not utts:
        raise ManifestError(data, "the corpus has no utterances")
    return utts


def track_settings(cfg: F0Config) -> dict[str, Any]:
    """What decides a track besides its audio (``OUT/f0_config.json``)."""
    import parselmouth

    return {**cfg.to_dict(), "method": METHOD, "parselmouth": parselmouth.__version__}


# ------------------------------------------------------------------ the runner's output
class F0Shard:
    """One shard's tracks (:class:`~speechunits.jobs.ShardWriter`): finished = its file exists."""

    def __init__(self, root: Path, items: Sequence[Utterance], *, force: bool = False) -> None:
        self.root = root
        self.ids = {u.id for u in items}
        self.force = force
        self.written: set[str] = set()

    def finished_ids(self) -> set[str]:
        if self.force:  # --force: only what this run wrote counts
            return set(self.written)
        return self.ids & stored_ids(self.root)

    def write(self, utt_id: str, f0: np.ndarray) -> None:
        write_f0(self.root, utt_id, f0)
        self.written.add(utt_id)

    def finish(self) -> None:
        pass

    def abort(self, exc: BaseException) -> None:
        pass


class F0Output:
    """An F0 directory as the runner's :class:`~speechunits.jobs.ShardOutput`."""

    where = f"{F0_SUBDIR}/"

    def __init__(self, root: Path, cfg: F0Config, items: Sequence[Utterance], *, force: bool = False) -> None:
        self.root = root
        self.cfg = cfg
        self.input_ids = {u.id for u in items}
        self.force = force

    def open_shard(self, job: int, nj: int, items: Sequence[Utterance], **options: Any) -> F0Shard:
        return F0Shard(self.root, items, force=self.force)

    def shard_files(self, job: int) -> list[Path]:
        return []  # a track depends only on its utterance and the settings (f0_config.json), not on --nj

    def shard_in_place(self, job: int) -> bool:
        return True  # the merge's accounting checks every track

    def merge(self, nj: int) -> list[str]:
        """Drop tracks of ids not in the input, write ``meta.json`` with the corpus statistics; the ids held."""
        have = stored_ids(self.root)
        for stray in sorted(have - self.input_ids):
            f0_path(self.root, stray).unlink(missing_ok=True)
        ids = sorted(have & self.input_ids)
        mean, std, voiced = log_f0_stats(read_f0(f0_path(self.root, i)) for i in ids)
        if ids and not voiced:
            logger.warning("%s: no voiced frame in the %d tracks of %s; log_f0_mean/std are null", VERB, len(ids),
                           self.root)
        write_meta(self.root, self.cfg, num_utterances=len(ids), log_f0_mean=mean, log_f0_std=std,
                   extra={"voiced_frames": voiced})
        return ids


# ------------------------------------------------------------------ one shard
def one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def track_of(utt: Utterance, cfg: F0Config) -> tuple[np.ndarray, float]:
    """(track, audio seconds) of one utterance at its own sample rate; AudioError for unusable audio."""
    info = audio_info(utt.audio)  # the rate (load_audio with target_sr=None does not say it); a pipe runs twice
    wave = load_audio(utt.audio, target_sr=None)
    return extract_f0(wave, info.sample_rate, cfg), len(wave) / info.sample_rate


def run_shard(runner: JobRunner[F0Shard], job: int, cfg: F0Config) -> None:
    """Extract the tracks of shard ``job`` that are not on disk yet, one utterance at a time."""
    import parselmouth

    with runner.open_shard(job) as shard:
        for utt in shard.todo:
            reason = check_utt_id(utt.id)
            if reason is None:
                try:
                    f0, seconds = track_of(utt, cfg)
                except AudioError as err:
                    reason = one_line(err)
                except parselmouth.PraatError as err:
                    reason = f"{utt.audio}: Praat pitch analysis failed: {one_line(err)}"
            if reason is not None:
                shard.progress(0, [f"{utt.id}\t{reason}"])
                continue
            shard.writer.write(utt.id, f0)
            shard.progress(1, audio_seconds=seconds)
            shard.pause()


# ------------------------------------------------------------------ the command
def claim(out: Path, settings: dict[str, Any], *, job: int | None) -> None:
    """Make sure the tracks in ``OUT/f0/`` were made with ``settings``; delete them when not (not with --job)."""
    path = out / CLAIM_NAME
    wanted = json.loads(json.dumps(settings, sort_keys=True))
    found = None
    if path.is_file():
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            found = "unreadable"
    if found == wanted:
        return
    stale = stored_ids(out)
    if found is not None or stale:
        if job is not None:
            raise ConfigError(path, f"the tracks here were made with other settings ({found}; now {wanted}): run "
                                    "the same command without --job first, which deletes them")
        logger.warning("%s: %s holds %d track(s) made with other settings (%s); deleting them", VERB, out,
                       len(stale), found)
        shutil.rmtree(out / F0_SUBDIR, ignore_errors=True)
        (out / META_NAME).unlink(missing_ok=True)
    atomic_write_json(path, wanted)


def run(args: argparse.Namespace) -> int:
    check_job_args(args)
    cfg = F0Config(hop_seconds=args.hop_seconds, floor_hz=args.floor_hz, ceiling_hz=args.ceiling_hz)
    utts = read_corpus(args.data)
    out: Path = args.out
    settings = track_settings(cfg)
    effective = {"verb": VERB, "f0": settings,
                 "data": {"path": str(args.data.resolve()), "utterances": len(utts),
                          "sha256": manifest_fingerprint(utts)}}
    runner = JobRunner(VERB, items=utts, out=out, nj=args.nj, output=F0Output(out, cfg, utts, force=args.force),
                       effective=effective, inputs=[args.data], force=args.force, progress=not args.quiet)
    if runner.complete():
        print(f"{VERB}: {out} is complete for this config; nothing to do (--force to redo)", file=sys.stderr)
        return 0
    log_to_stderr()
    out.mkdir(parents=True, exist_ok=True)
    claim(out, settings, job=args.job)
    return runner.run(lambda job: run_shard(runner, job, cfg), args, add_arguments)


__all__ = ["CLAIM_NAME", "F0Output", "F0Shard", "VERB", "add_arguments", "claim", "read_corpus", "run", "run_shard"]
