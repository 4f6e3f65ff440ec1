"""Quality gates: a generator becomes ``champion`` and is published only if every gate passes."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Gate:
    max_fid_ratio: float = 4.0       # fid_like must be ≤ this × fid_like_floor
    min_tstr_accuracy: float = 0.8   # conditional runs: tstr_accuracy must reach this

    def thresholds(self, metrics: dict[str, float]) -> dict[str, dict]:
        """Each gated metric with its value, limit and verdict."""
        out = {"fid_like": {"value": metrics["fid_like"], "max": self.max_fid_ratio * metrics["fid_like_floor"]}}
        if "tstr_accuracy" in metrics:
            out["tstr_accuracy"] = {"value": metrics["tstr_accuracy"], "min": self.min_tstr_accuracy}
        for row in out.values():
            row["passed"] = (row["value"] <= row["max"]) if "max" in row else (row["value"] >= row["min"])
        return out

    def failures(self, metrics: dict[str, float]) -> list[str]:
        """One line per failing gate, naming the metric, its value and its threshold."""
        lines = []
        for key, row in self.thresholds(metrics).items():
            if not row["passed"]:
                bound = f"<= {row['max']:.4g}" if "max" in row else f">= {row['min']:.4g}"
                lines.append(f"{key}={row['value']:.4g} (needs {bound})")
        return lines

    def to_dict(self) -> dict:
        return asdict(self)


class GateFailed(RuntimeError):
    """The candidate failed a gate: it stays ``candidate`` and nothing is published."""
