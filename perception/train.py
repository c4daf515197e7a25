"""Perception training jobs, one `main(cfg)` each (implementations in `perception.jobs`).

pretrain(PretrainConfig(data=..., out=...))          # self-supervised, no labels
finetune(FinetuneConfig(data=..., label_fraction=0.1, init=".../final.safetensors"))
"""

from core.training import FINAL_NAME, latest_checkpoint
from perception.jobs.common import TrainConfig
from perception.jobs.finetune import FinetuneConfig, finetune
from perception.jobs.pretrain import PretrainConfig, pretrain

__all__ = ["FINAL_NAME", "FinetuneConfig", "PretrainConfig", "TrainConfig", "finetune", "latest_checkpoint", "pretrain"]
