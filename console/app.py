"""The console's web app: pages for runs, one run, predictions and models, and the write actions."""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from collections.abc import Callable
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from flask import Flask, Response, abort, redirect, render_template, request, session, url_for
from werkzeug.exceptions import HTTPException

from console.graph import layout, overlay
from lambdas.model_registry import ModelError
from operate.targets import Target, TargetError

DEFAULT_PORT = 8400
PER_PAGE = 24  # predictions a page
RUN_MODES = ("score", "retrain")  # started from the runs page; replay starts from a run's page
log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def definition() -> dict[str, Any]:
    from workflow.definition import definition_text

    return dict(json.loads(definition_text()))


def create_app(resolve_target: Callable[[], Target], stack_label: str) -> Flask:
    """The console for one stack. `resolve_target` is called per request, so a stack that goes away
    (or comes back) shows up on the next page load."""
    app = Flask(__name__)
    # A fresh key per process: a session (and its CSRF token) lasts as long as the console runs.
    app.secret_key = secrets.token_bytes(32)
    app.config.update(SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_HTTPONLY=True)

    def target() -> Target:
        return resolve_target()

    @app.context_processor
    def common() -> dict[str, Any]:
        return {"stack_label": stack_label, "csrf_token": csrf_token}

    # -- errors: a page that says what is wrong, never a stack trace -------------------------------
    @app.errorhandler(TargetError)
    def stack_error(error: TargetError) -> Any:
        if str(error).startswith("unknown run id"):  # operate's words for a run the stack does not know
            return _not_found(str(error))
        return render_template("error.html", title="The stack cannot be read", message=str(error)), 503

    @app.errorhandler(ModelError)
    def registry_refused(error: ModelError) -> Any:
        return render_template("error.html", title="The model registry refused the change", message=str(error)), 409

    @app.errorhandler(NoCredentialsError)
    def no_credentials(error: NoCredentialsError) -> Any:
        return render_template("error.html", title="No AWS credentials",
                               message="set a profile with --profile or AWS_PROFILE, or run `aws configure`"), 503

    @app.errorhandler(ClientError)
    def client_error(error: ClientError) -> Any:
        details = error.response.get("Error", {})
        return render_template("error.html", title="AWS refused a request",
                               message=f"{details.get('Code')}: {details.get('Message')}"), 503

    @app.errorhandler(BotoCoreError)
    def unreachable(error: BotoCoreError) -> Any:
        return render_template("error.html", title="The stack cannot be reached", message=str(error)), 503

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Any:
        if error.code == 404:
            return _not_found(error.description or "no such page")
        return render_template("error.html", title=error.name, message=error.description), error.code

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Any:
        log.exception("console page failed")
        return render_template("error.html", title="Something went wrong",
                               message=f"{type(error).__name__}: {error}"), 500

    def _not_found(message: str) -> Any:
        return render_template("error.html", title="Not found", message=message, not_found=True), 404

    # -- CSRF: one token per console session, required on every write -----------------------------
    def csrf_token() -> str:
        if "csrf" not in session:
            session["csrf"] = secrets.token_urlsafe(32)
        return str(session["csrf"])

    def check_csrf() -> None:
        sent = request.form.get("csrf_token", "")
        expected = session.get("csrf")
        if not expected or not hmac.compare_digest(str(sent), str(expected)):
            abort(400, "this form did not come from this console session (missing or stale CSRF token): "
                       "reload the page and try again")

    # -- pages ---------------------------------------------------------------------------------------
    @app.get("/")
    def runs_page() -> Any:
        return render_template("runs.html", runs=_runs(target()), modes=RUN_MODES)

    @app.get("/fragments/runs")
    def runs_fragment() -> Any:
        return render_template("runs_table.html", runs=_runs(target()))

    @app.get("/runs/<run_id>")
    def run_page(run_id: str) -> Any:
        return render_template("run.html", **_run_view(target(), run_id))

    @app.get("/runs/<run_id>/fragment")
    def run_fragment(run_id: str) -> Any:
        return render_template("run_body.html", **_run_view(target(), run_id))

    @app.get("/runs/<run_id>/<table>.csv")
    def run_results_csv(run_id: str, table: str) -> Any:
        """The run's predictions or failures as CSV, streamed from its result files."""
        import tempfile

        from contract.results import FIELDS_BY_TABLE
        from operate.results import export

        if table not in FIELDS_BY_TABLE:
            return _not_found(f"no {table!r} results: there are {' and '.join(FIELDS_BY_TABLE)}")
        spool = tempfile.SpooledTemporaryFile(max_size=8 << 20)
        export(target(), run_id, table, "csv", spool)
        spool.seek(0)

        def chunks() -> Any:
            with spool:
                yield from iter(lambda: spool.read(1 << 16), b"")

        return Response(chunks(), mimetype="text/csv", headers={
            "Content-Disposition": f'attachment; filename="{run_id}-{table}.csv"'})

    @app.get("/start")
    def confirm_start() -> Any:
        mode = request.args.get("mode", "score")
        if mode not in RUN_MODES:
            abort(400, f"unknown mode {mode!r}: choose one of {', '.join(RUN_MODES)}")
        target()  # a stack that cannot be reached says so before asking for confirmation
        return render_template("confirm.html", action=url_for("start"), mode=mode, replay_of=None, failures=None)

    @app.post("/start")
    def start() -> Any:
        from operate.operations import start_run

        check_csrf()
        mode = request.form.get("mode", "")
        if mode not in RUN_MODES:
            abort(400, f"unknown mode {mode!r}: choose one of {', '.join(RUN_MODES)}")
        prefix = (request.form.get("prefix") or "").strip() or None
        run_id = start_run(target(), mode, prefix=prefix if mode == "score" else None)
        return redirect(url_for("run_page", run_id=run_id), code=303)

    @app.get("/runs/<run_id>/replay")
    def confirm_replay(run_id: str) -> Any:
        from operate.operations import show_run

        detail = show_run(target(), run_id)
        return render_template("confirm.html", action=url_for("replay", run_id=run_id), mode="replay",
                               replay_of=run_id, failures=len(detail["failures"]))

    @app.post("/runs/<run_id>/replay")
    def replay(run_id: str) -> Any:
        from operate.operations import replay_run

        check_csrf()
        new_run = replay_run(target(), run_id)
        return redirect(url_for("run_page", run_id=new_run), code=303)

    @app.get("/runs/<run_id>/stop")
    def confirm_stop(run_id: str) -> Any:
        from operate.operations import describe

        name = describe(target(), run_id)["name"]  # an unknown run is a 404 before any confirmation
        return render_template("confirm.html", action=url_for("stop", run_id=name), mode="stop", replay_of=name,
                               failures=None)

    @app.post("/runs/<run_id>/stop")
    def stop(run_id: str) -> Any:
        """Stop the run and close it as `batchinfer stop` does; a run that is not running is a 409."""
        from operate import stopping

        check_csrf()
        reason = (request.form.get("reason") or "").strip() or None
        try:
            stopping.stop_run(target(), run_id, reason, stopping.DEFAULT_SETTLE_SECONDS)
        except TargetError as error:
            if str(error).startswith("unknown run id"):
                raise
            return render_template("error.html", title="The run cannot be stopped", message=str(error)), 409
        return redirect(url_for("run_page", run_id=run_id), code=303)

    @app.get("/predictions")
    def predictions_page() -> Any:
        from operate.views import prediction_days, predictions_page

        current = target()
        days = prediction_days(current)
        day = request.args.get("day") or (max(days) if days else None)
        chosen_class = request.args.get("class") or None
        below_text = request.args.get("below") or ""
        try:
            below = float(below_text) if below_text else None
            page_number = int(request.args.get("page", "1"))
            per_page = min(max(int(request.args.get("per_page", str(PER_PAGE))), 1), 500)
        except ValueError:
            abort(400, "the confidence threshold must be a number between 0 and 1, and the page a whole number")
        page = predictions_page(current, day, chosen_class, below, page_number, per_page) if day else None
        classes = sorted({c for totals in days.values() for c in totals}, key=_class_order)
        filters = {"day": day or "", "class": chosen_class or "", "below": below_text, "per_page": per_page}

        def page_link(number: int) -> str:
            return url_for("predictions_page") + "?" + urlencode({**filters, "page": number})

        return render_template("predictions.html", days=sorted(days, reverse=True), classes=classes,
                               filters=filters, page=page, page_link=page_link)

    @app.get("/models")
    def models_page() -> Any:
        from operate.models import model_history, model_names
        from operate.operations import list_models

        current = target()
        history = [entry for name in model_names(current) for entry in model_history(current, name)]
        history.sort(key=lambda entry: str(entry.get("at")), reverse=True)
        return render_template("models.html", models=list_models(current), history=history,
                               done=request.args.get("done"))

    # Approve, reject (with a reason) and promote (or roll back): each recorded with who made it.
    @app.post("/models/<model>/<version>/<action>")
    def change_model(model: str, version: str, action: str) -> Any:
        from operate.models import approve_version, promote_version, reject_version

        check_csrf()
        reason = (request.form.get("reason") or "").strip() or None
        current = target()
        if action == "approve":
            change = approve_version(current, version, model)
        elif action == "reject":
            if reason is None:
                abort(400, "a rejection needs a reason: say why in the reason field")
            change = reject_version(current, version, reason, model)
        elif action == "promote":
            change = promote_version(current, version, reason, model)
        else:
            abort(404, f"no such model action {action!r}: approve, reject or promote")
        done = f"{change['model']}/{change['version']} {change['event']} by {change['by']}"
        return redirect(url_for("models_page", done=done), code=303)

    return app


