"""eContextformer's context model: multiply-accumulates per pixel with and without its three speed-ups.

The paper (Koyuncu et al., TCSVT 2024) cuts the context model's complexity
by 84 % against running it as a plain Contextformer would, with three
changes: EGR (each group's cells squeezed to half width, so no window holds
the other parity's masked cells), SFG (the first group from the hyperprior
alone: one transformer pass fewer) and caching keys and values between the
passes (a pass computes its own group's tokens only). Here every combination
is counted for one image, per image pixel:

* with caching, pass n (n = 1 … passes) runs its group's tokens against the
  keys of n groups; without, it recomputes all n groups' tokens;
* without SFG a start-token group comes first, so there are 2·N_cs passes
  with one more group each, instead of 2·N_cs − 1;
* without EGR a group's tokens are its latent's full grid, both parities
  (twice as many), in windows of K × K cells.

The count is a formula over the layers' matrix products (projections, the
attention's two products per window, the MLP, the token embedding), checked
against PyTorch's FLOP counter on the real module, all passes at once and
each cached pass, before anything is reported. The entropy-parameter
networks (per group, whatever the variant) are counted apart.

Example::

    python bench/econtextformer_complexity.py --out bench/results/econtextformer-complexity.json
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from licrt.export import registry

from report import save_report  # a sibling script: python puts bench/ on the path


def layer_macs(config, cells: int, padded: int, queries: int, keys: int) -> int:
    """One pass of the transformer: `queries` groups of tokens against `keys` groups (cells per group, padded
    to whole windows), embedding included."""
    d, k2 = config.dim, config.window**2
    width = config.latent_channels // config.segments
    per_layer = queries * padded * 4 * d * d + 2 * queries * keys * padded * k2 * d + queries * cells * 8 * d * d
    return queries * cells * width * d + config.depth * per_layer


def padded_cells(config, rows: int, cols: int) -> int:
    """Cells of a rows × cols grid padded to whole K × K windows."""
    k = config.window
    return -(-rows // k) * k * -(-cols // k) * k


def counted(function) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        function()
    return counter.get_total_flops() // 2


def check_formula(model, height: int, width: int) -> None:
    """The formula must count what PyTorch counts for the real module (all passes at once, and each cached pass)."""
    c = model.config
    y_hat = torch.randn(1, c.latent_channels, height, width)
    cells = height * width // 2
    padded = padded_cells(c, height, width // 2)
    groups = 2 * c.segments - 1
    assert counted(lambda: model.context(y_hat)) == layer_macs(c, cells, padded, groups, groups)
    caches = None
    for index in range(groups):
        def step(index=index):
            nonlocal caches
            _, caches = model.context.step(y_hat, index, caches)
        assert counted(step) == layer_macs(c, cells, padded, 1, index + 1), index


def decode_macs(config, height: int, width: int, egr: bool, sfg: bool, caching: bool) -> int:
    """The context model's transformer over one image's passes, in the variant named."""
    cells = height * width // (2 if egr else 1)
    padded = padded_cells(config, height, width // (2 if egr else 1))
    passes = 2 * config.segments - (1 if sfg else 0)
    return sum(layer_macs(config, cells, padded, 1 if caching else n, n) for n in range(1, passes + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codec", default="econtextformer")
    parser.add_argument("--size", default="512x768", help="image HxW (default: Kodak's)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    model = registry.build(args.codec).eval()
    config = model.config
    image_height, image_width = map(int, args.size.lower().split("x"))
    height, width = image_height // 16, image_width // 16
    check_formula(model, height, width)
    pixels = image_height * image_width
    width_c = config.latent_channels // config.segments
    parameter_nets = 2 * config.segments * (height * width // 2) * (
        (2 * config.latent_channels + config.dim) * 2 * config.dim + 2 * config.dim * 3 * config.components * width_c)
    variants = {}
    for egr, sfg, caching in itertools.product((False, True), repeat=3):
        name = "+".join(n for n, on in (("EGR", egr), ("SFG", sfg), ("caching", caching)) if on) or "none"
        variants[name] = {"egr": egr, "sfg": sfg, "caching": caching,
                          "kmac_per_pixel": decode_macs(config, height, width, egr, sfg, caching) / pixels / 1e3}
    baseline = variants["none"]["kmac_per_pixel"]
    for entry in variants.values():
        entry["saved_vs_none"] = 1 - entry["kmac_per_pixel"] / baseline
        print(f"{'EGR' if entry['egr'] else '   '} {'SFG' if entry['sfg'] else '   '} "
              f"{'caching' if entry['caching'] else '       '}  {entry['kmac_per_pixel']:8.1f} kMAC/px  "
              f"{100 * entry['saved_vs_none']:5.1f} % less")
    print(f"entropy-parameter networks: {parameter_nets / pixels / 1e3:.1f} kMAC/px in every variant")
    save_report("econtextformer_complexity.py", None, args.out, codec=args.codec, image=args.size,
                config=vars(config), formula_checked_against="torch.utils.flop_counter on the module",
                variants=variants, parameter_networks_kmac_per_pixel=parameter_nets / pixels / 1e3,
                paper_claim="84 % less with EGR, SFG and caching together")


if __name__ == "__main__":
    main()
