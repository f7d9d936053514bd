"""Load HuBERT / wav2vec2-shaped encoders (and Sylber's) from local checkpoint files with explicit key maps.

Supported layouts (detected from the file, see :func:`load_encoder`):

``fairseq``
    HuBERT ``.pt``: ``{"cfg" | "args": ..., "model": state_dict}`` with fairseq names
    (``feature_extractor.conv_layers.0.0.weight``, ``encoder.layers.3.self_attn.k_proj.weight``,
    ``encoder.pos_conv.0.weight_g``, ``layer_norm.*``, ``post_extract_proj.*``).
``hf``
    A Hugging Face HubertModel directory (``config.json`` + ``pytorch_model.bin`` or
    ``model.safetensors``), or a bare HF state dict in a file.
``torchaudio``
    ``model.state_dict()`` of torchaudio's Wav2Vec2Model / our :class:`SpeechEncoder`, optionally
    wrapped as ``{"state_dict": ..., "config": ...}`` (what :func:`save_encoder` writes).
``lightning``
    A Lightning ``.ckpt`` ``{"state_dict": ..., ...}`` of the reference trainer.

The reference (GitHub ``Berkeley-Speech-Group/sylber``, a.k.a. cheoljun95/sylber; read, not
copied) was checked for the real layouts: ``SylberTrainer.net = Sylber(...)`` and
``Sylber.speech_model = transformers.HubertModel(...)``, so training checkpoints hold HF keys
under ``net.speech_model.``; the EMA teacher (``EMAModule``, a plain object, not a module) is not
in that state dict but saved separately as ``{"ema": <HubertModel state dict>, ...}``; and the
released ``sylber.ckpt`` (HF hub ``cheoljun95/sylber``) is ``torch.load``-ed straight into a bare
HubertModel, i.e. HF keys with no prefix. The reference ``Segmenter`` normalises every waveform
to zero mean / unit variance, so Lightning / EMA / bare-HF files get
``normalize_waveform=True`` unless told otherwise.

Prefix detection: the prefix is whatever precedes an anchor key of the naming scheme
(``post_extract_proj.weight`` for fairseq, ``feature_projection.projection.weight`` for HF,
``encoder.feature_projection.projection.weight`` for torchaudio); with several candidates the
``prefix=`` argument or the preference order ``"", "net.speech_model.", "speech_model."`` decides.

Nothing is loaded with ``strict=False``. After renaming, keys missing from the file, keys the
map does not know, and shape mismatches raise :class:`CheckpointError`. Keys dropped on
purpose, each logged with a count:

* outside the chosen prefix (e.g. ``net.thresholder.*``, optimizer-side modules of a
  Lightning checkpoint);
* HuBERT pretraining heads: ``mask_emb`` / ``masked_spec_embed`` (mask embedding),
  ``label_embs_concat``, ``final_proj.*`` (fairseq);
* transformer layers at or beyond ``num_layers`` (truncation, e.g. HuBERT base 12 -> 9).
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import pickle
import re
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path
from typing import Any

import torch

from speechunits.errors import CheckpointError
from speechunits.io_utils import atomic_path
from speechunits.train.checkpoint import check_torch_zip
from speechunits.encoders.model import EncoderConfig, SpeechEncoder

_LOG = logging.getLogger(__name__)

FORMAT_TAG = "speechunits.encoder/1"
"""Written by :func:`save_encoder`. Files of older versions carry another tag; they are recognised
by their ``config`` dict, which every version writes."""

# ---------------------------------------------------------------------------------------------
# explicit rename tables: (regex over the source key, replacement giving the torchaudio key)
# ---------------------------------------------------------------------------------------------
_TA_LAYER = r"encoder.transformer.layers.\1"
_POS = "encoder.transformer.pos_conv_embed.conv"

FAIRSEQ_KEY_MAP: list[tuple[str, str]] = [
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)", r"feature_extractor.conv_layers.\1.conv.\2"),
    (r"feature_extractor\.conv_layers\.0\.2\.(weight|bias)", r"feature_extractor.conv_layers.0.layer_norm.\1"),
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)", r"feature_extractor.conv_layers.\1.layer_norm.\2"),
    (r"layer_norm\.(weight|bias)", r"encoder.feature_projection.layer_norm.\1"),
    (r"post_extract_proj\.(weight|bias)", r"encoder.feature_projection.projection.\1"),
    (r"encoder\.pos_conv\.0\.bias", _POS + ".bias"),
    (r"encoder\.pos_conv\.0\.(?:weight_g|parametrizations\.weight\.original0)", _POS + ".parametrizations.weight.original0"),
    (r"encoder\.pos_conv\.0\.(?:weight_v|parametrizations\.weight\.original1)", _POS + ".parametrizations.weight.original1"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.transformer.layer_norm.\1"),
    (r"encoder\.layers\.(\d+)\.self_attn\.(q_proj|k_proj|v_proj|out_proj)\.(weight|bias)", _TA_LAYER + r".attention.\2.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", _TA_LAYER + r".layer_norm.\2"),
    (r"encoder\.layers\.(\d+)\.fc1\.(weight|bias)", _TA_LAYER + r".feed_forward.intermediate_dense.\2"),
    (r"encoder\.layers\.(\d+)\.fc2\.(weight|bias)", _TA_LAYER + r".feed_forward.output_dense.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", _TA_LAYER + r".final_layer_norm.\2"),
]
FAIRSEQ_DROP = [r"mask_emb", r"label_embs_concat", r"final_proj\.(weight|bias)"]

HF_KEY_MAP: list[tuple[str, str]] = [
    (r"feature_extractor\.conv_layers\.(\d+)\.conv\.(weight|bias)", r"feature_extractor.conv_layers.\1.conv.\2"),
    (r"feature_extractor\.conv_layers\.(\d+)\.layer_norm\.(weight|bias)", r"feature_extractor.conv_layers.\1.layer_norm.\2"),
    (r"feature_projection\.layer_norm\.(weight|bias)", r"encoder.feature_projection.layer_norm.\1"),
    (r"feature_projection\.projection\.(weight|bias)", r"encoder.feature_projection.projection.\1"),
    (r"encoder\.pos_conv_embed\.conv\.bias", _POS + ".bias"),
    (r"encoder\.pos_conv_embed\.conv\.(?:weight_g|parametrizations\.weight\.original0)", _POS + ".parametrizations.weight.original0"),
    (r"encoder\.pos_conv_embed\.conv\.(?:weight_v|parametrizations\.weight\.original1)", _POS + ".parametrizations.weight.original1"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.transformer.layer_norm.\1"),
    (r"encoder\.layers\.(\d+)\.attention\.(q_proj|k_proj|v_proj|out_proj)\.(weight|bias)", _TA_LAYER + r".attention.\2.\3"),
    (r"encoder\.layers\.(\d+)\.(layer_norm|final_layer_norm)\.(weight|bias)", _TA_LAYER + r".\2.\3"),
    (r"encoder\.layers\.(\d+)\.feed_forward\.(intermediate_dense|output_dense)\.(weight|bias)", _TA_LAYER + r".feed_forward.\2.\3"),
]
HF_DROP = [r"masked_spec_embed"]

TORCHAUDIO_KEY_MAP: list[tuple[str, str]] = [
    (r"(feature_extractor\.conv_layers\.\d+\.(?:conv|layer_norm)\.(?:weight|bias))", r"\1"),
    (r"(encoder\.feature_projection\.(?:layer_norm|projection)\.(?:weight|bias))", r"\1"),
    (r"encoder\.transformer\.pos_conv_embed\.conv\.bias", _POS + ".bias"),
    (r"encoder\.transformer\.pos_conv_embed\.conv\.(?:weight_g|parametrizations\.weight\.original0)", _POS + ".parametrizations.weight.original0"),
    (r"encoder\.transformer\.pos_conv_embed\.conv\.(?:weight_v|parametrizations\.weight\.original1)", _POS + ".parametrizations.weight.original1"),
    (r"(encoder\.transformer\.layer_norm\.(?:weight|bias))", r"\1"),
    (r"(encoder\.transformer\.layers\.\d+\.attention\.(?:q_proj|k_proj|v_proj|out_proj)\.(?:weight|bias))", r"\1"),
    (r"(encoder\.transformer\.layers\.\d+\.(?:layer_norm|final_layer_norm)\.(?:weight|bias))", r"\1"),
    (r"(encoder\.transformer\.layers\.\d+\.feed_forward\.(?:intermediate_dense|output_dense)\.(?:weight|bias))", r"\1"),
]
TORCHAUDIO_DROP = [r"mask_generator\.mask_embedding", r"logit_generator\..*", r"aux\.(weight|bias)"]

# scheme -> (anchor key, rename table, drop list)
SCHEMES: dict[str, tuple[str, list[tuple[str, str]], list[str]]] = {
    "torchaudio": ("encoder.feature_projection.projection.weight", TORCHAUDIO_KEY_MAP, TORCHAUDIO_DROP),
    "fairseq": ("post_extract_proj.weight", FAIRSEQ_KEY_MAP, FAIRSEQ_DROP),
    "hf": ("feature_projection.projection.weight", HF_KEY_MAP, HF_DROP),
}
PREFIX_PREFERENCE = ("", "net.speech_model.", "speech_model.", "model.", "module.")
_LAYER_RE = re.compile(r"encoder\.transformer\.layers\.(\d+)\.")


@dataclass
class CheckpointInfo:
    """Where a model came from: attached to loaded models as ``model.checkpoint_info``."""

    path: str
    format: str  # fairseq | hf | torchaudio | lightning
    scheme: str  # naming scheme of the weights: fairseq | hf | torchaudio
    prefix: str
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> number of keys


# ---------------------------------------------------------------------------------------------
# reading files
# ---------------------------------------------------------------------------------------------
def _stub_class(qualname: str) -> type:
    """A stand-in for a class we refuse to import while unpickling (configs, namespaces)."""
    module, _, name = qualname.rpartition(".")

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        self.__dict__["_args"] = args
        self.__dict__.update(kwargs)

    def __setstate__(self: Any, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state = {**(state[0] or {}), **state[1]}
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_state"] = state

    def _setitem(self: Any, key: Any, value: Any) -> None:
        self.__dict__.setdefault("_items", {})[key] = value

    cls = type(name or qualname, (), {"__init__": __init__, "__setstate__": __setstate__, "__setitem__": _setitem,
                                        "_stub_of": qualname})
    cls.__module__ = module or "stub"
    return cls


def _torch_load(path: Path, map_location: Any) -> Any:
    """``torch.load`` with ``weights_only=True``; unknown classes (fairseq/omegaconf configs,
    Lightning attribute dicts) are replaced by inert stubs instead of being imported. A zip
    member failing its CRC-32 (damaged bytes, which ``torch.load`` would not notice) is a
    CheckpointError (:func:`~speechunits.train.checkpoint.check_torch_zip`)."""
    check_torch_zip(path, "checkpoint")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" not in str(err):
            raise CheckpointError(path, f"truncated or not a torch checkpoint ({_first_line(err)})") from err
    except Exception as err:  # zip/pickle/EOF errors of truncated or foreign files
        raise CheckpointError(path, f"truncated or not a torch checkpoint ({_first_line(err)})") from err
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        stubs = [(_stub_class(q), q) for q in unsafe]
        with torch.serialization.safe_globals([argparse.Namespace, *stubs]):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise CheckpointError(path, f"could not read checkpoint ({_first_line(err)})") from err


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".strip()


def _plain(obj: Any) -> Any:
    """Best-effort conversion of configs (dicts, Namespaces, omegaconf stubs) to plain values."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    if isinstance(obj, argparse.Namespace):
        return {k: _plain(v) for k, v in vars(obj).items()}
    if hasattr(obj, "_stub_of"):
        d = obj.__dict__
        if "_content" in d:  # omegaconf DictConfig / ListConfig
            return _plain(d["_content"])
        if "_val" in d:  # omegaconf value node
            return _plain(d["_val"])
        if "_items" in d:
            return _plain(d["_items"])
        return {k: _plain(v) for k, v in d.items() if not k.startswith("_")}
    return obj


