"""Formal privacy bookkeeping: the ε budget per source, and the facts a DP run records (MLflow
run params, registered-version tags, the catalog manifest). The DP training itself is
``gan.private``."""

from __future__ import annotations

import os

from gan.private import Privacy, default_delta
from gan.train import TrainConfig
from tasks.tracking import client

BUDGET_ENV = "GANVIRT_EPSILON_BUDGET"
COVERS = "the train split of the source snapshot"
OUTSIDE = ("the evaluation scores and the gate decision are computed on the real holdout, outside this guarantee; "
           "so is the near-copy filter at publication")


class BudgetExceeded(ValueError):
    """A DP run would take a source's ε past its budget: refused before training."""


def budget(value: float | None) -> float | None:
    """The ε budget of this run's source: the flow parameter, else ``GANVIRT_EPSILON_BUDGET``, else none."""
    if value is not None:
        return value
    raw = os.environ.get(BUDGET_ENV, "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{BUDGET_ENV}={raw!r}: expected a number (the ε budget per source)") from None


def spent_on(fingerprint: str, exclude_run: str | None = None) -> tuple[float, int]:
    """(ε requested by every DP run on this snapshot, in any experiment, and how many runs):
    basic composition, the runs' ε added up. A run counts from its start, finished or not."""
    c = client()
    experiments = [e.experiment_id for e in c.search_experiments()]
    runs = c.search_runs(experiments, filter_string=f"params.snapshot = '{fingerprint}'", max_results=50_000)
    eps = [float(r.data.params["dp.epsilon"]) for r in runs
           if "dp.epsilon" in r.data.params and r.info.run_id != exclude_run]
    return sum(eps), len(eps)


def check_budget(fingerprint: str, requested: float, limit: float | None, exclude_run: str | None = None) -> None:
    """Refuse, in one line naming the spent, requested and remaining ε, a DP run over budget."""
    if limit is None or not requested:
        return
    spent, runs = spent_on(fingerprint, exclude_run)
    if spent + requested > limit * (1 + 1e-9):
        raise BudgetExceeded(f"source snapshot {fingerprint[:16]}: ε budget {limit:g} has {spent:g} spent by {runs} DP "
                             f"run(s); this run requests {requested:g} and {max(0.0, limit - spent):g} remains: refused "
                             "before training, nothing written")


def start_params(cfg: TrainConfig, num_train: int) -> dict[str, object]:
    """Logged when a DP run starts (the ε it may spend counts against the budget from then)."""
    if not cfg.dp_epsilon:
        return {}
    return {"dp.epsilon": cfg.dp_epsilon, "dp.delta": cfg.dp_delta or default_delta(num_train),
            "dp.max_grad_norm": cfg.dp_max_grad_norm, "dp.covers": COVERS}


def facts(p: Privacy) -> dict[str, object]:
    """What a finished DP run spent, as run params and version tags (``dp.*``)."""
    return {f"dp.{k}": v for k, v in p.to_dict().items() if k not in ("epsilon", "delta", "max_grad_norm")} | {
        "dp.epsilon_spent": p.epsilon}


def manifest_entry(params: dict[str, str]) -> dict[str, object]:
    """The manifest's ``privacy`` from the training run's params: ε, δ and what they cover, or
    ``epsilon: null`` (no formal guarantee)."""
    if "dp.epsilon" not in params:
        return {"epsilon": None, "delta": None, "guarantee": "none: trained without differential privacy"}
    num = lambda k: float(params[k]) if k in params else None
    return {"epsilon": num("dp.epsilon_spent") or num("dp.epsilon"), "epsilon_budgeted": num("dp.epsilon"),
            "delta": num("dp.delta"), "noise_multiplier": num("dp.noise_multiplier"),
            "sample_rate": num("dp.sample_rate"), "steps": int(float(params.get("dp.steps", 0))) or None,
            "max_grad_norm": num("dp.max_grad_norm"), "accountant": params.get("dp.accountant"),
            "covers": f"{COVERS} (sha256 {params.get('snapshot', '?')})", "outside": OUTSIDE}
