"""The `sealog` command: serve, demo and administration, each a thin caller of the library."""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from sealog import auth, sampledata, times
from sealog.config import Settings, SettingsError
from sealog.events import Redactor, recorded_by_api_key
from sealog.ingest import ingest
from sealog.ledger import checkpoint, tree
from sealog.store import Store, migrate, open_store
from sealog.store.base import ApiKeyRow, Conflict, NotFound, Org
from sealog.store.sqlite import with_option


class CommandError(Exception):
    """Raised for a command that cannot be carried out; printed without a traceback."""


class ProgressBar:
    """A one-line progress bar on a terminal (a few plain lines elsewhere); total None
    counts without a bar."""

    def __init__(self, total: int | None, label: str, stream: TextIO | None = None):
        self.total = total
        self.label = label
        self.stream = stream or sys.stderr  # the stderr of now, not of import time
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._last = -1

    def update(self, done: int) -> None:
        step = done * 100 // self.total if self.total else done // 100_000
        if step == self._last:
            return
        self._last = step
        rate = done / max(time.monotonic() - self.started, 1e-9)
        if self.total:
            width = 30
            filled = width * min(done, self.total) // self.total
            text = (f"{self.label} [{'#' * filled}{'.' * (width - filled)}] "
                    f"{done:,}/{self.total:,} {rate:,.0f}/s")
            finished = done >= self.total
        else:
            text, finished = f"{self.label}: {done:,} ({rate:,.0f}/s)", False
        if self.tty:
            self.stream.write(f"\r{text}" + ("\n" if finished else ""))
        elif not self.total or step % 25 == 0:
            self.stream.write(text + "\n")
        self.stream.flush()


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        data_dir=Path(args.data_dir) if getattr(args, "data_dir", None) else None,
        database_url=getattr(args, "database_url", None),
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        ingest_processes=getattr(args, "ingest_processes", None),
    )


def _open(args: argparse.Namespace) -> Store:
    settings = _settings(args)
    return open_store(settings.resolved_database_url)


@contextmanager
def _store(args: argparse.Namespace) -> Iterator[Store]:
    """The configured store, closed afterwards."""
    store = _open(args)
    try:
        yield store
    finally:
        store.close()


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2) if args.json else text)


def _org_dict(org: Org) -> dict[str, Any]:
    return {"id": org.id, "name": org.name, "created_at": times.format_rfc3339(org.created_at),
            "log_size": org.log_size,
            "closed_at": None if org.closed_at is None else times.format_rfc3339(org.closed_at)}


def _key_dict(row: ApiKeyRow) -> dict[str, Any]:
    return {
        "id": row.id, "org_id": row.org_id, "name": row.name, "scopes": list(row.scopes),
        "created_at": times.format_rfc3339(row.created_at),
        "revoked_at": times.format_rfc3339(row.revoked_at) if row.revoked_at else None,
        "last_used_at": times.format_rfc3339(row.last_used_at) if row.last_used_at else None,
        "created_by": row.created_by,
    }


# -- commands --------------------------------------------------------------------------


def tune_gc_for_serving() -> None:
    """Sets the garbage collector up for a long-running server that ingests batches."""
    # A batch of events is tens of thousands of short-lived containers, freed by reference
    # counting: a larger young generation lets them die before the collector promotes and
    # rescans them, and what the server set up at start is never scanned again.
    # Measured (bench/ingest.py's HTTP path): 6.1-6.2k -> 8.2-8.8k events/s.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from sealog.api.app import create_app

    settings = _settings(args)
    processes = getattr(args, "workers", None) or 1
    if processes < 1 or processes > MAX_API_PROCESSES:
        raise CommandError(f"--workers must be 1 to {MAX_API_PROCESSES}, not {processes}")
    if processes > 1:
        if not settings.resolved_database_url.startswith(("postgresql://", "postgres://")):
            raise CommandError(
                "--workers 2 or more needs PostgreSQL: SQLite lets one process write at a "
                "time, so other API processes would only wait for its lock. Serve one process "
                "(it prepares batches in --ingest-processes beside it), or set "
                "SEALOG_DATABASE_URL=postgresql://…")
        _serve_processes(settings, processes)
        return 0
    app = create_app(settings)
    tune_gc_for_serving()
    print(f"Sealog serving {settings.resolved_database_url} on "
          f"http://{settings.host}:{settings.port}", file=sys.stderr)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
    return 0


MAX_API_PROCESSES = 64


def _serve_processes(settings: Settings, processes: int) -> None:
    """Serves the API from `processes` processes on one port (uvicorn's supervisor starts
    them, and starts another for one that dies). Each builds its app from the environment,
    which this process fills with the settings it resolved from its flags."""
    import uvicorn

    os.environ.update({
        "SEALOG_DATA_DIR": str(settings.data_dir.resolve()),
        "SEALOG_DATABASE_URL": settings.resolved_database_url,
        "SEALOG_HOST": settings.host,
        "SEALOG_PORT": str(settings.port),
        # Many API processes already use the cores: each prepares its batches itself
        # unless told otherwise.
        "SEALOG_INGEST_PROCESSES": str(settings.ingest_processes or 0),
    })
    print(f"Sealog serving {settings.resolved_database_url} on "
          f"http://{settings.host}:{settings.port} from {processes} processes",
          file=sys.stderr)
    uvicorn.run("sealog.cli:serving_app", factory=True, workers=processes,
                host=settings.host, port=settings.port, log_level="warning")


def serving_app() -> Any:
    """The app of one of `sealog serve --workers N`'s processes, from its environment."""
    from sealog.api.app import create_app

    app = create_app(Settings.from_env())
    tune_gc_for_serving()
    return app


DEMO_ADMIN_EMAIL = "admin@acme.example"


def seed_demo(*, store: Store, count: int, days: int, progress: Callable[[int], None]) -> tuple[
        Org, auth.NewApiKey, str]:
    """An org full of realistic events, an admin API key for it and the password of its
    admin user (DEMO_ADMIN_EMAIL)."""
    org = auth.create_org(store=store, name="Acme Robotics", org_id="acme")
    key = auth.create_api_key(store=store, org_id=org.id, name="demo admin",
                              scopes=list(auth.SCOPES))
    password = auth.generate_password()
    auth.create_user(store=store, org_id=org.id, email=DEMO_ADMIN_EMAIL, role="admin",
                     password=password, name="Demo Admin")
    redactor = Redactor()
    sender = recorded_by_api_key(key.row.id)  # the platform's events, as if the key sent them
    batch: list[dict[str, Any]] = []
    done = 0
    for event in sampledata.generate_events(count, days=days):
        batch.append(event)
        if len(batch) == 1000:
            ingest(store=store, org_id=org.id, raw_events=batch, redactor=redactor,
                   recorded_by=sender)
            done += len(batch)
            batch = []
            progress(done)
    if batch:
        ingest(store=store, org_id=org.id, raw_events=batch, redactor=redactor,
               recorded_by=sender)
        done += len(batch)
        progress(done)
    return store.get_org(org.id), key, password


