"""`dialer`: one command line for operators and integrators (Typer + Rich).

Every command reads the same environment as the workers (REDIS_URL, LIVEKIT_*, DIALER_*).
Without REDIS_URL, commands that need Redis use the embedded one a running `dialer run` keeps
under DIALER_DATA_DIR, or start one of their own there. A Redis that cannot be reached is one
error message and exit code 2.

    processes   run (API + worker + beat), api, worker, beat, agent, demo
    intake      enqueue FILE.csv, status [CALL_ID | --campaign ID], results --format csv|json
    operations  webhooks add|load|list|remove|enable|disable|test|replay|dead, dnc add|import,
                campaigns create|list|pause|resume|progress, apikeys create|list|revoke, schemas
"""

from __future__ import annotations

import enum
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import redis
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperGroup

from dialer.demo_expected import DEMO_TIME_LIMIT_S
from dialer.errors import ConfigError, DialerError, JobConflict, JobNotFound, ValidationFailed
from dialer.local_stack import ALL_QUEUES

# Exit code of a command that could not reach Redis (1: the command itself failed).
EXIT_REDIS_UNREACHABLE = 2


class _DialerGroup(TyperGroup):
    """Turns a Redis that cannot be reached, whichever command met it, into one clear message
    and exit code 2 instead of a traceback."""

    def invoke(self, ctx: Any) -> Any:  # Typer's (vendored) click Context
        try:
            return super().invoke(ctx)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            _redis_unreachable(exc)


def _redis_unreachable(exc: Exception) -> None:
    from dialer.redis_conn import masked_url

    url = os.environ.get("REDIS_URL") or "(REDIS_URL unset)"
    err.print(f"[bold red]error:[/] cannot reach Redis at {masked_url(url)} ({exc})")
    err.print(
        "[dim]→ start that Redis, fix REDIS_URL, or unset REDIS_URL to use an embedded Redis "
        "under DIALER_DATA_DIR (shared with a running `dialer run`)[/]"
    )
    raise typer.Exit(EXIT_REDIS_UNREACHABLE)


