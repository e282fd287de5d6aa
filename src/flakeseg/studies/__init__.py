"""Many runs of ``train.py`` and their reports: the paper's protocol (:mod:`.reproduce`), every model
family side by side (:mod:`.compare`), the recipe step by step (:mod:`.ablation`), W&B sweep files
without a server (:mod:`.sweep_local`) and the GPU job queue (:mod:`.jobqueue`)."""
