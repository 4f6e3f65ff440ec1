"""Quality and privacy gates that fail closed: a generator becomes ``champion`` and is
published only if every gate passes; a missing gated metric fails too."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# metric → (policy field, direction). fid_like is bounded relative to its real-vs-real floor and
# tstr_accuracy relative to trtr_accuracy, so that a gate means the same on any dataset; the
# others are shares and AUCs, already on a fixed scale.
RULES: dict[str, tuple[str, str]] = {
    "fid_like": ("max_fid_ratio", "max"),
    "kid": ("max_kid", "max"),
    "precision": ("min_precision", "min"),
    "recall": ("min_recall", "min"),
    "tstr_accuracy": ("min_tstr_ratio", "min"),
    "dcr_share": ("max_dcr_share", "max"),
    "near_copy_share": ("max_near_copy_share", "max"),
    "mia_auc": ("max_mia_auc", "max"),
    "epsilon": ("max_epsilon", "max"),
}
CONDITIONAL_ONLY = {"tstr_accuracy"}


class GatePolicy(BaseModel):
    """Thresholds every candidate must meet before it becomes champion and is published."""
    model_config = ConfigDict(extra="forbid")

    max_fid_ratio: float = Field(4.0, gt=0, description="fid_like must be at most this times fid_like_floor (both at 2,000 images a side)")
    max_kid: float | None = Field(None, description="KID must be at most this (default: not gated; its real-vs-real value is about 0, so no ratio to it is stable)")
    min_precision: float = Field(0.5, ge=0, le=1, description="share of samples on the real manifold")
    min_recall: float = Field(0.2, ge=0, le=1, description="share of the real manifold the samples reach")
    min_tstr_ratio: float = Field(0.9, ge=0, le=2, description="conditional runs: tstr_accuracy must be at least this times trtr_accuracy")
    min_tstr_accuracy: float | None = Field(None, ge=0, le=1, description="conditional runs: an absolute floor for tstr_accuracy as well (default: none)")
    max_dcr_share: float = Field(0.57, ge=0, le=1, description="share of samples closer to train than to holdout (0.5 ideal)")
    max_near_copy_share: float = Field(0.05, ge=0, le=1, description="share of samples nearer a train record than 99% of real unseen data")
    max_mia_auc: float = Field(0.6, ge=0, le=1, description="membership-inference AUC (0.5 ideal)")
    max_epsilon: float | None = Field(None, gt=0, description="differential privacy: the run must be DP with ε at most this (a run without DP fails; default: not required)")

    def thresholds(self, metrics: dict[str, float], conditional: bool | None = None) -> dict[str, dict]:
        """Each gated metric with its value, threshold, direction and verdict.

        A metric the run should have produced but did not (``value`` None) fails.
        """
        if conditional is None:
            conditional = "tstr_accuracy" in metrics
        out = {}
        for metric, (field, direction) in RULES.items():
            if metric in CONDITIONAL_ONLY and not conditional or getattr(self, field) is None:
                continue
            limit, derived = self._limit(metric, metrics)
            value = metrics.get(metric)
            ok = value is not None and limit is not None and (value <= limit if direction == "max" else value >= limit)
            out[metric] = {"value": value, direction: limit, "passed": bool(ok), "derived": derived}
        return out

    def _limit(self, metric: str, metrics: dict[str, float]) -> tuple[float | None, str]:
        """A metric's threshold on this run, and how it was derived (None: a reference is
        missing, and the gate fails closed)."""
        field = RULES[metric][0]
        if metric == "fid_like":
            floor = metrics.get("fid_like_floor")
            count = int(metrics.get("fid_like.count", 0))
            at = f", {count} vs {count} images, mean of subsets" if count else ""
            return ((self.max_fid_ratio * floor if floor is not None else None),
                    f"{self.max_fid_ratio:g} x fid_like_floor {floor if floor is None else f'{floor:.4g}'} "
                    f"(real train vs real holdout{at})")
        if metric == "tstr_accuracy":
            trtr = metrics.get("trtr_accuracy")
            relative = self.min_tstr_ratio * trtr if trtr is not None else None
            derived = f"{self.min_tstr_ratio:g} x trtr_accuracy {trtr if trtr is None else f'{trtr:.4g}'}"
            if self.min_tstr_accuracy is not None and (relative is None or self.min_tstr_accuracy > relative):
                return self.min_tstr_accuracy, f"min_tstr_accuracy (above {derived})"
            return relative, derived
        return getattr(self, field), f"{field} (fixed)"

    def failures(self, metrics: dict[str, float], conditional: bool | None = None) -> list[str]:
        """One line per failing gate, naming the metric, its value and its threshold."""
        lines = []
        for metric, row in self.thresholds(metrics, conditional).items():
            if not row["passed"]:
                bound = describe(row)
                value = "missing" if row["value"] is None else f"{row['value']:.4g}"
                lines.append(f"{metric}={value} (needs {bound})")
        return lines


class GateFailed(RuntimeError):
    """The candidate failed a gate: it stays ``candidate`` and nothing is published."""


def describe(row: dict) -> str:
    """A verdict row's threshold as ``<= 1.23`` or ``>= 0.9``, or why there is none."""
    limit = row.get("max", row.get("min"))
    if limit is None:
        return f"a reference that is missing: {row.get('derived', '?')}"
    return f"{'<=' if 'max' in row else '>='} {limit:.4g}"
