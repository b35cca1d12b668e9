"""A tiny Hugging Face image-classification directory made from a config with random weights
(nothing is downloaded): the model the Hugging Face adapter and gradient tests load."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def make_vit(
    folder: Path,
    labels: Sequence[str],
    *,
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.5, 0.5, 0.5),
    initializer_range: float = 0.02,
    safe: bool = True,
) -> Path:
    """A 32×32 ViT with random weights and its image processor, saved to ``folder``.

    ``safe=False`` writes what an old checkpoint looks like: a pickled state dict beside the
    config. A larger ``initializer_range`` spreads the logits.
    """
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        initializer_range=initializer_range,
    )
    model = transformers.ViTForImageClassification(config).eval()
    if safe:
        model.save_pretrained(folder)
    else:
        folder.mkdir(parents=True, exist_ok=True)
        config.save_pretrained(folder)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    transformers.ViTImageProcessor(
        size={"height": 32, "width": 32}, image_mean=list(mean), image_std=list(std)
    ).save_pretrained(folder)
    return folder
