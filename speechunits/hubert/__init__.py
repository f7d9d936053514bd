"""HuBERT-style self-supervised pretraining (Hsu et al., 2021) on the shared training loop.

A teacher for Sylber when no pretrained HuBERT checkpoint is at hand: masked prediction of
k-means frame units (iteration 1: MFCC clusters; iteration 2: clusters of an intermediate
layer of iteration 1), exported as an encoder checkpoint that
:func:`speechunits.encoders.checkpoints.load_encoder` reads like a real HuBERT.
"""

from speechunits.hubert.masking import span_mask
from speechunits.hubert.model import HubertPretrainModel

__all__ = ["HubertPretrainModel", "span_mask"]
