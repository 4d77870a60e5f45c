"""A tiny two-phase TST run under whatever launcher starts it; prints the per-step losses and gradient
norms (main process).

    accelerate launch [--multi_gpu --num_processes 2 | --config_file X.yaml] tests/run_parallel.py OUT PER_DEVICE_BATCH
"""

import json
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(__file__))
from conftest import config, padded_dataset, tiny_llama  # noqa: E402

from hf_tst import TSTTrainer  # noqa: E402


def main():
    output_dir, per_device_batch = sys.argv[1], int(sys.argv[2])
    warnings.simplefilter("ignore")
    args = config(output_dir, output_dir=output_dir, max_steps=6, tst_ratio=0.5, tst_bag_size=3,
                  per_device_train_batch_size=per_device_batch, tst_weighting="power_law")
    data = padded_dataset(64, 12, 97)  # uneven valid targets per process: tests the global normalisation
    trainer = TSTTrainer(model=tiny_llama(), args=args, train_dataset=data)
    trainer.train()
    if trainer.is_world_process_zero():
        losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
        grad_norms = [log["grad_norm"] for log in trainer.state.log_history if "loss" in log]
        print("RESULT " + json.dumps({"losses": losses, "grad_norms": grad_norms,
                                      "processes": trainer.accelerator.num_processes,
                                      "backend": str(trainer.accelerator.distributed_type),
                                      "zero_stage": trainer.is_deepspeed_enabled and trainer.accelerator.state
                                      .deepspeed_plugin.zero_stage, "fsdp": trainer.is_fsdp_enabled,
                                      "fused_head": trainer._fused_head is not None
                                      and trainer._fused_head[1] is not None}))
    trainer.accelerator.end_training()
    # DeepSpeed's CPU shared-memory communication op sometimes aborts during interpreter teardown
    # ("terminate called without an active exception") after a successful run; skip the teardown.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
