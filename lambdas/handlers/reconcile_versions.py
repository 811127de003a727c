"""Lambda entry point of the ReconcileVersions step."""

from typing import Any

from lambdas.dependencies import stores
from lambdas.observability import counts_throttles, logger
from lambdas.reconciliation import ReconcileRequest, reconcile_versions


@logger.inject_lambda_context(clear_state=True)
@counts_throttles
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = ReconcileRequest.from_event(event)
    logger.append_keys(run_id=request.run_id)
    s = stores()
    return reconcile_versions(request, s.settings, s.source, s.predictions, s.ledger, s.sweeps)