def _load_hf_dir(path: Path, map_location: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise CheckpointError(path, "Hugging Face model directory without config.json")
    try:
        hf_cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(cfg_file, f"unreadable config.json ({err})") from err
    pre = path / "preprocessor_config.json"
    if pre.is_file():
        try:
            hf_cfg["_do_normalize"] = bool(json.loads(pre.read_text(encoding="utf-8")).get("do_normalize", False))
        except (OSError, json.JSONDecodeError) as err:
            raise CheckpointError(pre, f"unreadable preprocessor_config.json ({err})") from err
    bin_file, st_file = path / "pytorch_model.bin", path / "model.safetensors"
    if bin_file.is_file():
        sd = _torch_load(bin_file, map_location)
    elif st_file.is_file():
        try:
            from safetensors.torch import load_file
        except ImportError as err:
            raise CheckpointError(st_file, "model.safetensors found but the safetensors package is not installed; "
                                           "install it or convert the weights to pytorch_model.bin") from err
        try:
            sd = load_file(str(st_file), device=str(map_location) if map_location is not None else "cpu")
        except Exception as err:
            raise CheckpointError(st_file, f"truncated or unreadable safetensors file ({_first_line(err)})") from err
    else:
        raise CheckpointError(path, "Hugging Face model directory holds neither pytorch_model.bin nor model.safetensors")
    if not isinstance(sd, dict):
        raise CheckpointError(path, f"expected a state dict in the weights file, found {type(sd).__name__}")
    return sd, hf_cfg


# ---------------------------------------------------------------------------------------------
# configs stored in files
# ---------------------------------------------------------------------------------------------
def _eval_layer_spec(spec: str, path: Path) -> list[tuple[int, int, int]]:
    """Evaluate fairseq's ``conv_feature_layers`` string (lists, tuples, ints, + and *) safely."""

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [ev(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            a, b = ev(node.left), ev(node.right)
            return a + b if isinstance(node.op, ast.Add) else a * b
        raise ValueError(f"unsupported expression {ast.dump(node)[:60]}")

    try:
        layers = ev(ast.parse(spec, mode="eval"))
        return [(int(c), int(k), int(s)) for c, k, s in layers]
    except (SyntaxError, ValueError, TypeError) as err:
        raise CheckpointError(path, f"cannot parse conv_feature_layers {spec!r} ({err})") from err


def _fairseq_config(ckpt: dict[str, Any], path: Path) -> dict[str, Any]:
    """EncoderConfig fields from a fairseq checkpoint's ``cfg`` (or legacy ``args``)."""
    raw = _plain(ckpt.get("cfg")) if ckpt.get("cfg") is not None else _plain(ckpt.get("args"))
    if not isinstance(raw, dict):
        return {}
    model = raw.get("model") if isinstance(raw.get("model"), dict) else raw
    task = raw.get("task") if isinstance(raw.get("task"), dict) else raw
    out: dict[str, Any] = {}
    simple = {
        "encoder_layers": "num_layers", "encoder_embed_dim": "encoder_embed_dim",
        "encoder_ffn_embed_dim": "ffn_dim", "encoder_attention_heads": "num_heads",
        "layer_norm_first": "layer_norm_first", "conv_bias": "extractor_conv_bias",
        "conv_pos": "pos_conv_kernel", "conv_pos_groups": "pos_conv_groups",
        "dropout": "dropout", "attention_dropout": "attention_dropout", "activation_dropout": "ffn_dropout",
        "dropout_input": "projection_dropout", "encoder_layerdrop": "layer_drop",
    }
    for src, dst in simple.items():
        if model.get(src) is not None:
            out[dst] = model[src]
    if isinstance(model.get("conv_feature_layers"), str):
        out["extractor_conv_layer_config"] = _eval_layer_spec(model["conv_feature_layers"], path)
    if model.get("extractor_mode") is not None:
        out["extractor_mode"] = "layer_norm" if model["extractor_mode"] == "layer_norm" else "group_norm"
    if isinstance(task, dict) and task.get("normalize") is not None:
        out["normalize_waveform"] = bool(task["normalize"])
    return out


def _hf_config(hf: dict[str, Any]) -> dict[str, Any]:
    """EncoderConfig fields from a Hugging Face HubertConfig dict."""
    out: dict[str, Any] = {}
    if all(k in hf for k in ("conv_dim", "conv_kernel", "conv_stride")):
        out["extractor_conv_layer_config"] = list(zip(hf["conv_dim"], hf["conv_kernel"], hf["conv_stride"]))
    simple = {
        "conv_bias": "extractor_conv_bias", "hidden_size": "encoder_embed_dim", "num_hidden_layers": "num_layers",
        "num_attention_heads": "num_heads", "intermediate_size": "ffn_dim", "do_stable_layer_norm": "layer_norm_first",
        "num_conv_pos_embeddings": "pos_conv_kernel", "num_conv_pos_embedding_groups": "pos_conv_groups",
        "hidden_dropout": "dropout", "attention_dropout": "attention_dropout", "activation_dropout": "ffn_dropout",
        "feat_proj_dropout": "projection_dropout", "layerdrop": "layer_drop", "_do_normalize": "normalize_waveform",
    }
    for src, dst in simple.items():
        if hf.get(src) is not None:
            out[dst] = hf[src]
    if hf.get("feat_extract_norm") is not None:
        out["extractor_mode"] = f"{hf['feat_extract_norm']}_norm"
    return out


def infer_config(sd: dict[str, torch.Tensor], path: Path, base: EncoderConfig | None = None) -> dict[str, Any]:
    """EncoderConfig fields read off the shapes of a torchaudio-named state dict.

    Strides and heads are not in the weights: strides come from ``base`` (HuBERT base by
    default) when its kernels match, heads from ``base`` when the width matches, else width/64.
    """
    base = base or EncoderConfig()
    out: dict[str, Any] = {}
    conv = []
    i = 0
    while f"feature_extractor.conv_layers.{i}.conv.weight" in sd:
        w = sd[f"feature_extractor.conv_layers.{i}.conv.weight"]
        conv.append((int(w.shape[0]), int(w.shape[2])))
        i += 1
    if conv:
        base_conv = base.extractor_conv_layer_config
        if [k for _, k in conv] != [k for _, k, _ in base_conv]:
            raise CheckpointError(path, f"cannot infer conv strides for kernels {[k for _, k in conv]}; pass config=")
        out["extractor_conv_layer_config"] = [(c, k, s) for (c, k), (_, _, s) in zip(conv, base_conv)]
        out["extractor_conv_bias"] = "feature_extractor.conv_layers.0.conv.bias" in sd
        out["extractor_mode"] = "layer_norm" if "feature_extractor.conv_layers.1.layer_norm.weight" in sd else "group_norm"
    proj = sd.get("encoder.feature_projection.projection.weight")
    if proj is not None:
        embed = int(proj.shape[0])
        out["encoder_embed_dim"] = embed
        out["num_heads"] = base.num_heads if base.encoder_embed_dim == embed else max(1, embed // 64)
    ffn = sd.get("encoder.transformer.layers.0.feed_forward.intermediate_dense.weight")
    if ffn is not None:
        out["ffn_dim"] = int(ffn.shape[0])
    layers = {int(m.group(1)) for k in sd if (m := _LAYER_RE.match(k))}
    if layers:
        out["num_layers"] = max(layers) + 1
    v = sd.get(_POS + ".parametrizations.weight.original1")
    if v is not None and proj is not None:
        out["pos_conv_kernel"] = int(v.shape[2])
        out["pos_conv_groups"] = max(1, int(proj.shape[0]) // int(v.shape[1]))
    return out


# ---------------------------------------------------------------------------------------------
# renaming
# ---------------------------------------------------------------------------------------------
def detect_scheme(sd: dict[str, Any], path: Path, prefix: str | None = None) -> tuple[str, str]:
    """(naming scheme, prefix) of a state dict, from the anchor key of each scheme."""
    keys = [k for k in sd if isinstance(k, str)]
    for scheme, (anchor, _, _) in SCHEMES.items():
        found = sorted({k[: -len(anchor)] for k in keys if k.endswith(anchor)})
        if scheme == "hf":  # a torchaudio key also ends with the HF anchor
            found = [p for p in found if not p.endswith("encoder.")]
        if not found:
            continue
        if prefix is not None:
            if prefix in found:
                return scheme, prefix
            continue
        if len(found) == 1:
            return scheme, found[0]
        for pref in PREFIX_PREFERENCE:
            if pref in found:
                return scheme, pref
        raise CheckpointError(path, f"several {scheme} models in one checkpoint (prefixes {found}); pass prefix=")
    if prefix is not None:
        raise CheckpointError(path, f"no encoder weights under prefix {prefix!r}")
    sample = ", ".join(keys[:5])
    raise CheckpointError(path, f"no HuBERT/Sylber encoder weights recognised (first keys: {sample})")


def rename_state_dict(
    sd: dict[str, Any], scheme: str, prefix: str, path: Path
) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Map a state dict onto torchaudio names with the scheme's explicit table.

    Returns (renamed dict, dropped counts by reason). Keys under the prefix that the table
    neither maps nor drops raise CheckpointError listing them.
    """
    _, table, drops = SCHEMES[scheme]
    compiled = [(re.compile(p), r) for p, r in table]
    drop_res = [re.compile(p) for p in drops]
    out: dict[str, torch.Tensor] = {}
    dropped: dict[str, int] = {}
    unknown: list[str] = []
    for key, value in sd.items():
        if not isinstance(key, str) or not key.startswith(prefix):
            dropped["outside prefix"] = dropped.get("outside prefix", 0) + 1
            continue
        sub = key[len(prefix):]
        if any(d.fullmatch(sub) for d in drop_res):
            dropped["pretraining head"] = dropped.get("pretraining head", 0) + 1
            continue
        for pat, repl in compiled:
            m = pat.fullmatch(sub)
            if m:
                new = m.expand(repl)
                if new in out:
                    raise CheckpointError(path, f"two keys map onto {new!r} (second: {key!r})")
                if not isinstance(value, torch.Tensor):
                    raise CheckpointError(path, f"{key!r} is a {type(value).__name__}, expected a tensor")
                out[new] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(path, f"unexpected keys not in the {scheme} key map: {unknown[:20]}"
                                    + (f" (+{len(unknown) - 20} more)" if len(unknown) > 20 else ""))
    return out, dropped


def _fit_to_model(model: SpeechEncoder, sd: dict[str, torch.Tensor], path: Path, dropped: dict[str, int]) -> None:
    """Truncate extra layers, check keys and shapes exactly, then load strictly."""
    n = model.config.num_layers
    extra = [k for k in sd if (m := _LAYER_RE.match(k)) and int(m.group(1)) >= n]
    if extra:
        layers = sorted({int(_LAYER_RE.match(k).group(1)) for k in extra})  # type: ignore[union-attr]
        _LOG.info("%s: truncating transformer layers %s (model keeps %d)", path, layers, n)
        dropped["truncated layers"] = len(extra)
        for k in extra:
            del sd[k]
    target = model.state_dict()
    missing = sorted(set(target) - set(sd))
    unexpected = sorted(set(sd) - set(target))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected}")
        raise CheckpointError(path, "checkpoint does not fit the model: " + "; ".join(parts))
    for k, ref in target.items():
        if tuple(sd[k].shape) != tuple(ref.shape):
            raise CheckpointError(path, f"shape mismatch for {k!r}: checkpoint {tuple(sd[k].shape)}, model {tuple(ref.shape)}")
    model.load_state_dict({k: sd[k].to(dtype=ref.dtype) for k, ref in target.items()}, strict=True)
    for reason, count in dropped.items():
        _LOG.info("%s: dropped %d key(s): %s", path, count, reason)


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------
def load_encoder(
    path: str | PathLike[str],
    *,
    config: EncoderConfig | None = None,
    map_location: Any = "cpu",
    prefix: str | None = None,
    num_layers: int | None = None,
    normalize_waveform: bool | None = None,
) -> SpeechEncoder:
    """Build a :class:`SpeechEncoder` from a local checkpoint in any supported layout.

    Config precedence: ``config`` (used as is) > the config stored in the file (fairseq
    ``cfg``, HF ``config.json``, our wrapper) > inference from weight shapes.
    ``num_layers`` truncates (e.g. 9 for Sylber on a 12-layer HuBERT); ``normalize_waveform``
    overrides the input normalisation. ``prefix`` selects the sub-model of a wrapped checkpoint.
    The model is returned in eval mode with ``model.checkpoint_info`` set.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(path, "checkpoint does not exist")
    file_cfg: dict[str, Any] = {}
    hf_cfg: dict[str, Any] = {}
    seg_defaults: dict[str, float] = {}
    if path.is_dir():
        sd, hf_cfg = _load_hf_dir(path, map_location)
        fmt, file_cfg = "hf", _hf_config(hf_cfg)
    else:
        if path.stat().st_size == 0:
            raise CheckpointError(path, "truncated or not a torch checkpoint (0 bytes)")
        obj = _torch_load(path, map_location)
        if not isinstance(obj, dict):
            raise CheckpointError(path, f"expected a dict checkpoint, found {type(obj).__name__}")
        sd, fmt, file_cfg = _unwrap(obj, path)
        if isinstance(obj.get("segmentation"), dict):
            seg_defaults = {str(k): float(v) for k, v in obj["segmentation"].items()}
    scheme, pref = detect_scheme(sd, path, prefix)
    if fmt == "state_dict":
        fmt = scheme
    renamed, dropped = rename_state_dict(sd, scheme, pref, path)
    if fmt == "hf" and path.is_dir() and not hf_cfg.get("feat_proj_layer_norm", True):
        _reject_no_projection_norm(path / "config.json")
    if fmt in ("lightning", "ema") or (fmt == "hf" and not path.is_dir()):
        file_cfg.setdefault("normalize_waveform", True)  # the reference Segmenter normalises inputs
    if config is None:
        fields_ = infer_config(renamed, path)
        fields_.update(file_cfg)
        try:
            config = EncoderConfig(**fields_)
        except (TypeError, ValueError) as err:
            raise CheckpointError(path, f"invalid model config {fields_} ({err})") from err
    if num_layers is not None:
        config = replace(config, num_layers=int(num_layers))
    if normalize_waveform is not None:
        config = replace(config, normalize_waveform=bool(normalize_waveform))
    model = SpeechEncoder(config)
    _fit_to_model(model, renamed, path, dropped)
    model.segmentation_defaults = seg_defaults
    model.checkpoint_info = CheckpointInfo(str(path), fmt, scheme, pref, dropped)  # type: ignore[assignment]
    if isinstance(map_location, (str, torch.device)):
        model = model.to(map_location)
    return model.eval()


def _reject_no_projection_norm(path: Path) -> None:
    """torchaudio's FeatureProjection always layer-normalises its input, HF models with
    ``feat_proj_layer_norm: false`` do not: no weights make the two equal, so refuse."""
    raise CheckpointError(path, "config.json has feat_proj_layer_norm: false; this encoder always applies the "
                                "feature LayerNorm (HuBERT/fairseq layout), so the model cannot be reproduced")


def _unwrap(obj: dict[str, Any], path: Path) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """(state dict, container format, config fields) of a loaded checkpoint object."""
    if isinstance(obj.get("model"), dict) and ("cfg" in obj or "args" in obj):
        return obj["model"], "fairseq", _fairseq_config(obj, path)
    if isinstance(obj.get("state_dict"), dict):
        if obj.get("format") == FORMAT_TAG or isinstance(obj.get("config"), dict):
            try:
                cfg = EncoderConfig.from_dict(dict(obj["config"])).__dict__ if obj.get("config") else {}
            except (TypeError, ValueError) as err:
                raise CheckpointError(path, f"invalid stored config ({err})") from err
            return obj["state_dict"], "torchaudio", dict(cfg)
        return obj["state_dict"], "lightning", {}
    if isinstance(obj.get("ema"), dict):
        return obj["ema"], "ema", {}
    if any(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, "state_dict", {}
    raise CheckpointError(path, f"unrecognised checkpoint layout (top-level keys {sorted(map(str, obj))[:10]})")


def segmentation_defaults(path: str | PathLike[str]) -> dict[str, float]:
    """Segmentation defaults (thresholds, ``shift``, norm statistics) recorded in one of our model files
    (``save_encoder``); {} for other layouts."""
    path = Path(path)
    if path.is_dir() or not path.is_file():
        return {}
    obj = _torch_load(path, "cpu")
    seg = obj.get("segmentation") if isinstance(obj, dict) else None
    return {str(k): float(v) for k, v in seg.items()} if isinstance(seg, dict) else {}


def save_encoder(
    path: str | PathLike[str], model: SpeechEncoder, segmentation: dict[str, float] | None = None
) -> None:
    """Write ``{"format", "config", "state_dict"[, "segmentation"]}`` atomically.

    ``segmentation`` holds the settings this model should be segmented with (e.g. the
    adaptive norm threshold reached in training; ``tune-segmentation --export`` adds the tuned
    ``norm_threshold``, ``merge_threshold`` and ``shift``, the seconds added to every boundary);
    :func:`load_encoder` exposes them as ``model.segmentation_defaults`` and Sylber's
    ``Segmenter``, ``tokenize`` and ``segment`` use them unless told otherwise.
    """
    payload: dict[str, Any] = {
        "format": FORMAT_TAG,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    if segmentation:
        payload["segmentation"] = {str(k): float(v) for k, v in segmentation.items()}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)  # a file object: torch.save names the zip's records after a path (a random temporary)
