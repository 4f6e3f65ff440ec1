"""Quality and privacy gates that fail closed: a generator becomes ``champion`` and is
published only if every gate passes; a missing gated metric fails too."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# metric → (policy field, direction); fid_like is bounded relative to its real-vs-real floor
RULES: dict[str, tuple[str, str]] = {
    "fid_like": ("max_fid_ratio", "max"),
    "kid": ("max_kid", "max"),
    "precision": ("min_precision", "min"),
    "recall": ("min_recall", "min"),
    "tstr_accuracy": ("min_tstr_accuracy", "min"),
    "dcr_share": ("max_dcr_share", "max"),
    "near_copy_share": ("max_near_copy_share", "max"),
    "mia_auc": ("max_mia_auc", "max"),
}
CONDITIONAL_ONLY = {"tstr_accuracy"}


class GatePolicy(BaseModel):
    """Thresholds every candidate must meet before it becomes champion and is published."""
    model_config = ConfigDict(extra="forbid")

    max_fid_ratio: float = Field(4.0, gt=0, description="fid_like must be at most this times fid_like_floor")
    max_kid: float = Field(50.0, description="KID (extractor-feature scale) must be at most this")
    min_precision: float = Field(0.5, ge=0, le=1, description="share of samples on the real manifold")
    min_recall: float = Field(0.2, ge=0, le=1, description="share of the real manifold the samples reach")
    min_tstr_accuracy: float = Field(0.8, ge=0, le=1, description="conditional runs: train-synthetic, test-real accuracy")
    max_dcr_share: float = Field(0.57, ge=0, le=1, description="share of samples closer to train than to holdout (0.5 ideal)")
    max_near_copy_share: float = Field(0.05, ge=0, le=1, description="share of samples nearer a train record than 99% of real unseen data")
    max_mia_auc: float = Field(0.6, ge=0, le=1, description="membership-inference AUC (0.5 ideal)")

    def thresholds(self, metrics: dict[str, float], conditional: bool | None = None) -> dict[str, dict]:
        """Each gated metric with its value, threshold, direction and verdict.

        A metric the run should have produced but did not (``value`` None) fails.
        """
        if conditional is None:
            conditional = "tstr_accuracy" in metrics
        out = {}
        for metric, (field, direction) in RULES.items():
            if metric in CONDITIONAL_ONLY and not conditional:
                continue
            limit = getattr(self, field)
            if metric == "fid_like" and "fid_like_floor" in metrics:
                limit = limit * metrics["fid_like_floor"]
            value = metrics.get(metric)
            ok = value is not None and (value <= limit if direction == "max" else value >= limit)
            out[metric] = {"value": value, direction: limit, "passed": bool(ok)}
        return out

    def failures(self, metrics: dict[str, float], conditional: bool | None = None) -> list[str]:
        """One line per failing gate, naming the metric, its value and its threshold."""
        lines = []
        for metric, row in self.thresholds(metrics, conditional).items():
            if not row["passed"]:
                bound = f"<= {row['max']:.4g}" if "max" in row else f">= {row['min']:.4g}"
                value = "missing" if row["value"] is None else f"{row['value']:.4g}"
                lines.append(f"{metric}={value} (needs {bound})")
        return lines


class GateFailed(RuntimeError):
    """The candidate failed a gate: it stays ``candidate`` and nothing is published."""