app = typer.Typer(
    cls=_DialerGroup,
    name="dialer",
    help="Screening dialer: queue phone pre-screenings, run workers, inspect results.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
dnc_app = typer.Typer(help="The do-not-call list.", no_args_is_help=True)
app.add_typer(dnc_app, name="dnc")
webhooks_app = typer.Typer(
    help="CRM webhook endpoints: add, load a file, list, test, dead letters, replay.",
    no_args_is_help=True,
)
app.add_typer(webhooks_app, name="webhooks")
campaigns_app = typer.Typer(
    help="Campaigns: create with a policy, pause, resume, progress.", no_args_is_help=True
)
app.add_typer(campaigns_app, name="campaigns")
apikeys_app = typer.Typer(help="API keys for the HTTP API.", no_args_is_help=True)
app.add_typer(apikeys_app, name="apikeys")

console = Console()
err = Console(stderr=True)


def _fail(message: str, hint: str | None = None, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}")
    if hint:
        err.print(f"[dim]→ {hint}[/]")
    raise typer.Exit(code)


def _runtime() -> Any:
    from dialer.runtime import Runtime

    try:
        return Runtime.from_settings()
    except ConfigError as exc:
        _fail(str(exc))


# -- processes ---------------------------------------------------------------------------------


class WorkerPool(enum.StrEnum):
    PREFORK = "prefork"
    THREADS = "threads"


@app.command()
def worker(
    queues: Annotated[
        str, typer.Option(help="Comma-separated queues to consume, drained in this order.")
    ] = ALL_QUEUES,
    concurrency: Annotated[
        int, typer.Option("-c", "--concurrency", help="Pool size: processes, or threads.")
    ] = 4,
    pool: Annotated[
        WorkerPool,
        typer.Option(
            "-P",
            "--pool",
            help="prefork (child processes) or threads. A dial holds its slot in the pool while "
            "the phone rings, so a dial worker wants many: threads give them cheaply "
            "(e.g. --queues dial --pool threads -c 50).",
        ),
    ] = WorkerPool.PREFORK,
    loglevel: Annotated[
        str, typer.Option("-l", "--loglevel", help="DEBUG, INFO, WARNING or ERROR.")
    ] = "INFO",
) -> None:
    """Run a Celery worker (scale out by running more, on any machine that reaches Redis)."""
    _exec_celery(["worker", "-Q", queues, "-P", pool.value, "-c", str(concurrency), "-l", loglevel])


@app.command()
def beat(loglevel: Annotated[str, typer.Option("-l", "--loglevel")] = "INFO") -> None:
    """Run the beat that moves due jobs and webhook retries (only one acts; a lock sees to it)."""
    from dialer.settings import load_settings

    schedule = load_settings().data_dir / "celerybeat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    _exec_celery(["beat", "-s", str(schedule), "-l", loglevel])


def _check_api_host(host: str) -> None:
    from dialer.apikeys import AUTH_ENV, auth_disabled, is_loopback

    if auth_disabled() and not is_loopback(host):
        _fail(
            f"{AUTH_ENV}=off only serves loopback clients, so the API will not listen on {host}",
            "use --host 127.0.0.1, or unset DIALER_API_AUTH and create a key with "
            "`dialer apikeys create --scope screenings:write`",
        )


def _serve(app_obj: Any, host: str, port: int, log_level: str) -> None:
    import uvicorn

    # log_config=None: uvicorn's loggers propagate to the root handler `logs.configure`
    # installed, so access lines go through the phone-number masking filter too.
    uvicorn.run(app_obj, host=host, port=port, log_config=None, log_level=log_level.lower())


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    loglevel: Annotated[
        str, typer.Option("-l", "--loglevel", help="DEBUG, INFO, WARNING or ERROR.")
    ] = "INFO",
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs). Needs workers and a beat running elsewhere
    (`dialer worker`, `dialer beat`), or use `dialer run` for everything in one go."""
    _check_api_host(host)
    from dialer import logs
    from dialer.http import create_app

    logs.configure(loglevel)
    app_obj = create_app(_runtime())
    console.print(f"API on http://{host}:{port}  (docs: http://{host}:{port}/docs)")
    _serve(app_obj, host, port, loglevel)


@app.command()
def run(
    host: Annotated[str, typer.Option(help="Interface the API listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="API port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Celery worker processes to start.")] = 1,
    concurrency: Annotated[int, typer.Option("-c", "--concurrency", help="Tasks per worker.")] = 4,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Embedded Redis data and the logs (default: DIALER_DATA_DIR)."),
    ] = None,
    loglevel: Annotated[
        str, typer.Option("-l", "--loglevel", help="DEBUG, INFO, WARNING or ERROR.")
    ] = "INFO",
) -> None:
    """Run everything on this machine: Redis (embedded when REDIS_URL is unset), Celery workers
    and beat as child processes, and the HTTP API in the foreground. Ctrl-C stops all."""
    _check_api_host(host)
    from dialer import logs
    from dialer.http import create_app
    from dialer.local_stack import LocalStack
    from dialer.runtime import Runtime
    from dialer.settings import load_settings

    logs.configure(loglevel)
    settings = load_settings()
    directory = data_dir or settings.data_dir
    stack = LocalStack(
        directory, redis_url=settings.redis_url, workers=workers, concurrency=concurrency
    )
    try:
        stack.start()
    except (DialerError, OSError) as exc:
        stack.stop()
        _fail(f"could not start the local stack: {exc}", f"see the logs in {directory}/logs")
    try:
        assert stack.redis_url
        os.environ["REDIS_URL"] = stack.redis_url
        runtime = Runtime.for_url(stack.redis_url, settings)
        app_obj = create_app(runtime, broker_url=stack.redis_url)
        where = "embedded Redis" if stack.embedded is not None else "Redis at REDIS_URL"
        console.print(
            f"[bold]dialer run[/]: {where}, {workers} worker(s), beat; logs in {directory / 'logs'}"
        )
        if stack.embedded is not None:
            console.print(
                f"[dim]→ dialer commands with DIALER_DATA_DIR={stack.data_dir} use this "
                f"Redis; elsewhere: export REDIS_URL={stack.redis_url}[/]"
            )
        console.print(f"API on http://{host}:{port}  (docs: /docs, health: /healthz)")
        _serve(app_obj, host, port, loglevel)
    finally:
        console.print("stopping workers, beat and Redis…")
        stack.stop()


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def agent(ctx: typer.Context) -> None:
    """Run the voice agent worker: `dialer agent start|dev|console|download-files|flush-spool`
    (arguments go to `python -m agent`; `dialer agent --help` lists them)."""
    try:
        from agent.worker import run as run_agent
    except ImportError as exc:
        _fail(
            f"the voice agent cannot load ({exc.name or exc})",
            "install it with: pip install -e '.[agent]'",
        )
    raise typer.Exit(run_agent(list(ctx.args)))


def _exec_celery(args: list[str]) -> None:
    from dialer.redis_conn import ensure_redis_url
    from dialer.settings import load_settings

    ensure_redis_url(load_settings())  # exports REDIS_URL; embedded Redis when unset
    from dialer import logs

    logs.configure()
    from tasks.app import app as celery_app
    from tasks.app import use_broker

    use_broker(os.environ["REDIS_URL"])
    celery_app.start(argv=args)


# -- intake ------------------------------------------------------------------------------------


@app.command()
def enqueue(
    csv_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Candidates CSV.")],
    job: Annotated[
        Path | None,
        typer.Option(
            "--job", exists=True, dir_okay=False, help="Job template JSON merged under each row."
        ),
    ] = None,
    column: Annotated[
        list[str] | None, typer.Option("--map", help="Rename a column: CSVCOL=field (repeatable).")
    ] = None,
    errors_file: Annotated[
        Path, typer.Option("--errors", help="Where to write the per-row error report (CSV).")
    ] = Path("enqueue-errors.csv"),
    campaign: Annotated[
        str | None,
        typer.Option(
            "--campaign",
            help="Every row joins this campaign; its template (if any) goes under --job's.",
        ),
    ] = None,
) -> None:
    """Submit every row of a CSV; bad rows are reported (and kept), never fatal.

    Columns are named like request fields (candidate_name, phone_number, ...; dotted for
    nested ones, JSON cells for lists); --map renames, --job adds what every row shares."""
    from dialer.client import Dialer
    from dialer.csv_import import count_rows, load_template, read_rows

    try:
        template = load_template(job)
    except ValueError as exc:
        _fail(str(exc))
    bad_maps = [item for item in (column or []) if "=" not in item]
    if bad_maps:
        _fail(f"--map {bad_maps[0]!r} is not CSVCOL=field", "e.g. --map Telefoon=phone_number")
    mapping = dict(item.split("=", 1) for item in (column or []))
    dialer = Dialer(_runtime())
    if campaign:
        template = _with_campaign(dialer.rt, campaign, template)
    total = count_rows(csv_file)
    accepted = duplicates = 0
    problems: list[tuple[int, str, str, str]] = []
    with Progress(
        TextColumn("[bold]enqueue"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err,
    ) as progress:  # fmt: skip
        task = progress.add_task("rows", total=total)
        for row in read_rows(csv_file, template=template, column_map=mapping):
            progress.advance(task)
            if row.payload is None:
                problems.append((row.line, "", "(row)", row.error or "unreadable row"))
                continue
            call_id = str(row.payload.get("call_id", ""))
            try:
                result = dialer.rt.intake.submit(
                    row.payload, dialer.rt.clock.now(), source=f"csv:{csv_file.name}:{row.line}"
                )
            except ValidationFailed as exc:
                problems.extend((row.line, call_id, p.field, p.message) for p in exc.problems)
                continue
            except JobConflict as exc:
                problems.append((row.line, call_id, "call_id", str(exc)))
                continue
            if result.created:
                accepted += 1
            else:
                duplicates += 1
    console.print(
        f"[green]{accepted} queued[/], {duplicates} already queued, "
        f"[red]{len({p[0] for p in problems})} rejected[/]"
    )
    if problems:
        _write_errors(errors_file, problems)
        table = Table("line", "call_id", "field", "problem", title="Rejected rows")
        for line, call_id, field_name, message in problems[:20]:
            table.add_row(str(line), call_id, field_name, message)
        err.print(table)
        err.print(f"[dim]→ full report: {errors_file}; fix the rows and run enqueue again[/]")
        raise typer.Exit(2)


def _with_campaign(rt: Any, campaign_id: str, template: dict[str, Any]) -> dict[str, Any]:
    from dialer.campaigns import CampaignNotFound, CampaignStore

    try:
        base = CampaignStore(rt.client, rt.keys).get(campaign_id).template
    except CampaignNotFound:
        base = {}
    merged: dict[str, Any] = {**base, "campaign_id": campaign_id}
    for key, value in template.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _write_errors(path: Path, problems: list[tuple[int, str, str, str]]) -> None:
    import csv

    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["line", "call_id", "field", "problem"])
        writer.writerows(problems)


@app.command()
def status(
    call_id: Annotated[str | None, typer.Argument(help="One job; omit for totals.")] = None,
    campaign: Annotated[
        str | None, typer.Option("--campaign", help="Totals for one campaign.")
    ] = None,
) -> None:
    """Show one job, or counts by state and final status."""
    rt = _runtime()
    if call_id:
        from dialer.client import Dialer

        try:
            info = Dialer(rt).status(call_id)
        except JobNotFound:
            _fail(f"no job {call_id!r}", "check the call_id, or list jobs with `dialer results`")
        table = Table(show_header=False, title=f"job {call_id}")
        table.add_row("state", info.state.value)
        table.add_row("final status", info.final_status.value if info.final_status else "-")
        table.add_row("attempt", f"{info.attempt} of {info.max_attempts}")
        table.add_row("next dial", info.next_at.isoformat() if info.next_at else "-")
        table.add_row("phone", info.phone_number)
        table.add_row("detail", info.detail)
        for a in info.attempts:
            table.add_row(
                f"attempt {a.attempt}",
                f"{a.at:%Y-%m-%d %H:%M} {a.outcome} {a.sip_status_code or ''}",
            )
        console.print(table)
        return
    ids = rt.store.list_ids(campaign_id=campaign, limit=1_000_000) if campaign else None
    if ids is None:
        states, statuses = rt.store.count_by_state(), rt.store.count_by_status()
    else:
        states, statuses = _counts(rt, ids)
    table = Table("state", "jobs", title="jobs by state")
    for name, count in states.items():
        table.add_row(name, str(count))
    console.print(table)
    table = Table("final status", "jobs", title="finished jobs by status")
    for name, count in sorted(statuses.items()):
        table.add_row(name, str(count))
    console.print(table)


def _counts(rt: Any, ids: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    states: dict[str, int] = {}
    statuses: dict[str, int] = {}
    pipe = rt.client.pipeline(transaction=False)
    for call_id in ids:
        pipe.hmget(rt.keys.job(call_id), "state", "final_status")
    for state, final in pipe.execute():
        states[state] = states.get(state, 0) + 1
        if final:
            statuses[final] = statuses.get(final, 0) + 1
    return states, statuses


@app.command()
def results(
    fmt: Annotated[str, typer.Option("--format", help="csv or json")] = "json",
    campaign: Annotated[str | None, typer.Option("--campaign")] = None,
) -> None:
    """Print the final results (CandidateData) of finished jobs."""
    rt = _runtime()
    if fmt not in ("csv", "json"):
        _fail(f"unknown format {fmt!r}", "use --format csv or --format json")
    rows = []
    for call_id in rt.store.list_ids(campaign_id=campaign, limit=1_000_000):
        job = rt.store.get(call_id)
        if job.final_result is not None:
            rows.append(job.final_result.model_dump(mode="json"))
    if fmt == "json":
        sys.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
        return
    import csv

    columns = ["call_id", "status", "attempt", "consent_given", "passed_knockout",
               "interested_in_alternatives", "chosen_timeslot", "scheduling_preference",
               "language", "phone_number"]  # fmt: skip
    writer = csv.DictWriter(sys.stdout, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)


# -- do-not-call -------------------------------------------------------------------------------


@dnc_app.command("add")
def dnc_add(
    numbers: Annotated[
        list[str], typer.Argument(help="Numbers in E.164 (or national with --region).")
    ],
    region: Annotated[
        str | None, typer.Option(help="Region for national numbers, e.g. BE.")
    ] = None,
) -> None:
    """Never call these numbers."""
    from dialer.phone import InvalidPhoneNumber, mask

    rt = _runtime()
    try:
        added = rt.dnc.add(numbers, region)
    except InvalidPhoneNumber as exc:
        _fail(str(exc))
    console.print(f"{added} added ({', '.join(mask(n) for n in numbers)})")


@dnc_app.command("import")
def dnc_import(
    csv_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    column: Annotated[str, typer.Option(help="Column holding the number.")] = "phone_number",
    region: Annotated[str | None, typer.Option(help="Region for national numbers.")] = None,
) -> None:
    """Import a suppression list from CSV; bad rows are listed."""
    rt = _runtime()
    try:
        report = rt.dnc.import_csv(csv_file, column=column, region=region)
    except ValueError as exc:
        _fail(str(exc))
    console.print(f"{report.added} added, {report.already_present} already present, "
                  f"{len(report.rejected)} rejected")  # fmt: skip
    for line, _value, reason in report.rejected[:20]:
        err.print(f"  line {line}: {reason}")


# -- webhooks ----------------------------------------------------------------------------------


def _webhooks(rt: Any) -> Any:
    from dialer.webhooks import WebhookService

    try:
        return WebhookService.from_settings(rt.client, rt.keys, rt.settings)
    except DialerError as exc:
        _fail(str(exc), "fix the file DIALER_WEBHOOK_CONFIG points at, or unset it")


def _problems(exc: ValidationFailed) -> None:
    for problem in exc.problems:
        err.print(f"  [red]{problem.field}[/]: {problem.message}")


@webhooks_app.command("add")
def webhooks_add(
    url: Annotated[str, typer.Argument(help="https URL of the receiver.")],
    event: Annotated[
        list[str] | None,
        typer.Option(
            "--event",
            "-e",
            help="screening.completed, screening.attempt, screening.retry_scheduled or * "
            "(repeatable; default *).",
        ),
    ] = None,
    secret: Annotated[
        str | None, typer.Option(help="whsec_… signing secret; generated when left out.")
    ] = None,
    description: Annotated[str, typer.Option(help="A note for operators.")] = "",
    endpoint_id: Annotated[str | None, typer.Option("--id", help="ep_… id to use.")] = None,
) -> None:
    """Register a webhook endpoint; prints its signing secret once."""
    from dialer.errors import UnsafeWebhookURL, WebhookError

    rt = _runtime()
    service = _webhooks(rt)
    try:
        endpoint = service.endpoints.add(
            url,
            events=event or ["*"],
            secret=secret,
            description=description,
            endpoint_id=endpoint_id,
            now=rt.clock.now(),
        )
    except ValidationFailed as exc:
        _problems(exc)
        _fail("endpoint not added", "fix the fields above and run the command again")
    except UnsafeWebhookURL as exc:
        _fail(
            str(exc),
            "use a public https URL, or allow your receiver's network, e.g. "
            "DIALER_WEBHOOK_ALLOW_NETWORKS=10.1.2.0/24 (127.0.0.0/8 for one on this machine)",
        )
    except WebhookError as exc:
        _fail(str(exc), "pick another --id, or remove the old endpoint first")
    finally:
        service.close()
    console.print(f"added [bold]{endpoint.id}[/] → {endpoint.url} ({', '.join(endpoint.events)})")
    console.print(f"signing secret (shown once): [bold]{endpoint.secret_value()}[/]")


@webhooks_app.command("load")
def webhooks_load(
    config_file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, help="TOML file of [[endpoints]] (docs/INTEGRATION.md)."
        ),
    ],
) -> None:
    """Store the endpoints of a TOML config file: added or updated by id, all or nothing.

    Endpoints not in the file are left alone. Each entry names its secret (`secret`, or
    `secret_env`: an environment variable of this command holding it)."""
    from dialer.webhooks import load_webhook_config

    rt = _runtime()
    service = _webhooks(rt)
    try:
        report = load_webhook_config(service.endpoints, config_file, now=rt.clock.now())
    except ValidationFailed as exc:
        _problems(exc)
        _fail("nothing stored", "fix the entries above and load the file again")
    finally:
        service.close()
    table = Table("id", "url", "change", title=f"webhooks from {config_file.name}")
    for entry in report.entries:
        table.add_row(entry.endpoint_id, entry.url, entry.change)
    console.print(table)
    console.print(
        f"{len(report.added)} added, {len(report.updated)} updated, "
        f"{len(report.unchanged)} unchanged"
    )
    if report.not_in_file:
        console.print(f"[dim]not in the file, left as they are: {', '.join(report.not_in_file)}[/]")
    if report.retry_schedule is not None:
        console.print(
            "[dim]→ the file's retry schedule applies to workers started with "
            f"DIALER_WEBHOOK_CONFIG={config_file}[/]"
        )


@webhooks_app.command("list")
def webhooks_list() -> None:
    """List webhook endpoints (secrets masked)."""
    rt = _runtime()
    service = _webhooks(rt)
    endpoints = service.endpoints.list()
    service.close()
    if not endpoints:
        console.print("no webhook endpoints; add one with `dialer webhooks add URL`")
        return
    table = Table("id", "url", "events", "enabled", "secret", "description", title="webhooks")
    for ep in endpoints:
        body = ep.public()
        state = "yes" if ep.enabled else f"no ({ep.disabled_reason or 'disabled'})"
        table.add_row(ep.id, ep.url, ", ".join(ep.events), state, body["secret"], ep.description)
    console.print(table)


def _endpoint_command(endpoint_id: str, action: str, reason: str = "") -> None:
    from dialer.webhooks import EndpointNotFound

    rt = _runtime()
    service = _webhooks(rt)
    try:
        if action == "remove":
            service.endpoints.get(endpoint_id)
            service.endpoints.remove(endpoint_id)
        elif action == "enable":
            service.endpoints.enable(endpoint_id)
        else:
            service.endpoints.disable(endpoint_id, reason or "disabled by operator")
    except EndpointNotFound:
        _fail(f"no webhook endpoint {endpoint_id!r}", "list them with `dialer webhooks list`")
    finally:
        service.close()
    console.print(f"{endpoint_id}: {action}d")


@webhooks_app.command("remove")
def webhooks_remove(endpoint_id: Annotated[str, typer.Argument(help="ep_… id.")]) -> None:
    """Delete an endpoint (its pending deliveries are dead-lettered)."""
    _endpoint_command(endpoint_id, "remove")


@webhooks_app.command("enable")
def webhooks_enable(endpoint_id: Annotated[str, typer.Argument(help="ep_… id.")]) -> None:
    """Deliver to the endpoint again (replay what died meanwhile with `webhooks replay`)."""
    _endpoint_command(endpoint_id, "enable")


@webhooks_app.command("disable")
def webhooks_disable(
    endpoint_id: Annotated[str, typer.Argument(help="ep_… id.")],
    reason: Annotated[str, typer.Option(help="Why (shown in listings).")] = "",
) -> None:
    """Stop delivering to the endpoint."""
    _endpoint_command(endpoint_id, "disable", reason)


@webhooks_app.command("test")
def webhooks_test(endpoint_id: Annotated[str, typer.Argument(help="ep_… id.")]) -> None:
    """Send one signed `webhook.test` event now and show the receiver's answer."""
    from dialer.http.webhook_test import send_test_event
    from dialer.webhooks import EndpointNotFound

    rt = _runtime()
    service = _webhooks(rt)
    try:
        result = send_test_event(service, endpoint_id)
    except EndpointNotFound:
        _fail(f"no webhook endpoint {endpoint_id!r}", "list them with `dialer webhooks list`")
    finally:
        service.close()
    if result.delivered:
        console.print(f"[green]delivered[/]: {result.reason} in {result.elapsed_s * 1000:.0f} ms")
        return
    _fail(
        f"not delivered: {result.reason}",
        "check the URL is reachable from this machine and that the receiver verifies with the "
        "endpoint's secret",
    )


