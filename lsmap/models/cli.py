"""``lsmap models``: the registered segmentation models with their parameter counts."""

from __future__ import annotations

import argparse


def build_parser(parser: argparse.ArgumentParser) -> None:
    from lsmap.models.encoders import RESNET_BACKBONES

    parser.add_argument("--backbone", default="resnet50", choices=RESNET_BACKBONES,
                        help="ResNet encoder of the ResNet-based models (default: resnet50, the paper's)")
    parser.add_argument("--in-channels", type=int, default=3, help="input bands (default: 3)")
    parser.add_argument("--num-classes", type=int, default=1, help="output channels (default: 1, landslide logit)")


def run(args: argparse.Namespace) -> int:
    from lsmap.models import MODEL_NAMES, REGISTRY, build_model, count_parameters, encoder_name

    rows = []
    for name in MODEL_NAMES:
        model = build_model(name, args.in_channels, args.num_classes, args.backbone)
        rows.append((name, encoder_name(name, args.backbone), str(model.size_multiple),
                     f"{count_parameters(model) / 1e6:.2f} M", REGISTRY[name].description))
    header = ("model", "encoder", "stride", "parameters", "description")
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    print(f"in_channels={args.in_channels} num_classes={args.num_classes} "
          "(stride: inputs are reflect-padded to a multiple of it, logits cropped back)")
    for row in (header, *rows):
        cells = (cell.rjust(w) if i == 3 else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        print("  ".join(cells).rstrip())
    return 0