def _class_order(name: str) -> tuple[int, Any]:
    return (0, int(name)) if name.isdigit() else (1, name)


def _runs(target: Target) -> list[dict[str, Any]]:
    from operate.operations import list_runs

    runs = list_runs(target, limit=25)
    for run in runs:
        scored, seconds = run.get("scored"), run.get("seconds")
        run["throughput"] = round(scored / seconds, 1) if scored and seconds else None
    return runs


def _run_view(target: Target, run_id: str) -> dict[str, Any]:
    from operate.operations import TERMINAL, progress, show_run
    from operate.views import image_link, run_added_counts

    detail = show_run(target, run_id)
    graph = overlay(layout(definition()), detail["timeline"], detail["status"], detail["map_runs"],
                    detail["failures"])
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for failure in detail["failures"]:
        bucket, key = failure["object"].removeprefix("s3://").split("/", 1)
        failure["key"] = key
        failure["link"] = image_link(target, bucket, key, failure["version_id"])
        groups.setdefault((failure["stage"], failure["reason"]), []).append(failure)
    failure_groups = [{"stage": stage, "reason": reason, "items": items}
                      for (stage, reason), items in sorted(groups.items(), key=lambda g: -len(g[1]))]
    added = run_added_counts(target, detail["run_id"])
    added_by_class: dict[str, int] = {}
    for counts in added.values():
        for name, count in counts.items():
            added_by_class[name] = added_by_class.get(name, 0) + count
    running = detail["status"] not in TERMINAL
    now = progress(target, detail["run_id"]) if running else None
    output = detail.get("output") or {}
    return {
        "run": detail,
        "graph": graph,
        "failure_groups": failure_groups,
        "added": added,
        "added_chart": {"labels": sorted(added_by_class, key=_class_order),
                        "counts": [added_by_class[c] for c in sorted(added_by_class, key=_class_order)]},
        "running": running,
        "progress": now.describe() if now else "",
        "retrain": output if output.get("mode") == "retrain" or "outcome" in output else None,
        "events": list(detail["timeline"]),
    }