def _parse_since(since: str | None) -> Any:
    if since is None:
        return None
    from datetime import UTC, datetime

    try:
        when = datetime.fromisoformat(since)
    except ValueError:
        _fail(f"--since {since!r} is not an ISO time", "e.g. --since 2026-03-04T09:00:00+00:00")
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@webhooks_app.command("dead")
def webhooks_dead(
    endpoint: Annotated[str | None, typer.Option(help="Only this endpoint's.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
) -> None:
    """List dead-lettered deliveries (ran out of retries, or the endpoint went away)."""
    rt = _runtime()
    service = _webhooks(rt)
    dead = service.dead_letters(endpoint_id=endpoint, limit=limit)
    service.close()
    if not dead:
        console.print("no dead deliveries")
        return
    table = Table("delivery", "endpoint", "event", "tries", "died", "reason", title="dead letters")
    for d in dead:
        died = f"{d.dead_at:%Y-%m-%d %H:%M}" if d.dead_at else "-"
        table.add_row(d.id, d.endpoint_id, d.event_type, str(d.tries), died, d.dead_reason or "")
    console.print(table)
    console.print(
        "[dim]→ send them again with `dialer webhooks replay DELIVERY_ID` or --endpoint[/]"
    )


@webhooks_app.command("replay")
def webhooks_replay(
    delivery_id: Annotated[str | None, typer.Argument(help="One dlv_… delivery.")] = None,
    endpoint: Annotated[str | None, typer.Option(help="Every dead delivery of it.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Dead since this ISO time (UTC unless an offset).")
    ] = None,
) -> None:
    """Send dead deliveries again (same webhook-id, fresh retry schedule)."""
    from dialer.errors import WebhookError
    from dialer.webhooks import DeliveryNotFound

    if delivery_id is None and endpoint is None and since is None:
        _fail("nothing to replay", "give a DELIVERY_ID, --endpoint ep_… and/or --since TIME")
    rt = _runtime()
    service = _webhooks(rt)
    try:
        replayed = service.replay(
            delivery_id, endpoint_id=endpoint, since=_parse_since(since), now=rt.clock.now()
        )
    except DeliveryNotFound:
        _fail(f"no delivery {delivery_id!r}", "list dead ones with `dialer webhooks dead`")
    except WebhookError as exc:
        _fail(str(exc), "enable it with `dialer webhooks enable ID`")
    finally:
        service.close()
    console.print(f"{len(replayed)} replayed; the beat sends them within a second")


# -- campaigns ---------------------------------------------------------------------------------


def _json_option(value: str | None, what: str) -> Any:
    """Inline JSON, or @path / a path to a JSON file."""
    if value is None:
        return None
    text = value
    path = Path(value[1:] if value.startswith("@") else value)
    if value.startswith("@") or (not value.lstrip().startswith("{") and path.exists()):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            _fail(f"{what}: cannot read {path} ({exc.strerror})")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(
            f"{what} is not valid JSON: {exc}", f"give inline JSON or a file: --{what} @file.json"
        )


@campaigns_app.command("create")
def campaigns_create(
    campaign_id: Annotated[str, typer.Argument(help="Id (letters, digits, . _ : @ -).")],
    name: Annotated[str, typer.Option(help="A name for operators.")] = "",
    policy: Annotated[
        str | None,
        typer.Option(
            help="Policy JSON (inline or @file): calling_window, retry_policy, "
            "calls_per_second, max_concurrent_calls."
        ),
    ] = None,
    calls_per_second: Annotated[float | None, typer.Option(help="Dials per second.")] = None,
    max_concurrent_calls: Annotated[int | None, typer.Option(help="Calls at once.")] = None,
    template: Annotated[
        str | None,
        typer.Option(help="Job template JSON (inline or @file) merged under each enqueued row."),
    ] = None,
    paused: Annotated[bool, typer.Option(help="Create it paused.")] = False,
) -> None:
    """Create a campaign with its own policy (jobs join with campaign_id)."""
    from dialer.campaigns import CampaignConflict, CampaignStore

    body = _json_option(policy, "policy") or {}
    if not isinstance(body, dict):
        _fail("--policy must be a JSON object")
    if calls_per_second is not None:
        body["calls_per_second"] = calls_per_second
    if max_concurrent_calls is not None:
        body["max_concurrent_calls"] = max_concurrent_calls
    rt = _runtime()
    try:
        campaign, created = CampaignStore(rt.client, rt.keys).create(
            campaign_id,
            now=rt.clock.now(),
            name=name,
            policy=body,
            template=_json_option(template, "template"),
            paused=paused,
        )
    except ValidationFailed as exc:
        _problems(exc)
        _fail("campaign not created", "fix the fields above and run the command again")
    except CampaignConflict as exc:
        _fail(str(exc))
    state = "created" if created else "already exists (unchanged)"
    console.print(
        f"campaign [bold]{campaign.id}[/] {state}"
        + (" [yellow]paused[/]" if campaign.paused else "")
    )


@campaigns_app.command("list")
def campaigns_list() -> None:
    """List campaigns."""
    from dialer.campaigns import CampaignStore

    rt = _runtime()
    campaigns = CampaignStore(rt.client, rt.keys).list()
    if not campaigns:
        console.print("no campaigns; create one with `dialer campaigns create ID`")
        return
    table = Table("id", "name", "paused", "policy", title="campaigns")
    for c in campaigns:
        table.add_row(c.id, c.name, "yes" if c.paused else "no", c.policy.to_json())
    console.print(table)


def _campaign_action(campaign_id: str, action: str, reason: str = "") -> Any:
    from dialer.campaigns import CampaignNotFound, CampaignStore

    rt = _runtime()
    store = CampaignStore(rt.client, rt.keys)
    try:
        if action == "pause":
            return store.pause(campaign_id, now=rt.clock.now(), reason=reason)
        if action == "resume":
            return store.resume(campaign_id, now=rt.clock.now())
        return store.progress(campaign_id)
    except CampaignNotFound as exc:
        _fail(str(exc), "list campaigns with `dialer campaigns list`")


@campaigns_app.command("pause")
def campaigns_pause(
    campaign_id: Annotated[str, typer.Argument(help="Campaign id.")],
    reason: Annotated[str, typer.Option(help="Why (shown with the campaign).")] = "",
) -> None:
    """Stop new dials for the campaign (calls in progress finish)."""
    _campaign_action(campaign_id, "pause", reason)
    console.print(f"campaign {campaign_id} [yellow]paused[/]; `dialer campaigns resume` to go on")


@campaigns_app.command("resume")
def campaigns_resume(campaign_id: Annotated[str, typer.Argument(help="Campaign id.")]) -> None:
    """Dial the campaign's jobs again."""
    _campaign_action(campaign_id, "resume")
    console.print(f"campaign {campaign_id} [green]resumed[/]")


@campaigns_app.command("progress")
def campaigns_progress(campaign_id: Annotated[str, typer.Argument(help="Campaign id.")]) -> None:
    """A campaign's jobs by state and by final status."""
    progress = _campaign_action(campaign_id, "progress")
    paused = " [yellow](paused)[/]" if progress.paused else ""
    console.print(f"campaign {campaign_id}{paused}: {progress.done}/{progress.total} done")
    table = Table("state", "jobs", title="by state")
    for name, count in progress.by_state.items():
        table.add_row(name, str(count))
    console.print(table)
    if progress.by_status:
        table = Table("final status", "jobs", title="finished by status")
        for name, count in progress.by_status.items():
            table.add_row(name, str(count))
        console.print(table)


# -- API keys ----------------------------------------------------------------------------------


@apikeys_app.command("create")
def apikeys_create(
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope", "-s", help="screenings:read, screenings:write or admin (repeatable)."
        ),
    ],
    name: Annotated[str, typer.Option(help="Who or what uses the key.")] = "",
) -> None:
    """Create an API key; prints it once (only its hash is stored)."""
    from dialer.apikeys import ApiKeyStore

    rt = _runtime()
    try:
        key, token = ApiKeyStore(rt.client, rt.keys).create(scope, name=name, now=rt.clock.now())
    except ValidationFailed as exc:
        _problems(exc)
        _fail("key not created", "e.g. --scope screenings:read --scope screenings:write")
    console.print(f"key {key.id} ({', '.join(key.scopes)}) — shown once, store it now:")
    sys.stdout.write(token + "\n")


