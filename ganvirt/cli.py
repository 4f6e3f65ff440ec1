"""The ``ganvirt`` command line: run the flow, list, pull and sample synthetic datasets."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from ganvirt import settings


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:  # in a fraction of a second: before run's flags import torch, before any store starts
        _check_source(argv)
    except ValueError as exc:
        if "--debug" in argv:
            import traceback

            traceback.print_exc()
        print(f"ganvirt: error: {one_line(exc)}", file=sys.stderr)
        return 1
    parser = build_parser(run_flags="run" in argv)
    args = parser.parse_args(argv)
    if threading.current_thread() is threading.main_thread():  # only there can Python take signals
        signal.signal(signal.SIGTERM, _terminated)
    try:
        settings.configure_environment()
        if not args.debug:
            _console_without_tracebacks()
        return args.func(args) or 0
    except Terminated:
        print("ganvirt: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("ganvirt: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for the user; the flow run's log keeps the traceback
        if args.debug:
            import traceback

            traceback.print_exc()
        print(f"ganvirt: error: {one_line(exc)}", file=sys.stderr)
        return 1


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the stack unwinds and exit handlers run, so the temporary
    Prefect server a command started stops with it instead of outliving it."""


def _terminated(signum, frame) -> None:
    raise Terminated()


def _check_source(argv: list[str]) -> None:
    """Refuse ``run --source PATH`` where PATH does not exist (``SourceError``)."""
    if "run" not in argv:
        return
    from snapshots.sources import check_local

    for i, arg in enumerate(argv):
        value = argv[i + 1] if arg == "--source" and i + 1 < len(argv) else arg.partition("=")[2] if arg.startswith("--source=") else None
        if value is not None:
            check_local(value)


class _NoTraceback:
    """Wraps a console handler's formatter: the record's message without its traceback (other
    handlers, such as Prefect's API log handler, still get the traceback)."""

    def __init__(self, inner):
        self.inner = inner

    def format(self, record):
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _console_without_tracebacks() -> None:
    """Keep tracebacks off the terminal: Prefect logs them to its console handler when a task
    fails. Idempotent; called again once Prefect has configured logging (on its import)."""
    import logging

    loggers = [logging.getLogger(), *(lg for lg in logging.Logger.manager.loggerDict.values()
                                      if isinstance(lg, logging.Logger))]
    for lg in loggers:
        for h in lg.handlers:
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) \
                    and not isinstance(h.formatter, _NoTraceback):
                h.setFormatter(_NoTraceback(h.formatter or logging.Formatter()))


def _after_prefect_import(args: argparse.Namespace) -> None:
    if not args.debug:
        _console_without_tracebacks()


