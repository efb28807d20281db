"""DeepSeek-V4 targets and their drafters, on mlx-vlm's model and drafter classes.

mlx-lm has no ``deepseek_v4``; mlx-vlm (MIT) has the model, its MTP block and the
DSpark drafters, and writes the repos users download. We use its classes and wrap
them so the rest of the engine sees an ordinary target (engine/target.py's body and
head, trimmable-or-snapshotted caches) and ordinary Drafters (engine/drafters/base.py);
the one verification loop stays engine/generate.py.

mlx-vlm is imported lazily, only when such a model or drafter is used: nothing in
this package's ``__init__`` or ``support`` imports it.

support.py   which configs and decoder repos are ours (no mlx-vlm import)
caches.py    snapshot / restore of mlx-vlm's cache objects (no mlx-vlm import)
target.py    loading a V4 target and the body/head wrapper around mlx-vlm's model
mtp.py       the V4 MTP Drafter over mlx-vlm's DeepseekV4MTPDraftModel
pairing.py   the catalog's verdicts on a checkpoint's own MTP block or DSpark stages
             (the DSpark Drafter itself is engine/drafters/dspark.py)
"""