DEMO_MARKER = ".sealog-demo"


def cmd_demo(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir or "sealog-demo")
    if data_dir.exists() and any(data_dir.iterdir()):
        if not (data_dir / DEMO_MARKER).exists() and not args.fresh:
            raise CommandError(
                f"{data_dir} holds data that sealog demo did not make; pass --fresh to "
                "replace it anyway, or --data-dir to use another folder"
            )
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / DEMO_MARKER).write_text("made by sealog demo; replaced by the next one\n")
    settings = Settings.from_env(data_dir=data_dir, database_url=None, host=args.host,
                                 port=args.port)
    # The demo's database is always the SQLite file in its folder, whatever
    # SEALOG_DATABASE_URL says: the folder is what it replaces.
    store = open_store(with_option(f"sqlite:///{data_dir.resolve() / 'sealog.db'}",
                                   "synchronous", settings.sqlite_synchronous))
    try:
        bar = ProgressBar(args.events, "Generating demo events")
        org, key, password = seed_demo(store=store, count=args.events, days=args.days,
                                       progress=bar.update)
        signer = checkpoint.load_signer(settings.resolved_signing_key_file, settings.log_host)
        store.add_log_key(signer.verifier.text(), times.now_us())
        checkpoint.sign_latest(store=store, signer=signer, host=settings.log_host,
                               org_id=org.id)
    finally:
        store.close()
    base = f"http://{settings.host}:{settings.port}"
    print(f"""
Sealog demo: org {org.name} ({org.id}) with {org.log_size:,} events in {data_dir}/

  Open {base}/?org={org.id} and sign in (admin, shown once):
    org       {org.id}
    email     {DEMO_ADMIN_EMAIL}
    password  {password}

  API key (admin, shown once): {key.secret}

Try:
  curl -s -H 'Authorization: Bearer {key.secret}' '{base}/api/v1/events?range=7d&limit=2'
  curl -s -H 'Authorization: Bearer {key.secret}' '{base}/api/v1/events/count?range=30d&q=guardrail'
  OpenAPI: {base}/api/v1/openapi.json

  Log verifier key (pin it): {signer.verifier.text()}
  sealog verify --url {base} --api-key '{key.secret}' --verifier-key '{signer.verifier.text()}'
""", flush=True)  # read by a service manager or `| tee` while the demo goes on serving
    if args.no_serve:
        return 0
    args.data_dir = str(data_dir)
    args.database_url = f"sqlite:///{data_dir.resolve() / 'sealog.db'}"
    return cmd_serve(args)


def cmd_worker(args: argparse.Namespace) -> int:
    import signal
    import threading

    from sealog import retention
    from sealog.exports import jobs
    from sealog.streams import delivery

    settings = _settings(args)
    count = args.workers or max(settings.export_workers, 1)
    url = settings.resolved_database_url
    if url.startswith("sqlite:///"):
        # A worker streams whole exports: mapping the database would grow it with their size.
        url = with_option(url, "mmap_mb", "0")
    store = open_store(url)
    signer = checkpoint.load_signer(settings.resolved_signing_key_file, settings.log_host)
    workers = [jobs.Worker(store=store, folder=settings.resolved_export_dir, signer=signer,
                           host=settings.log_host, lease_seconds=settings.export_lease_seconds)
               for _ in range(count)]
    stream_workers = delivery.stream_workers(settings=settings, store=store, signer=signer)
    purger = retention.Purger(store=store, redactor=Redactor(settings.redact_keys),
                              signer=signer, host=settings.log_host,
                              interval=settings.purge_interval_seconds,
                              batch=settings.purge_batch)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    for worker in workers:
        worker.start()
    for stream_worker in stream_workers:
        stream_worker.start()
    purger.start()
    print(f"Sealog export worker: {count} worker(s) and {len(stream_workers)} stream "
          f"worker(s) on {settings.resolved_database_url}", file=sys.stderr)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        purger.stop()
        for stream_worker in stream_workers:
            stream_worker.stop()
        for worker in workers:
            worker.stop()
        store.close()
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from sealog.exports import jobs, writers
    from sealog.search import build_filter

    settings = _settings(args)
    out = Path(args.output)
    fmt = args.format or out.suffix.lstrip(".")
    if fmt not in writers.FORMATS:
        raise CommandError(f"unknown format {fmt!r}; use --format csv, xlsx or jsonl")
    store = _open(args)
    try:
        head = store.log_head(args.org)
        flt = build_filter(org_id=args.org, range_preset=args.range, start=args.start,
                           end=args.end, tz=args.tz, categories=args.category or [], q=args.q)
        flt = dataclasses.replace(flt, max_index=head.size)
        total = store.count_events(flt)
        signer = checkpoint.load_signer(settings.resolved_signing_key_file, settings.log_host)
        bar = ProgressBar(total, f"Exporting {fmt}")
        selection = {"range": args.range, "from": args.start, "to": args.end, "tz": args.tz,
                     "categories": list(flt.categories), "q": args.q}
        part = out.with_name(out.name + ".part")
        count = jobs.write_file(store=store, org_id=args.org, format=fmt, flt=flt, path=part,
                                signer=signer, host=settings.log_host, selection=selection,
                                progress=bar.update, total=total)
        part.replace(out)
        bar.update(count)
        ingest(store=store, org_id=args.org, redactor=Redactor(), raw_events=[{
            "action": "audit_log.exported", "result": "success",
            "description": f"Exported {count} events to {out.name} from the command line",
            "actor": {"id": "cli", "name": "sealog export", "type": "system"},
            "metadata": {"format": fmt, "rows": count, "selection": selection},
        }])
    finally:
        store.close()
    print(f"Wrote {count:,} events to {out}")
    return 0


def cmd_orgs_create(args: argparse.Namespace) -> int:
    with _store(args) as store:
        org = auth.create_org(store=store, name=args.name, org_id=args.id)
    _print(args, _org_dict(org), f"Created org {org.name} with id {org.id}")
    return 0


