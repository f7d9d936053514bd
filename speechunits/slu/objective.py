"""The COCONUT training objective for one batch, so that an SLU ``TrainTask`` stays a thin
adapter: ``loss = CE + w_nspt * NSPT + w_mm * MM (+ w_kd * seq-KD)``.

* CE: token cross-entropy of the student on the batch (new-task data + rehearsal memory).
* NSPT: anchors = rehearsal samples through the student (pooled encoder output -> audio
  head); positives = the frozen previous-task teacher's projections of the rehearsal
  samples of the same class; denominator = student projections of the batch.
* MM: supervised audio-text InfoNCE between the audio projection and a projection of the
  pooled decoder token embeddings of the target (``<intent> _SEP transcript`` + eos);
  positives share the intent. Applied to the new-task samples (``mm_on="new"``) or all.
* seq-KD (COCONUT+KD): CE of the student on the rehearsal utterances with the teacher's
  beam-search hypotheses as targets (:func:`speechunits.slu.losses.seq_kd_targets`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from speechunits.slu.data import SLUBatch
from speechunits.slu.losses import ProjectionHead, multimodal_loss, nspt_loss
from speechunits.slu.model import SLUModel, masked_mean


@dataclass
class CoconutWeights:
    nspt: float = 0.1
    mm: float = 0.1
    kd: float = 0.0
    nspt_temperature: float = 0.1
    mm_temperature: float = 0.1
    mm_on: str = "new"  # "new" | "all"


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy in eval mode without gradients (the previous-task teacher)."""
    teacher = copy.deepcopy(module).eval()
    teacher.requires_grad_(False)
    return teacher


class CoconutObjective(nn.Module):
    """Student model + projection heads (+ a frozen teacher from the previous task)."""

    def __init__(self, model: SLUModel, proj_dim: int = 128, hidden_dim: int = 512, weights: CoconutWeights | None = None) -> None:
        super().__init__()
        self.model = model
        self.audio_head = ProjectionHead(model.d_model, hidden_dim, proj_dim)
        self.text_head = ProjectionHead(model.d_model, hidden_dim, proj_dim)
        self.weights = weights or CoconutWeights()
        if self.weights.mm_on not in ("new", "all"):
            raise ValueError(f"mm_on must be 'new' or 'all', got {self.weights.mm_on!r}")
        self.teacher: tuple[nn.Module, nn.Module] | None = None  # (model, audio head); not a submodule

    def start_task(self) -> None:
        """Call when a new task starts (after the first): freeze the current model as teacher."""
        self.teacher = (frozen_copy(self.model), frozen_copy(self.audio_head))

    def forward(
        self, batch: SLUBatch, is_memory: Tensor, kd_targets: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """Total loss and its parts for a batch; ``is_memory`` (B,) marks rehearsal samples;
        ``kd_targets`` = teacher (tokens_in, tokens_out) for the rehearsal samples in order."""
        w = self.weights
        out = self.model.forward_all(batch.audio, batch.audio_lens, batch.tokens_in)
        ce = self.model.loss(out.logits, batch.tokens_out)
        total = ce
        parts: dict[str, float] = {"ce": float(ce.detach())}
        z_audio = self.audio_head(masked_mean(out.memory, out.memory_lens))
        if w.mm > 0:
            z_text = self.text_head(self.model.pooled_text(batch.tokens_out))
            mask = None if w.mm_on == "all" else ~is_memory
            mm = multimodal_loss(z_audio, z_text, batch.labels, w.mm_temperature, mask=mask)
            total = total + w.mm * mm
            parts["mm"] = float(mm.detach())
        if self.teacher is not None and bool(is_memory.any()):
            t_model, t_head = self.teacher
            if w.nspt > 0:
                with torch.no_grad():
                    mem_audio, mem_lens = batch.audio[is_memory], batch.audio_lens[is_memory]
                    mem_audio = mem_audio[:, : int(mem_lens.max())]
                    t_z = t_head(t_model.pooled_audio(mem_audio, mem_lens))
                nspt = nspt_loss(z_audio, batch.labels, is_memory, t_z, batch.labels[is_memory], w.nspt_temperature)
                total = total + w.nspt * nspt
                parts["nspt"] = float(nspt.detach())
            if w.kd > 0 and kd_targets is not None:
                tin, tout = kd_targets
                mem_audio, mem_lens = batch.audio[is_memory], batch.audio_lens[is_memory]
                kd = self.model.loss(self.model(mem_audio[:, : int(mem_lens.max())], mem_lens, tin), tout)
                total = total + w.kd * kd
                parts["kd"] = float(kd.detach())
        parts["loss"] = float(total.detach())
        return total, parts
