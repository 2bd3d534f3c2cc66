"""Training: data, augmentation, the plain loop, and the Ray Tune trainable around it.

    data        load_dataset(name, data_dir, download=) -> Dataset (uint8 tensors), DATASETS,
                split_indices (the fixed validation split and training subsets)
    augment     augment_batch: the paper's crop/rotate/flip on a batch, on the trial's device
    device      select_device: a GPU with mixed precision when given one, else CPU threads
    loop        Trainer (train_epoch, evaluate, state_dict, save/load_checkpoint), evaluate_model
    checkpoint  atomic save_checkpoint, load_checkpoint (weights_only), load_model
    trainable   train_lrunet(config) for Ray Tune, make_trainable, RunSpec (the "_run" key)
    cli         `python launch.py train ARCH --dataset D --epochs E`

Nothing here imports Ray or MLflow at module load except where a trial actually runs.
"""
