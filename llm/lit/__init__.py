"""Lightning glue: modules for pretraining, SFT and DPO, their callbacks, optimizers and LR schedules."""