def cmd_orgs_list(args: argparse.Namespace) -> int:
    with _store(args) as store:
        orgs = store.list_orgs()
    lines = [f"{o.id}\t{o.name}\t{o.log_size} events"
             + ("" if o.closed_at is None else f"\tclosed {times.format_rfc3339(o.closed_at)}")
             for o in orgs] or ["(no orgs)"]
    _print(args, [_org_dict(o) for o in orgs], "\n".join(lines))
    return 0


def cmd_orgs_delete(args: argparse.Namespace) -> int:
    from sealog import closing

    settings = _settings(args)
    with _store(args) as store:
        org = store.get_org(args.org)
        if org.closed_at is None:  # else a closing cut short: it goes on without asking
            if args.confirm is None and sys.stdin.isatty():
                args.confirm = input(f"Delete org {org.name} ({org.id}) and its "
                                     f"{org.log_size:,} events? Type its id to confirm: ")
            if (args.confirm or "").strip() != org.id:
                raise CommandError(f"not confirmed: give --confirm {org.id} (its id); "
                                   "nothing was deleted")
        signer = checkpoint.load_signer(settings.resolved_signing_key_file, settings.log_host)
        bar = ProgressBar(max(org.log_size - 1, 0), "Deleting events")
        done = closing.close_org(store=store, redactor=Redactor(settings.redact_keys),
                                 signer=signer, host=settings.log_host, org_id=org.id,
                                 actor=CLI_ACTOR, pause=0.1, progress=bar.update)
        bar.update(done.deleted)
    _print(args, {"org_id": done.org_id, "closed_at": times.format_rfc3339(done.closed_at),
                  "record_index": done.record_index, "deleted_events": done.deleted,
                  "checkpoint": done.checkpoint.note},
           f"Closed the log of org {done.org_id} and deleted {done.deleted:,} events, its "
           f"members, keys, exports, streams and settings. Its closing record is index "
           f"{done.record_index}; its final checkpoint, kept with its tree hashes:\n"
           f"{done.checkpoint.note}\nAn auditor who holds an older checkpoint of size N: "
           f"sealog orgs closure {done.org_id} --from-size N --output closure.jsonl")
    return 0


def cmd_orgs_closure(args: argparse.Namespace) -> int:
    from sealog import closing

    settings = _settings(args)
    out = Path(args.output)
    part = out.with_name(out.name + ".part")
    with _store(args) as store:
        try:
            with part.open("wb") as f:
                closing.write_closure(f, store=store, org_id=args.org, host=settings.log_host,
                                      from_sizes=args.from_size or [])
        except ValueError as exc:
            part.unlink(missing_ok=True)
            raise CommandError(str(exc)) from None
        except BaseException:
            part.unlink(missing_ok=True)
            raise
    part.replace(out)
    print(f"Wrote the closure file of org {args.org} to {out}; check it with sealog verify "
          f"{out} --verifier-key KEY (and the --state of the auditor's earlier verify)")
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    with _store(args) as store:
        new = auth.create_api_key(store=store, org_id=args.org, scopes=args.scope or [],
                                  name=args.name or "")
    data = {**_key_dict(new.row), "secret": new.secret}
    _print(args, data, f"Created API key {new.row.id} ({' '.join(new.row.scopes)}) "
                       f"for org {new.row.org_id}.\nSecret (shown once, store it now):\n"
                       f"{new.secret}")
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    with _store(args) as store:
        store.get_org(args.org)
        rows = store.list_api_keys(args.org)
    lines = [
        f"{r.id}\t{r.name}\t{' '.join(r.scopes)}\t"
        f"{'revoked' if r.revoked_at else 'active'}" for r in rows
    ] or ["(no keys)"]
    _print(args, [_key_dict(r) for r in rows], "\n".join(lines))
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    with _store(args) as store:
        row = auth.revoke_api_key(store=store, org_id=args.org, key_id=args.key_id)
    _print(args, _key_dict(row), f"Revoked API key {row.id} of org {row.org_id}")
    return 0


# The actor of changes made through the command line: the operator at the machine.
CLI_ACTOR = {"id": "sealog-cli", "name": "Operator (sealog command line)", "type": "system"}


def _streams_context(args: argparse.Namespace) -> tuple[Settings, Any]:
    from sealog.streams.secrets import SecretBox

    settings = _settings(args)
    return settings, SecretBox.load(settings.resolved_streams_key_file)


def _stream_line(view: dict[str, Any]) -> str:
    return (f"{view['id']}\t{view['name']}\t{view['state']}\t{view['url']}\t"
            f"next index {view['next_index']:,}, {view['lag_events']:,} behind"
            + (f"\tlast error: {view['last_error']}" if view["last_error"] else ""))


def _stream_headers(given: list[str]) -> dict[str, str]:
    headers = {}
    for header in given:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise CommandError(f"--header {header!r}: write it as Name: value")
        headers[name.strip()] = value.strip()
    return headers


def _ca_bundle(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"--ca-bundle {path}: cannot read it ({exc})") from None


def cmd_streams_create(args: argparse.Namespace) -> int:
    from sealog.streams import manage

    settings, box = _streams_context(args)
    with _store(args) as store:
        row, secret = manage.create_stream(
            store=store, box=box, redactor=Redactor(settings.redact_keys),
            policy=manage.Policy(settings.streams_allow_http, settings.streams_allow_private),
            org_id=args.org, actor=CLI_ACTOR, name=args.name, url=args.url, kind=args.kind,
            fmt=args.format, start=args.start, headers=_stream_headers(args.header or []),
            categories=args.category or [], query=args.query or "",
            include_proofs=args.include_proofs, ca_bundle=_ca_bundle(args.ca_bundle),
            batch_events=args.batch_events, batch_bytes=args.batch_bytes)
        view = manage.view(store, row)
    text = f"Created {row.kind} stream {row.id} to {view['url']} for org {args.org}."
    if secret is not None:
        text += f"\nSigning secret (shown once, give it to the receiver now):\n{secret}"
    _print(args, {**view, "secret": secret}, text)
    return 0


