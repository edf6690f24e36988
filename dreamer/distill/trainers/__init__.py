"""Trainers of the Student (the distilled model): score distillation (DMD, Diff-Instruct, SDS) and the regression /
adversarial methods of the seed documents. The one table of trainers is TRAINERS: method name -> train(teacher, config,
run, data=None)."""
from . import adversarial, consistency, guidance_distill, kd, noise_lora, progressive, score

TRAINERS = {
    "dmd": score.train_score,
    "diff_instruct": score.train_score,
    "sds": score.train_score,
    "guidance": guidance_distill.train,
    "progressive": progressive.train,
    "consistency": consistency.train,
    "noise_lora": noise_lora.train,
    "kd": kd.train_kd,
    "reflow": kd.train_reflow,
    "add": adversarial.train,
}