@apikeys_app.command("list")
def apikeys_list() -> None:
    """List API keys (never the keys themselves)."""
    from dialer.apikeys import ApiKeyStore

    rt = _runtime()
    keys = ApiKeyStore(rt.client, rt.keys).list()
    if not keys:
        console.print("no API keys; create one with `dialer apikeys create --scope ...`")
        return
    table = Table("id", "name", "scopes", "created", "revoked", title="API keys")
    for k in keys:
        revoked = f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "-"
        table.add_row(k.id, k.name, ", ".join(k.scopes), f"{k.created_at:%Y-%m-%d %H:%M}", revoked)
    console.print(table)


@apikeys_app.command("revoke")
def apikeys_revoke(
    key_id: Annotated[str, typer.Argument(help="Key id (from `apikeys list`).")],
) -> None:
    """Revoke a key; it stops working at once."""
    from dialer.apikeys import ApiKeyNotFound, ApiKeyStore

    rt = _runtime()
    try:
        ApiKeyStore(rt.client, rt.keys).revoke(key_id, now=rt.clock.now())
    except ApiKeyNotFound as exc:
        _fail(str(exc))
    console.print(f"key {key_id} revoked")


# -- schemas -----------------------------------------------------------------------------------


@app.command()
def schemas(
    directory: Annotated[
        Path | None, typer.Argument(help="Where to write them (default: schemas/).")
    ] = None,
) -> None:
    """Write the JSON Schemas of the data contracts (ScreeningRequest, CandidateData, ...)."""
    from dialer.schemas import SCHEMA_DIR, export

    for path in export(directory or SCHEMA_DIR):
        console.print(str(path))


# -- demo --------------------------------------------------------------------------------------


@app.command()
def demo(
    candidates: Annotated[Path | None, typer.Option(help="Candidates CSV.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Where Redis data and outputs go.")] = None,
    timeout: Annotated[
        float, typer.Option(help="Give up after this many seconds (then exit 1).")
    ] = DEMO_TIME_LIMIT_S,
) -> None:
    """Run the whole pipeline locally against the LiveKit stand-in and print every outcome.

    Exits 1 when a candidate does not end with the status its persona produces, or when the
    run does not finish in time."""
    from dialer.demo import run_demo

    try:
        code = run_demo(
            candidates=candidates, data_dir=data_dir, timeout_s=timeout, console=console
        )
    except DialerError as exc:
        _fail(str(exc))
    raise typer.Exit(code)


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        _fail(str(exc))


if __name__ == "__main__":
    main()
