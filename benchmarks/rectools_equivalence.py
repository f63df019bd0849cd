"""rsir's SASRec with RecTools' options computes what RecTools 0.13.0's SASRec computes (issue 44).

RecTools' published configuration (d 256, 1 block, 1 head, dropout 0.2, sampled softmax with 256
negatives per target) is built on Beauty; rsir's SASRec with the options of the parity study's
`rectools_all` variant (its layer and Xavier initialisation, positions counted from the latest
item, attention over the padding of a max_len window, item-table dropout) is given RecTools'
weights. Then, with dropout off so that both are deterministic:

- both encode the same batch of RecTools' training sequences (left-padded there, right-padded
  in rsir): the largest difference of the hidden states at real positions, and of the scores;
- both take the same Adam steps (lr 1e-3, betas 0.9 / 0.98) on the same batches and the same
  negatives, RecTools through its Lightning module's loss, rsir through its own training step:
  each step's two losses, and the largest weight difference after the last step.

It needs RecTools, which rsir does not depend on (see benchmarks/rectools_anchor.py):

    /tmp/rtenv/bin/python benchmarks/rectools_equivalence.py --data ../shared/data/Beauty/Beauty.txt \\
        --out docs/results/rectools_equivalence.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from rectools.dataset import Dataset
from rectools.models import SASRecModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rectools_anchor  # noqa: E402  (the same data reading and logits as the anchor run)

from rsir.models.sasrec import SASRec, SASRecParams  # noqa: E402
from rsir.training import losses  # noqa: E402
from rsir.training.trainer import LossStep  # noqa: E402

RSIR_OPTIONS = {
    "dim": 256,
    "blocks": 1,
    "heads": 1,
    "dropout": 0.2,
    "item_dropout": 0.2,
    "block": "original",
    "init": "xavier",
    "positions": "recency",
    "pad_keys": "attended",
    "max_len": 50,
}


def copy_weights(rectools_backbone: torch.nn.Module, model: SASRec) -> None:
    """RecTools' weights into rsir's SASRec (one block), parameter by parameter."""
    layer = rectools_backbone.transformer_layers.transformer_blocks[0]
    block = model.blocks[0]
    pairs = [
        (model.item_embedding.weight, rectools_backbone.item_model.item_net_blocks[0].ids_emb.weight),
        (model.position_embedding.weight, rectools_backbone.pos_encoding_layer.pos_emb.weight),
        (block.qkv.weight, layer.multi_head_attn.in_proj_weight),
        (block.qkv.bias, layer.multi_head_attn.in_proj_bias),
        (block.out.weight, layer.multi_head_attn.out_proj.weight),
        (block.out.bias, layer.multi_head_attn.out_proj.bias),
        (block.attn_norm.weight, layer.q_layer_norm.weight),
        (block.attn_norm.bias, layer.q_layer_norm.bias),
        (block.ffn_norm.weight, layer.ff_layer_norm.weight),
        (block.ffn_norm.bias, layer.ff_layer_norm.bias),
        (block.ffn[0].weight, layer.feed_forward.ff_linear_1.weight),
        (block.ffn[0].bias, layer.feed_forward.ff_linear_1.bias),
        (block.ffn[3].weight, layer.feed_forward.ff_linear_2.weight),
        (block.ffn[3].bias, layer.feed_forward.ff_linear_2.bias),
        (model.final_norm.weight, rectools_backbone.transformer_layers.last_layernorm.weight),
        (model.final_norm.bias, rectools_backbone.transformer_layers.last_layernorm.bias),
    ]
    with torch.no_grad():
        for mine, theirs in pairs:
            mine.copy_(theirs)
        model.item_embedding.weight[0].zero_()  # padding (RecTools masks its row instead)
    assert len(pairs) == len(list(model.parameters())), "every rsir parameter has its RecTools counterpart"


def right_padded(left: torch.Tensor) -> torch.Tensor:
    """RecTools' left-padded rows as rsir's right-padded ones."""
    width = left.shape[1]
    lengths = (left != 0).sum(1, keepdim=True)
    columns = torch.arange(width)[None, :]
    shifted = torch.gather(left, 1, (columns + width - lengths).clamp(max=width - 1))
    return shifted * (columns < lengths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    started = time.perf_counter()
    interactions = rectools_anchor.read_s3(Path(args.data))
    train = interactions[~rectools_anchor.last_item_mask(interactions)]
    theirs = SASRecModel(**rectools_anchor.PUBLISHED_CONFIG, get_val_mask_func=rectools_anchor.last_item_mask)
    rectools_anchor.check_target_rows(theirs, Dataset.construct(train))  # builds its modules and batches
    module, backbone = theirs.lightning_model, theirs.lightning_model.torch_model
    module._xavier_normal_init()  # noqa: SLF001  (what RecTools does as training starts)
    preparator = theirs.data_preparator
    mine = SASRec(preparator.item_id_map.size - 1, SASRecParams(**RSIR_OPTIONS))
    copy_weights(backbone, mine)
    module.eval()
    mine.eval()
    batches = iter(preparator.get_dataloader_train())
    batch = next(batches)
    with torch.no_grad():
        table = backbone.item_model.get_all_embeddings()
        hidden_theirs = backbone.encode_sessions(batch, table)
        real = batch["x"] != 0
        lengths = real.sum(1)
        hidden_mine = torch.zeros_like(hidden_theirs)
        hidden_mine[real] = mine.encode(right_padded(batch["x"]))[right_padded(batch["x"]) != 0]
        hidden_gap = float((hidden_theirs - hidden_mine)[real].abs().max())
        score_gap = float(
            (hidden_theirs[:, -1] @ table[1:].T - hidden_mine[:, -1] @ mine.item_embedding.weight[1:].T).abs().max()
        )
    # The same Adam steps on the same batches and negatives
    rsir_step = LossStep(mine, losses.SampledSoftmax(256, "target"))
    optimisers = [torch.optim.Adam(m.parameters(), lr=1e-3, betas=(0.9, 0.98)) for m in (backbone, mine)]
    steps = []
    for _ in range(args.steps):
        batch = next(batches)
        loss_theirs = module.loss_calculator(module.get_batch_logits(batch), batch["y"], batch["yw"])
        negatives = batch["negatives"][batch["y"] != 0]  # row-major: rsir's order of targets too
        losses.uniform_items = lambda n_items, shape, device=None, drawn=negatives: drawn
        targets = right_padded(batch["y"])
        weights = (targets != 0).float()
        loss_mine = rsir_step(right_padded(batch["x"]), targets, weights, float(weights.sum()))
        for optimiser, loss in zip(optimisers, (loss_theirs, loss_mine)):
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        steps.append({"rectools_loss": float(loss_theirs.detach()), "rsir_loss": float(loss_mine.detach())})
    with torch.no_grad():
        mine_after = SASRec(preparator.item_id_map.size - 1, SASRecParams(**RSIR_OPTIONS))
        copy_weights(backbone, mine_after)
        weight_gap = max(
            float((a[1:] - b[1:]).abs().max()) if name == "item_embedding.weight" else float((a - b).abs().max())
            for (name, a), b in zip(mine.named_parameters(), mine_after.parameters())
        )
    commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True).stdout.strip()
    import rectools

    result = {
        "name": Path(args.out).stem,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "rectools": rectools.__version__,
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, cpu, 1 thread",
        "commit": commit,
        "data": args.data,
        "rsir_options": RSIR_OPTIONS,
        "batch_users": int(len(lengths)),
        "hidden_max_difference": hidden_gap,
        "hidden_max_value": float(hidden_theirs[real].abs().max()),
        "score_max_difference": score_gap,
        "steps": steps,
        "step_loss_max_difference": max(abs(s["rectools_loss"] - s["rsir_loss"]) for s in steps),
        "weights_max_difference_after_steps": weight_gap,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if "difference" in k}, indent=2))


if __name__ == "__main__":
    main()