def cmd_streams_update(args: argparse.Namespace) -> int:
    from sealog.streams import manage

    settings, box = _streams_context(args)
    changes: dict[str, Any] = {key: getattr(args, key) for key in (
        "name", "url", "format", "query", "include_proofs", "batch_events", "batch_bytes")
        if getattr(args, key) is not None}
    if args.header is not None:
        changes["headers"] = _stream_headers(args.header)
    if args.category is not None:
        changes["categories"] = args.category
    if args.ca_bundle is not None:
        changes["ca_bundle"] = _ca_bundle(args.ca_bundle) if args.ca_bundle else None
    if not changes:
        raise CommandError("nothing to change: give at least one setting (see --help)")
    with _store(args) as store:
        row = manage.update_stream(
            store=store, box=box, redactor=Redactor(settings.redact_keys),
            policy=manage.Policy(settings.streams_allow_http, settings.streams_allow_private),
            org_id=args.org, actor=CLI_ACTOR, stream_id=args.stream_id, changes=changes)
        view = manage.view(store, row)
    _print(args, view, _stream_line(view))
    return 0


def cmd_streams_list(args: argparse.Namespace) -> int:
    from sealog.streams import manage

    with _store(args) as store:
        size = store.log_head(args.org).size
        views = [manage.view(store, r, size) for r in store.list_streams(args.org)]
    _print(args, views, "\n".join(map(_stream_line, views)) or "(no streams)")
    return 0


def cmd_streams_rotate_secret(args: argparse.Namespace) -> int:
    from sealog.streams import manage

    settings, box = _streams_context(args)
    with _store(args) as store:
        row, secret = manage.rotate_secret(
            store=store, box=box, redactor=Redactor(settings.redact_keys), org_id=args.org,
            actor=CLI_ACTOR, stream_id=args.stream_id, overlap_seconds=args.overlap_seconds)
        view = manage.view(store, row)
    _print(args, {**view, "secret": secret},
           f"New signing secret for stream {row.id} (shown once; the old one stays valid "
           f"{args.overlap_seconds:,.0f} s more):\n{secret}")
    return 0


def cmd_streams_change(args: argparse.Namespace) -> int:
    from sealog.streams import manage

    settings = _settings(args)
    redactor = Redactor(settings.redact_keys)
    with _store(args) as store:
        common = {"store": store, "redactor": redactor, "org_id": args.org,
                  "actor": CLI_ACTOR, "stream_id": args.stream_id}
        if args.streams_command == "delete":
            manage.delete_stream(**common)
            _print(args, {"id": args.stream_id, "deleted": True},
                   f"Deleted stream {args.stream_id}")
            return 0
        if args.streams_command == "replay":
            row = manage.replay(**common, index=args.index, received_from=args.start)
        else:
            row = manage.set_state(**common, action=args.streams_command)
        view = manage.view(store, row)
    _print(args, view, _stream_line(view))
    return 0


def _user_dict(user: Any) -> dict[str, Any]:
    return {"id": user.id, "org_id": user.org_id, "email": user.email, "name": user.name,
            "role": user.role, "created_at": times.format_rfc3339(user.created_at)}


