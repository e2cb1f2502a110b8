"""Training: the loop (:mod:`.loop`), checkpoints (:mod:`.checkpoint`), logging (:mod:`.logging`) and the
resumable data order (:mod:`.data_order`), over an experiment built by :func:`mtbench.experiment.build_experiment`."""
