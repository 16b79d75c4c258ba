"""Precision policies: which stages of a bundle compute in reduced precision, and which node kinds do.

A policy is data. The stage graphs it names are converted to the chosen
precision; every other stage is copied from the float32 bundle byte for byte.
The default, ``transforms``, converts only the free stages (g_a, h_a, g_s:
their floats decide no symbol), so the calibrated bundle keeps the float32
bundle's coding contract and the two decode each other's files. Converting
the entropy-parameter path (h_s, the context steps) too moves every
probability a little; the guard would have to cover that difference (an ε of
~1e-3 for float16, against 1e-5 today, and far more for INT8), so such a
bundle gets a contract of its own: it decodes its own files only.
"""

from __future__ import annotations

from dataclasses import dataclass

from licrt.runtime.manifest import FREE_STAGES

#: The stage name a policy uses for every context step of the schedule.
CONTEXT_STEPS = "context"
#: Node kinds quantised to INT8: the weighted ops (per-channel weights); a MatMul of two activations
#: (attention's q·kᵀ and softmax·v) and GDN's normalisation pool stay float32 (see graph_precision).
INT8_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
#: Node kinds float16 keeps in float32: normalisations and the softmax reduce over many values and lose
#: most to float16's 11-bit mantissa; GDN's square root of a sum of squares overflows it.
FP32_OPS = ("LayerNormalization", "Softmax", "ReduceMean", "ReduceSum", "Pow", "Sqrt", "Reciprocal")
#: INT8: the noise a stage may add, as a fraction of the codec's own noise there (see sensitivity): 0.5 %
#: cost the default model 0.7 % BD-rate on Kodak, 1 % cost 2.6 %.
DEFAULT_BUDGET = 0.005


@dataclass(frozen=True)
class Policy:
    """Which stages a precision applies to.

    Attributes:
        name: How the command line and the manifest name it.
        stages: Stage names, and :data:`CONTEXT_STEPS` for every schedule step.
        summary: One line for ``--help`` and reports.
    """

    name: str
    stages: tuple[str, ...]
    summary: str

    def applies_to(self, stage: str, context_steps: set[str]) -> bool:
        return stage in self.stages or (CONTEXT_STEPS in self.stages and stage in context_steps)

    @property
    def keeps_contract(self) -> bool:
        """Whether the entropy-parameter path stays float32, so files cross with the float32 bundle."""
        return set(self.stages) <= set(FREE_STAGES)


POLICIES = {policy.name: policy for policy in (
    Policy("transforms", FREE_STAGES,
           "g_a, h_a and g_s; the entropy path stays float32 and files cross with the float32 bundle"),
    Policy("synthesis", ("g_s",), "g_s only: the decoder's image; the encoder stays float32"),
    Policy("everything", (*FREE_STAGES, "h_s", CONTEXT_STEPS),
           "every stage, the entropy path too: another coding contract, files do not cross"),
)}
DEFAULT_POLICY = "transforms"