def one_line(exc: Exception) -> str:
    """A one-line message; pydantic errors name each field, its value and what was expected."""
    errors = getattr(exc, "errors", None)
    if callable(errors) and type(exc).__name__ == "ValidationError":
        return "; ".join(f"{exc.title}.{'.'.join(map(str, e['loc']))}={e.get('input')!r}: {e['msg']}"
                         for e in errors())
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def build_parser(run_flags: bool = True) -> argparse.ArgumentParser:
    """The parser; ``run_flags`` False leaves out ``run``'s flags, which come from the flow's
    parameter models (importing them imports torch: not worth it for the other commands)."""
    parser = argparse.ArgumentParser(prog="ganvirt", description=(
        "GAN data virtualization: train a GAN on real data, evaluate it, register the generator "
        "in MLflow and publish a synthetic dataset. State lives under GANVIRT_HOME (default ./.ganvirt)."))
    parser.add_argument("--debug", action="store_true",
                        help="print full tracebacks (by default an error is one line; the flow run's log keeps the traceback)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_run(sub, run_flags)

    ds = sub.add_parser("datasets", help="list published datasets, or show one version's lineage",
                        description="List published datasets (or the versions of one) with headline metrics; "
                                    "'datasets show NAME[@VERSION]' prints one version's lineage, metrics and gates.")
    ds.add_argument("name", nargs="?", help="show the versions of this dataset only")
    ds.add_argument("ref", nargs="?", metavar="NAME[@VERSION]", help="with 'show': the version to describe (default latest)")
    ds.set_defaults(func=cmd_datasets)

    pull = sub.add_parser("pull", help="copy a published dataset version into a folder and verify every file",
                          description="Put NAME[@VERSION] (default: latest) into DIR: data files, preview.png and a manifest, "
                                      "each sha256 verified; converts the format, and materialises virtual datasets from the registry.")
    pull.add_argument("ref", metavar="NAME[@VERSION]")
    pull.add_argument("--to", required=True, type=Path, help="destination folder (absent or empty, unless --force)")
    pull.add_argument("--format", choices=["npz", "png", "parquet"], help="convert to this format (default: as stored)")
    pull.add_argument("--force", action="store_true", help="write into a non-empty --to")
    pull.set_defaults(func=cmd_pull)

    pub = sub.add_parser("publish", help="publish a new dataset version from the current champion, without training",
                         description="Sample N images from models:/NAME-generator@champion into a new catalog version (runs the republish flow).")
    pub.add_argument("name", metavar="NAME")
    pub.add_argument("-n", type=int, default=10_000, help="number of images (default 10000)")
    pub.add_argument("--seed", type=int, default=0, help="image i uses seed S+i (default 0)")
    pub.add_argument("--format", choices=["npz", "png", "parquet"], default="npz", help="file format (default npz)")
    pub.add_argument("--virtual", action="store_true",
                     help="publish a manifest only (generator, seed, n, class mix, sha256); pull materialises it")
    pub.set_defaults(func=cmd_publish)

    _add_up(sub)

    smp = sub.add_parser("sample", help="sample images on demand from a registered generator",
                         description="Sample from models:/NAME-generator@ALIAS (default alias champion); image i uses seed S+i.")
    smp.add_argument("ref", metavar="NAME[@ALIAS]")
    smp.add_argument("-n", type=int, default=100, help="number of images (default 100)")
    smp.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    smp.add_argument("--label", type=int, help="class of every image (conditional models; default: balanced)")
    smp.add_argument("--out", required=True, type=Path, help="output .npz (images, labels, seeds)")
    smp.set_defaults(func=cmd_sample)
    return parser


def _add_up(sub) -> None:
    upp = sub.add_parser("up", help="start the Prefect server, MLflow server and deployment runner on 127.0.0.1",
                         description="Start a Prefect server (UI and API), an MLflow tracking server and the process serving "
                                     "the deployments, over GANVIRT_HOME; Ctrl-C or SIGTERM stops them all.")
    upp.add_argument("--prefect-port", type=int, default=4200, help="Prefect UI/API port (default 4200)")
    upp.add_argument("--mlflow-port", type=int, default=5000, help="MLflow UI/API port (default 5000)")
    upp.add_argument("--cron", default="0 2 * * *", help="schedule of virtualize/scheduled (default nightly 02:00; '' for none)")
    upp.add_argument("--source", default="digits", help="source of scheduled runs (default digits)")
    for flag, env, example, default in (
            ("--prefect-database", "GANVIRT_PREFECT_DATABASE", "postgresql+asyncpg://user:pw@host:5432/prefect",
             "SQLite in GANVIRT_HOME/prefect"),
            ("--mlflow-backend-store", "GANVIRT_MLFLOW_BACKEND_STORE", "postgresql+psycopg2://user:pw@host:5432/mlflow",
             "SQLite: GANVIRT_HOME/mlflow.db"),
            ("--mlflow-artifacts", "GANVIRT_MLFLOW_ARTIFACTS", "s3://bucket/mlflow", "GANVIRT_HOME/mlartifacts")):
        upp.add_argument(flag, default=os.environ.get(env) or None, metavar="URI",
                         help=f"e.g. {example} (default: ${env}, else {default})")
    upp.set_defaults(func=cmd_up)


def _add_run(sub, with_flags: bool) -> None:
    run = sub.add_parser("run", help="run the whole flow once (ingest, train, evaluate, register, publish)",
                         description="Run the virtualize flow once on a source and publish the result if every "
                                     "gate passes. The flags are the flow's parameters (the Prefect UI's form).")
    if with_flags:
        from flows.params import VirtualizeParams
        from ganvirt import flags

        flags.add_model(run, VirtualizeParams)
    run.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    import catalog
    from flows.params import VirtualizeParams
    from ganvirt import flags
    from snapshots import sources

    given = flags.values(args, VirtualizeParams)
    if "source" in given:
        given["source"] = sources.hide_credentials(given["source"])
    try:
        p = VirtualizeParams(**given)
    except ValidationError as exc:
        raise ValueError(flags.explain(exc, VirtualizeParams)) from None
    catalog.check_name(p.dataset_name())
    from ganvirt import stores

    stores_ready = stores.prepare_in_background()  # arguments are valid: stores start while flows load
    from flows.virtualize import virtualize

    _after_prefect_import(args)
    stores_ready()
    print(stores.describe(), flush=True)
    result = virtualize(p, return_state=True).result()  # re-raises the failing task's exception
    print("\nmetrics:")
    for key, value in result["metrics"].items():
        if ".class_" not in key:
            print(f"  {key:19s} {value:.4f}")
    print(f"model:   models:/{result['model']}/{result['version']} (alias {result['alias']}), run {result['run_id']}")
    print(f"dataset: {result['dataset']}")
    print(f"pull it: ganvirt pull {result['name']}@{Path(result['dataset']).name} --to ./data")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    import catalog

    root = settings.catalog_root()
    if args.name == "show":
        return _show(root, args.ref)
    if args.ref:
        raise ValueError(f"unexpected argument {args.ref!r} (did you mean 'ganvirt datasets show {args.ref}'?)")
    names = [catalog.check_name(args.name)] if args.name else catalog.names(root)
    if args.name and not catalog.versions_of(root, args.name):
        raise catalog.CatalogError(f"no published dataset {args.name!r} in {root}")
    if not names:
        print(f"no published datasets in {root} (run 'ganvirt run' first)")
        return 0
    print(f"{'dataset':24s} {'ver':>4s} {'created':25s} {'images':>8s} {'format':>8s} {'fid_like':>9s} {'floor':>8s} "
          f"{'tstr':>6s} {'trtr':>6s}  generator")
    for name in names:
        for v in catalog.versions_of(root, name):
            m = catalog.manifest(catalog.resolve(root, name, v))
            met = m.get("metrics", {})
            fmt = lambda k, w, met=met: f"{met[k]:{w}.3f}" if k in met else f"{'-':>{w}s}"
            gen = m.get("generator", {})
            kind = "virtual" if m.get("virtual") else m.get("format", "npz")
            print(f"{name:24s} {v:>4d} {m['created']:25s} {m['shape'][0]:>8d} {kind:>8s} {fmt('fid_like', 9)} "
                  f"{fmt('fid_like_floor', 8)} {fmt('tstr_accuracy', 6)} {fmt('trtr_accuracy', 6)}  "
                  f"{gen.get('model', '?')} v{gen.get('version', '?')}")
    print(f"catalog page: {root.rstrip('/')}/index.html")
    return 0


def _show(root: str, ref: str | None) -> int:
    """One version's lineage: generator, run, source, metrics against thresholds, flow run."""
    import catalog
    from catalog.page import near_copies_text, privacy_text

    if not ref:
        raise ValueError("datasets show: expected NAME[@VERSION]")
    name, version = catalog.parse_ref(ref)
    where = catalog.resolve(root, name, version)
    m = catalog.manifest(where)
    gen, src = m.get("generator", {}), m.get("source", {})
    kind = f"virtual ({m.get('format', 'npz')} on pull)" if m.get("virtual") else m.get("format", "npz")
    print(f"{m['name']}@{m['version']}  {m.get('created', '')}  {m['shape'][0]} images {tuple(m['shape'][1:])}  {kind}")
    print(f"  location      {where}")
    print(f"  generator     {gen.get('uri', '?')}  (MLflow run {gen.get('run_id', '?')})")
    print(f"  source        {src.get('uri', '?')}  snapshot sha256 {src.get('fingerprint', '?')}")
    print(f"  sampling      seed {m.get('seed', '?')} (image i uses seed+i); class counts {m.get('class_counts', [])}")
    print(f"  near copies   {near_copies_text(m)}")
    print(f"  privacy       {privacy_text(m)}")
    print(f"  content       sha256 {m.get('content_sha256', '?')}")
    print(f"  extractor     sha256 {m.get('extractor_hash', '?')}")
    print(f"  flow run      {m.get('prefect_flow_run_id') or '-'}")
    print("  metrics       value       gate")
    for key, verdict in m.get("thresholds", {}).items():
        status = "pass" if verdict.get("passed") else "FAIL"
        bound = f"<= {verdict['max']:.4g}" if "max" in verdict else f">= {verdict.get('min', float('nan')):.4g}"
        value = verdict.get("value")
        print(f"    {key:18s} {value if value is not None else float('nan'):9.4f}  {bound:12s} {status}")
    print(f"  pull it       ganvirt pull {m['name']}@{m['version']} --to ./{m['name']}-v{m['version']}")
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    import catalog

    folder = catalog.pull(settings.catalog_root(), args.ref, args.to, fmt=args.format, force=args.force,
                          sampler=_registry_sampler)
    m = catalog.manifest(folder)
    how = " (materialised from the registry, checksum verified)" if m.get("materialised") else ""
    print(f"pulled {m['name']}@{m['version']} as {m['format']} to {folder} ({len(m['files'])} files verified){how}")
    return 0


def _registry_sampler(m: dict):
    """Virtual datasets only: sample the registered generator the manifest names."""
    from registry.generators import materialise

    return materialise(m)


def cmd_publish(args: argparse.Namespace) -> int:
    import catalog
    from ganvirt import stores
    from registry.generators import version_of

    name = catalog.check_name(args.name)
    version_of(name, "champion")  # a clear error before any store starts, where there is nothing to publish
    stores_ready = stores.prepare_in_background()
    from flows.republish import RepublishParams, republish

    _after_prefect_import(args)
    params = RepublishParams(name=name, n=args.n, seed=args.seed, format=args.format, virtual=args.virtual)
    stores_ready()
    print(stores.describe(), flush=True)
    folder = republish(params)
    print(f"published {folder}")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from ganvirt.services import Stack, up

    return up(Stack(args.prefect_port, args.mlflow_port, args.cron, args.source, args.prefect_database,
                    args.mlflow_backend_store, args.mlflow_artifacts))


def cmd_sample(args: argparse.Namespace) -> int:
    import numpy as np

    import catalog
    from registry.generators import sample

    name, _, alias = args.ref.partition("@")
    catalog.check_name(name)
    if args.n < 1:
        raise ValueError(f"-n {args.n}: expected a positive number of images")
    images, labels, seeds, uri = sample(name, alias or "champion", args.n, args.seed, args.label)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"images": images, "seeds": seeds} | ({"labels": labels} if labels is not None else {})
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {len(images)} images {tuple(images.shape[1:])} from {uri} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