def _read_password(args: argparse.Namespace) -> tuple[str, bool]:
    """The new user's password (from stdin, a prompt, or generated) and whether generated."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n"), False
    if args.generate_password or not sys.stdin.isatty():
        return auth.generate_password(), True
    import getpass
    first = getpass.getpass("Password (empty to generate one): ")
    if not first:
        return auth.generate_password(), True
    if getpass.getpass("Repeat it: ") != first:
        raise CommandError("the two passwords differ")
    return first, False


def cmd_users_create(args: argparse.Namespace) -> int:
    password, generated = _read_password(args)
    with _store(args) as store:
        try:
            user = auth.create_user(store=store, org_id=args.org, email=args.email,
                                    role=args.role, password=password, name=args.name or "")
        except auth.Conflict:
            raise
        except ValueError as exc:
            raise CommandError(str(exc)) from None
    data = {**_user_dict(user), "password": password if generated else None}
    text = f"Created {user.role} {user.email} ({user.id}) in org {user.org_id}."
    if generated:
        text += f"\nPassword (shown once, store it now):\n{password}"
    _print(args, data, text)
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    with _store(args) as store:
        store.get_org(args.org)
        users = store.list_users(args.org)
    lines = [f"{u.id}\t{u.email}\t{u.role}\t{u.name}" for u in users] or ["(no users)"]
    _print(args, [_user_dict(u) for u in users], "\n".join(lines))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    import os

    from sealog.ledger import audit
    from sealog.ledger.note import NoteError, Verifier

    keys = args.verifier_key or ([os.environ["SEALOG_VERIFIER_KEY"]]
                                 if os.environ.get("SEALOG_VERIFIER_KEY") else [])
    if not keys:
        raise CommandError("pin the log's key: --verifier-key name+hex8+base64 "
                           "(or SEALOG_VERIFIER_KEY); `sealog log-key` prints it")
    try:
        verifiers = [Verifier.parse(k) for k in keys]
    except NoteError as exc:
        raise CommandError(f"--verifier-key: {exc}") from None
    try:
        if args.batch:
            from sealog.streams import received

            if args.bundle or args.url or args.event_id:
                raise CommandError("give --batch files, a bundle file or --url, one of them")
            report = received.verify_batches(map(Path, args.batch), verifiers)
        elif args.bundle:
            if args.url or args.event_id:
                raise CommandError("give a bundle file, or --url, not both")
            bar = ProgressBar(None, "Verifying")
            report = audit.verify_bundle_file(Path(args.bundle), verifiers, progress=bar.update,
                                              state_path=Path(args.state))
        else:
            url = args.url or os.environ.get("SEALOG_URL")
            api_key = args.api_key or os.environ.get("SEALOG_API_KEY")
            if not url or not api_key:
                raise CommandError("give a bundle file, or --url and --api-key "
                                   "(or SEALOG_URL and SEALOG_API_KEY)")
            server = audit.Server(url, api_key)
            try:
                if args.event_id:
                    report = audit.verify_event(server, verifiers, args.event_id)
                else:
                    bar = ProgressBar(None, "Verifying")
                    report = audit.verify_server(server, verifiers,
                                                 state_path=Path(args.state), progress=bar.update)
            finally:
                server.close()
    except audit.AuditError as exc:
        raise CommandError(str(exc)) from None
    print(report.text())
    return 0 if report.ok else 1


def cmd_migrate(args: argparse.Namespace) -> int:
    applied = migrate(_settings(args).resolved_database_url)
    _print(args, {"applied": applied},
           "\n".join(f"Applied {name}" for name in applied) or "Nothing to apply: up to date")
    return 0


def _open_url(url: str, *, must_exist: bool = False) -> Store:
    """The store a URL names, its SQLite readers mapping none of the file (memory stays
    flat however much is read); must_exist refuses a SQLite file that is not there
    (opening would make it)."""
    if url.startswith(("postgresql://", "postgres://")):
        import psycopg

        try:
            return open_store(url)
        except psycopg.OperationalError as exc:
            raise CommandError(f"cannot open the PostgreSQL database: {exc}") from None
    if must_exist and url.startswith("sqlite:///"):
        from sealog.store.sqlite import split_url

        path = split_url(url)[0]
        if not path.is_file():
            raise CommandError(f"there is no SQLite database at {path}")
    return open_store(with_option(url, "mmap_mb", "0") if url.startswith("sqlite:///")
                      else url)


def cmd_copy(args: argparse.Namespace) -> int:
    from sealog import copying

    bars: dict[str, ProgressBar] = {}

    def progress(org_id: str, done: int, total: int) -> None:
        if org_id not in bars:
            bars[org_id] = ProgressBar(total or None, f"Copying {org_id}")
        bars[org_id].update(done)

    source = _open_url(args.source, must_exist=True)
    try:
        target = _open_url(args.target)
        try:
            copied = copying.copy_deployment(source=source, target=target, progress=progress)
        except copying.CopyError as exc:
            raise CommandError(str(exc)) from None
        finally:
            target.close()
    finally:
        source.close()
    _print(args, copied, f"Copied {copying.describe(copied)}.\nNext: copy the signing key "
                         "file to the new deployment, point SEALOG_DATABASE_URL at the new "
                         "database, and run `sealog verify` against it.")
    return 0


def cmd_log_key(args: argparse.Namespace) -> int:
    settings = _settings(args)
    path = settings.resolved_signing_key_file
    store = _open(args)
    try:
        if args.rotate and path.exists():
            old = checkpoint.load_signer(path, settings.log_host)
            retired = path.with_name(f"{path.name}.{old.verifier.id.hex()}.retired")
            path.rename(retired)
            store.retire_log_key(old.verifier.text(), times.now_us())
            print(f"Retired {old.verifier.text()} (kept in {retired})", file=sys.stderr)
        signer = checkpoint.load_signer(path, settings.log_host)
        store.add_log_key(signer.verifier.text(), times.now_us())
        keys = store.log_keys()
    finally:
        store.close()
    if args.json:
        print(json.dumps({"current": signer.verifier.text(), "keys": [
            {"verifier_key": k, "created_at": times.format_rfc3339(c),
             "retired_at": times.format_rfc3339(r) if r else None} for k, c, r in keys]},
            indent=2))
    else:
        print(signer.verifier.text())
    return 0


# -- parser ----------------------------------------------------------------------------


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="data folder (env SEALOG_DATA_DIR; default ./sealog-data)")
    p.add_argument("--database-url", help="sqlite:///path.db (env SEALOG_DATABASE_URL)")


def _add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON for scripts")


def _stream_options(p: argparse.ArgumentParser, *, changing: bool) -> None:
    """The options streams create and update share; for update, each left out stays."""
    again = " (replaces them all)" if changing else " (repeatable)"
    p.add_argument("--category", action="append", help="send only these" + again)
    p.add_argument("--query", help="send only the events matching this search query")
    p.add_argument("--include-proofs", action=argparse.BooleanOptionalAction,
                   default=None if changing else False,
                   help="each batch carries every event's inclusion proof")
    p.add_argument("--ca-bundle", help="syslog over TLS: a PEM file of the CA certificates "
                   "to trust instead of the system's" + (" ('' for the system's)" if changing
                                                         else ""))
    p.add_argument("--header", action="append", help="'Name: value' sent with each webhook "
                   "request (kept secret)" + again)
    p.add_argument("--batch-events", type=int, default=None if changing else 500,
                   help="events a batch at most")
    p.add_argument("--batch-bytes", type=int, default=None if changing else 1 << 20,
                   help="bytes a batch at most")


def _retention_text(view: dict[str, Any]) -> str:
    days = "keep forever" if view["days"] is None else f"{view['days']} days"
    lines = [f"Policy: {days}{', locked' if view['locked'] else ''}"
             + (f" (the deployment keeps at least {view['min_days']} days)"
                if view["min_days"] else "")]
    if view["retained_from_index"]:
        lines.append(f"Removed under the policy: indexes 0-{view['retained_from_index'] - 1}")
    if view["purge"]:
        lines.append(f"Purge under way to index {view['purge']['to_index']} (ordered at "
                     f"index {view['purge']['record_index']})")
    for hold in view["holds"]:
        if hold["active"]:
            span = "the whole log" if hold["whole_log"] else (
                f"events that occurred from {hold['occurred_from'] or 'the start'} to "
                f"{hold['occurred_to'] or 'now on'}")
            lines.append(f"Legal hold {hold['id']} \"{hold['name']}\" on {span}: "
                         f"{hold['reason']}")
    return "\n".join(lines)


def cmd_retention_show(args: argparse.Namespace) -> int:
    from sealog import retention

    settings = _settings(args)
    with _store(args) as store:
        store.get_org(args.org)
        view = retention.view(store, args.org, min_days=settings.retention_min_days)
    _print(args, view, _retention_text(view))
    return 0


def cmd_retention_set(args: argparse.Namespace) -> int:
    from sealog import retention

    settings = _settings(args)
    if args.forever == (args.days is not None):
        raise CommandError("give --days N or --forever")
    with _store(args) as store:
        retention.set_policy(store=store, redactor=Redactor(settings.redact_keys),
                             org_id=args.org, actor=CLI_ACTOR, days=args.days, lock=args.lock,
                             min_days=settings.retention_min_days)
        view = retention.view(store, args.org, min_days=settings.retention_min_days)
    _print(args, view, _retention_text(view))
    return 0


def cmd_retention_purge(args: argparse.Namespace) -> int:
    from sealog import retention

    settings = _settings(args)
    signer = checkpoint.load_signer(settings.resolved_signing_key_file, settings.log_host)
    with _store(args) as store:
        # A purge removes only signed events: sign those not signed yet.
        checkpoint.sign_latest(store=store, signer=signer, host=settings.log_host,
                               org_id=args.org)
        # Apart from the serving process, a pause between transactions lets its writes in:
        # on SQLite a writer waiting for the file's lock sleeps up to 100 ms between tries.
        steps = retention.purge(store=store, redactor=Redactor(settings.redact_keys),
                                org_id=args.org, batch=settings.purge_batch, pause=0.1)
        removed = sum(s.stop - s.start for s in steps if not s.ordered)
        view = retention.view(store, args.org, min_days=settings.retention_min_days)
    _print(args, {"removed": removed, **view},
           f"Removed {removed:,} events of org {args.org}.\n{_retention_text(view)}")
    return 0


def cmd_holds(args: argparse.Namespace) -> int:
    from sealog import retention

    settings = _settings(args)
    redactor = Redactor(settings.redact_keys)
    with _store(args) as store:
        if args.holds_command == "place":
            row = retention.place_hold(store=store, redactor=redactor, org_id=args.org,
                                       actor=CLI_ACTOR, name=args.name, reason=args.reason,
                                       occurred_from=args.start, occurred_to=args.end)
            _print(args, retention.hold_view(row), f"Placed legal hold {row.id} on org "
                   f"{args.org}.")
        elif args.holds_command == "release":
            row = retention.release_hold(store=store, redactor=redactor, org_id=args.org,
                                         actor=CLI_ACTOR, hold_id=args.hold_id)
            _print(args, retention.hold_view(row), f"Released legal hold {row.id}.")
        else:
            holds = [retention.hold_view(h) for h in store.list_holds(args.org)]
            _print(args, holds, "\n".join(
                f"{h['id']}\t{'active' if h['active'] else 'released'}\t{h['name']}\t"
                f"{h['occurred_from'] or '-'}\t{h['occurred_to'] or '-'}\t{h['reason']}"
                for h in holds) or f"Org {args.org} has no legal holds.")
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    from sealog import erasure

    settings = _settings(args)
    with _store(args) as store:
        store.get_org(args.org)
        matched = erasure.matching(store, args.org, args.query)
        count = len(matched.events)
        if matched.held:
            raise CommandError(f"{len(matched.held):,} of the {count:,} events the query "
                               "matches are under a legal hold (sealog holds list); nothing "
                               "was erased")
        if args.expect is not None and args.expect != count:
            raise CommandError(f"the query matches {count:,} events, not {args.expect:,}; "
                               "nothing was erased")
        if args.expect is None:
            if not sys.stdin.isatty():
                raise CommandError(f"the query matches {count:,} events; give --expect "
                                   f"{count} to erase them without a prompt")
            answer = input(f"Erase the content of {count:,} events of org {args.org}? "
                           "Type the number to confirm: ")
            if answer.strip().replace(",", "") != str(count):
                raise CommandError("not confirmed; nothing was erased")
        done = erasure.erase(store=store, redactor=Redactor(settings.redact_keys),
                             org_id=args.org, actor=CLI_ACTOR, query=args.query,
                             reason=args.reason, expected=count)
    _print(args, {"request_index": done.request_index, "count": len(done.indexes)},
           f"Erased the content of {len(done.indexes):,} events of org {args.org} "
           f"(request recorded at index {done.request_index}).")
    return 0


def _command(sub: Any, name: str, help_text: str, example: str,
             func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=f"{help_text}\n\nExample: {example}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sealog",
        description="Sealog: the searchable, provably untampered audit log of an organization."
                    "\n\nExample: sealog demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(sub, "serve", "Serve the API on the configured database.",
                 "sealog serve --port 8000 --data-dir /var/lib/sealog", cmd_serve)
    _add_db(p)
    p.add_argument("--host", help="address to listen on (env SEALOG_HOST; default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (env SEALOG_PORT; default 8000)")
    p.add_argument("--ingest-processes", type=int,
                   help="processes that prepare ingested batches beside each API process (env "
                        "SEALOG_INGEST_PROCESSES; default 1 with two or more cores, else 0; "
                        "0 with --workers)")
    p.add_argument("--workers", type=int,
                   help="API processes serving the port (PostgreSQL only; default 1); each "
                        "runs its own checkpointer and export workers")

    p = _command(sub, "demo", "Create a data folder full of realistic events and serve it.",
                 "sealog demo --events 50000", cmd_demo)
    p.add_argument("--data-dir", help="folder for the demo (default ./sealog-demo; replaced "
                                      "on every run)")
    p.add_argument("--events", type=int, default=50_000, help="how many events (default 50000)")
    p.add_argument("--days", type=int, default=45, help="spread over this many days (default 45)")
    p.add_argument("--fresh", action="store_true",
                   help="replace the folder even if sealog demo did not make it")
    p.add_argument("--no-serve", action="store_true", help="create the data and exit")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8000)")

    orgs = _command(sub, "orgs", "Create and list organizations.", "sealog orgs list", None)  # type: ignore[arg-type]
    orgs_sub = orgs.add_subparsers(dest="orgs_command", required=True, metavar="ACTION")
    p = _command(orgs_sub, "create", "Create an organization.",
                 "sealog orgs create 'Acme Robotics' --id acme", cmd_orgs_create)
    p.add_argument("name", help="display name")
    p.add_argument("--id", help="org id (default: generated)")
    _add_db(p)
    _add_json(p)
    p = _command(orgs_sub, "list", "List organizations.", "sealog orgs list --json", cmd_orgs_list)
    _add_db(p)
    _add_json(p)
    p = _command(orgs_sub, "delete",
                 "Close an organization's log and delete its events, members, keys, exports, "
                 "streams and settings, after confirming its id; its final signed checkpoint "
                 "and tree hashes are kept (docs/retention.md). Refused while a legal hold "
                 "is in place; run again, it finishes a deletion cut short.",
                 "sealog orgs delete acme --confirm acme", cmd_orgs_delete)
    p.add_argument("org", help="org id")
    p.add_argument("--confirm", help="the org's id again (else asked)")
    _add_db(p)
    _add_json(p)
    p = _command(orgs_sub, "closure",
                 "Write a closed log's closure file: its closing record proven in the final "
                 "checkpoint, with consistency proofs from the sizes auditors hold.",
                 "sealog orgs closure acme --from-size 1200 --output closure.jsonl",
                 cmd_orgs_closure)
    p.add_argument("org", help="org id")
    p.add_argument("--from-size", type=int, action="append",
                   help="repeatable: the size of a checkpoint an auditor holds")
    p.add_argument("--output", "-o", required=True, help="the file to write")
    _add_db(p)

    keys = _command(sub, "keys", "Create, list and revoke API keys.",
                    "sealog keys list --org acme", None)  # type: ignore[arg-type]
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    p = _command(keys_sub, "create",
                 "Create an API key of the operator's, bounded by no user's role (yet, like "
                 "every key, refused what only an owner may do); its secret is printed once.",
                 "sealog keys create --org acme --scope events:write --name billing-service",
                 cmd_keys_create)
    p.add_argument("--org", required=True, help="org id")
    p.add_argument("--scope", action="append", choices=auth.SCOPES,
                   help="repeatable: events:write, events:read, exports, admin")
    p.add_argument("--name", help="a label for the key")
    _add_db(p)
    _add_json(p)
    p = _command(keys_sub, "list", "List an org's API keys (never their secrets).",
                 "sealog keys list --org acme", cmd_keys_list)
    p.add_argument("--org", required=True, help="org id")
    _add_db(p)
    _add_json(p)
    p = _command(keys_sub, "revoke", "Revoke an API key at once.",
                 "sealog keys revoke --org acme key_abc123", cmd_keys_revoke)
    p.add_argument("--org", required=True, help="org id")
    p.add_argument("key_id", help="the key's id (key_…)")
    _add_db(p)
    _add_json(p)

    users = _command(sub, "users", "Create and list the people who sign in to the web UI.",
                     "sealog users list --org acme", None)  # type: ignore[arg-type]
    users_sub = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    p = _command(users_sub, "create",
                 "Create a user; the password is prompted for, or generated and printed once.",
                 "sealog users create --org acme --email ana@acme.com --role auditor",
                 cmd_users_create)
    p.add_argument("--org", required=True, help="org id")
    p.add_argument("--email", required=True, help="the email they sign in with")
    p.add_argument("--role", required=True, choices=auth.ROLES,
                   help="owner, admin or auditor may view and export; member may not")
    p.add_argument("--name", help="display name (default: the email's local part)")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of stdin")
    p.add_argument("--generate-password", action="store_true",
                   help="generate a password and print it once (the default without a tty)")
    _add_db(p)
    _add_json(p)
    p = _command(users_sub, "list", "List an org's users.", "sealog users list --org acme",
                 cmd_users_list)
    p.add_argument("--org", required=True, help="org id")
    _add_db(p)
    _add_json(p)

    streams = _command(sub, "streams", "Create, list, change, pause, resume, replay and "
                       "delete the streams that push an org's log to webhooks and syslog "
                       "receivers (docs/streams.md).",
                       "sealog streams list --org acme", None)  # type: ignore[arg-type]
    streams_sub = streams.add_subparsers(dest="streams_command", required=True,
                                         metavar="ACTION")
    p = _command(streams_sub, "create", "Create a stream (a webhook's signing secret is "
                 "printed once).", "sealog streams create --org acme --name SIEM "
                 "--kind syslog --url tls://siem.example.com:6514 --format ocsf "
                 "--start beginning", cmd_streams_create)
    p.add_argument("--org", required=True, help="org id")
    p.add_argument("--name", required=True, help="a label for the stream")
    p.add_argument("--kind", choices=["webhook", "syslog"], default="webhook",
                   help="an HTTPS webhook (default) or a syslog receiver over TCP or TLS")
    p.add_argument("--url", required=True, help="the webhook's https:// URL, or "
                   "tcp://host:port or tls://host:port for syslog")
    p.add_argument("--format", choices=["sealog", "ocsf", "cloudevents"], default="sealog",
                   help="the events as the API returns them (default), OCSF or CloudEvents")
    p.add_argument("--start", choices=["now", "beginning"], default="now",
                   help="from the log's next event (default) or from its first")
    _stream_options(p, changing=False)
    _add_db(p)
    _add_json(p)
    p = _command(streams_sub, "update", "Change a stream's settings (those given); its "
                 "place and state stay.", "sealog streams update --org acme str_… "
                 "--query 'actor:alice*'", cmd_streams_update)
    p.add_argument("--org", required=True, help="org id")
    p.add_argument("stream_id", help="the stream's id (str_…)")
    p.add_argument("--name", help="a new label")
    p.add_argument("--url", help="a new destination (of the same kind)")
    p.add_argument("--format", choices=["sealog", "ocsf", "cloudevents"])
    _stream_options(p, changing=True)
    _add_db(p)
    _add_json(p)
    p = _command(streams_sub, "list", "List an org's streams with their state and lag.",
                 "sealog streams list --org acme", cmd_streams_list)
    p.add_argument("--org", required=True, help="org id")
    _add_db(p)
    _add_json(p)
    p = _command(streams_sub, "rotate-secret", "Give a stream a new signing secret, printed "
                 "once; the old one stays valid for the overlap.",
                 "sealog streams rotate-secret --org acme str_… --overlap-seconds 3600",
                 cmd_streams_rotate_secret)
    p.add_argument("--org", required=True, help="org id")
    p.add_argument("stream_id", help="the stream's id (str_…)")
    p.add_argument("--overlap-seconds", type=float, default=86_400,
                   help="how long the old secret stays valid (default 86400, one day)")
    _add_db(p)
    _add_json(p)
    for action, text in (("pause", "Pause a stream; it keeps its place."),
                         ("resume", "Resume a paused, failing or disabled stream at once."),
                         ("delete", "Delete a stream."),
                         ("replay", "Send again from an index of the log or a received "
                                    "time.")):
        p = _command(streams_sub, action, text, f"sealog streams {action} --org acme str_…",
                     cmd_streams_change)
        p.add_argument("--org", required=True, help="org id")
        p.add_argument("stream_id", help="the stream's id (str_…)")
        if action == "replay":
            where = p.add_mutually_exclusive_group(required=True)
            where.add_argument("--index", type=int, help="the first index to send again")
            where.add_argument("--from", dest="start",
                               help="the first received time to send again (RFC 3339)")
        _add_db(p)
        _add_json(p)

    retention_parser = _command(
        sub, "retention", "Show or set how long an org keeps its events, and purge what its "
        "policy no longer keeps (docs/retention.md).", "sealog retention set --org acme "
        "--days 365 --lock", None)  # type: ignore[arg-type]
    retention_sub = retention_parser.add_subparsers(dest="retention_command", required=True,
                                                    metavar="ACTION")
    p = _command(retention_sub, "show", "Show the org's policy, what was removed, and its "
                 "holds.", "sealog retention show --org acme", cmd_retention_show)
    p.add_argument("--org", required=True, help="org id")
    _add_db(p)
    _add_json(p)
    p = _command(retention_sub, "set", "Set the org's policy (recorded in its log).",
                 "sealog retention set --org acme --days 365", cmd_retention_set)
    p.add_argument("--org", required=True, help="org id")
    p.add_argument("--days", type=int, help="keep events this many days")
    p.add_argument("--forever", action="store_true", help="keep events forever (default)")
    p.add_argument("--lock", action="store_true",
                   help="lock the policy: from now on it can only be lengthened")
    _add_db(p)
    _add_json(p)
    p = _command(retention_sub, "purge", "Remove now what the org's policy no longer keeps "
                 "(serve and worker also do it on their own).",
                 "sealog retention purge --org acme", cmd_retention_purge)
    p.add_argument("--org", required=True, help="org id")
    _add_db(p)
    _add_json(p)

    holds = _command(sub, "holds", "Place, list and release legal holds: what they cover, "
                     "neither retention nor erasure removes.",
                     "sealog holds place --org acme --name 'Case 12' --reason litigation",
                     cmd_holds)
    holds_sub = holds.add_subparsers(dest="holds_command", required=True, metavar="ACTION")
    p = _command(holds_sub, "place", "Place a hold on the whole log, or on events that "
                 "occurred in a time range.", "sealog holds place --org acme --name 'Case 12' "
                 "--reason litigation --from 2026-01-01T00:00:00Z", cmd_holds)
    p.add_argument("--org", required=True, help="org id")
    p.add_argument("--name", required=True, help="a name for the hold")
    p.add_argument("--reason", required=True, help="why the events are held")
    p.add_argument("--from", dest="start", help="events that occurred from (RFC 3339)")
    p.add_argument("--to", dest="end", help="events that occurred before (RFC 3339)")
    _add_db(p)
    _add_json(p)
    p = _command(holds_sub, "list", "List the org's holds, released ones too.",
                 "sealog holds list --org acme", cmd_holds)
    p.add_argument("--org", required=True, help="org id")
    _add_db(p)
    _add_json(p)
    p = _command(holds_sub, "release", "Release a hold.",
                 "sealog holds release --org acme hold_…", cmd_holds)
    p.add_argument("--org", required=True, help="org id")
    p.add_argument("hold_id", help="the hold's id (hold_…)")
    _add_db(p)
    _add_json(p)

    p = _command(sub, "erase", "Erase the content of the events a query matches (each keeps "
                 "its place and leaf hash under a tombstone; docs/retention.md), after "
                 "confirming how many.", "sealog erase --org acme --query actor:usr_123 "
                 "--reason 'GDPR request 2026-14'", cmd_erase)
    p.add_argument("--org", required=True, help="org id")
    p.add_argument("--query", required=True, help="which events, in the search language")
    p.add_argument("--reason", required=True, help="why they are erased (recorded)")
    p.add_argument("--expect", type=int,
                   help="the number of events to erase, confirmed beforehand (else asked)")
    _add_db(p)
    _add_json(p)

    p = _command(sub, "verify", "Verify a log: a server's, one event, an export bundle, or "
                 "batches a stream delivered.",
                 "sealog verify --url http://127.0.0.1:8000 --api-key $KEY "
                 "--verifier-key $VKEY", cmd_verify)
    p.add_argument("bundle", nargs="?", help="a .jsonl export bundle to verify offline")
    p.add_argument("--url", help="server to verify online (env SEALOG_URL)")
    p.add_argument("--api-key", help="API key with events:read (env SEALOG_API_KEY)")
    p.add_argument("--verifier-key", action="append",
                   help="pinned key name+hex8+base64 (repeatable; env SEALOG_VERIFIER_KEY)")
    p.add_argument("--event-id", help="verify this one event's inclusion")
    p.add_argument("--batch", action="append", metavar="PATH",
                   help="a webhook batch a stream delivered, saved as it came, or a "
                        "directory of them (*.json); repeatable")
    p.add_argument("--state", default=str(Path.home() / ".local/state/sealog/verify-state.json"),
                   help="where the last checkpoint seen is kept, to catch a rewritten history")

    p = _command(sub, "worker", "Run export and stream workers only (as many processes as "
                 "you like).",
                 "sealog worker --database-url sqlite:////var/lib/sealog/sealog.db", cmd_worker)
    _add_db(p)
    p.add_argument("--workers", type=int, help="threads in this process (default: "
                                                 "SEALOG_EXPORT_WORKERS or 1)")

    p = _command(sub, "export", "Export an org's events to a file now (CSV, Excel or a "
                 "verifiable JSON Lines bundle).",
                 "sealog export --org acme --format csv --range 7d -o acme-week.csv", cmd_export)
    _add_db(p)
    p.add_argument("--org", required=True, help="org id")
    p.add_argument("--format", choices=["csv", "xlsx", "jsonl"],
                   help="default: from the output file's extension")
    p.add_argument("--range", default="24h", help="24h (default), 7d, 30d, month, custom")
    p.add_argument("--from", dest="start", help="RFC 3339, with --range custom")
    p.add_argument("--to", dest="end", help="RFC 3339, with --range custom")
    p.add_argument("--tz", help="IANA time zone for --range month")
    p.add_argument("--category", action="append", help="repeatable")
    p.add_argument("--q", help="search, as in the API")
    p.add_argument("-o", "--output", required=True, help="the file to write")

    p = _command(sub, "migrate", "Apply the database's pending schema migrations now (serve "
                 "and the other commands apply them on open too; on PostgreSQL one process at "
                 "a time).", "sealog migrate --database-url sqlite:////var/lib/sealog/sealog.db",
                 cmd_migrate)
    _add_db(p)
    _add_json(p)

    p = _command(sub, "copy", "Copy a whole deployment into a new, empty database (SQLite to "
                 "PostgreSQL, or between any two): orgs, users, keys, sessions, every event "
                 "of every log with its tree, checkpoints, log keys and export records, in "
                 "one transaction. Stop every writer first. The signing key file is not in "
                 "the database: copy it yourself; export files stay in the export directory, "
                 "which the new deployment must use too.",
                 "sealog copy --from sqlite:////var/lib/sealog/sealog.db "
                 "--to postgresql://db.internal/sealog", cmd_copy)
    p.add_argument("--from", dest="source", required=True, metavar="URL",
                   help="the database to copy: sqlite:///path.db or postgresql://host/db")
    p.add_argument("--to", dest="target", required=True, metavar="URL",
                   help="a new, empty database (a SQLite file is made if missing)")
    _add_json(p)

    p = _command(sub, "log-key", "Print the log's verifier key (made on first use); --rotate "
                 "starts a new signing key and keeps the old one as a verifier.",
                 "sealog log-key --data-dir /var/lib/sealog", cmd_log_key)
    _add_db(p)
    _add_json(p)
    p.add_argument("--rotate", action="store_true", help="retire the current key, make a new one")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (CommandError, SettingsError, ValueError, NotFound, Conflict, tree.Pruned) as exc:
        print(f"sealog: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
