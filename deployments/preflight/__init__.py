"""Pre-flight: what importing a promotion's package into its target would do, checked before anyone approves.

One function reads the live target and the registry and returns a report of checks, each with a stable
code and a severity (issue 5):

- ``target_reachable`` / ``target_unreachable``: the target answers WhoAmI with our credential.
- the deploying identity's privileges (RetrieveUserPrivileges) against what the promotion's operations need
  for this solution (alm_portal.dataverse.privileges): ``target_privileges`` (info),
  ``target_privileges_missing`` (blocker, naming each privilege and what to grant), ``target_privileges_unknown``
  (warning: they could not be read).
- version order against what is installed: ``version_upgrade`` / ``version_new_install`` (info),
  ``already_installed`` and ``version_lower`` (blockers; going lower is only possible through a rollback,
  ``version_rollback`` for the uninstall-and-reinstall strategy).
- ``managed_mismatch``: a managed package over an unmanaged install (or the reverse) always fails.
- ``holding_solution_present``: a stuck ``<name>_Upgrade`` makes every import fail until it is applied or
  removed (rollback strategies ``holding_apply`` / ``holding_remove``, which expect ``holding_solution_found``
  and are blocked by ``holding_solution_missing``).
- dependencies: the package's MissingDependencies that name a solution are checked against the target's
  solutions; StageSolution validates the package on the target itself. ``missing_dependencies`` and
  ``stage_validation_failed`` block; ``dependencies_ok`` (info); ``stage_solution_unavailable`` (warning).
- settings coverage: every connection reference and environment variable of the manifest has a value in
  the stage's current deployment settings: ``settings_complete`` (info), ``settings_incomplete`` (blocker),
  ``settings_package_values`` (warning: the package's own value or default will be used),
  ``settings_unused`` (info).
- the component diff against the registered version matching what the target has installed:
  ``component_diff`` (info) or ``component_diff_unknown`` (warning); in upgrade mode the custom tables and
  columns the upgrade deletes, with approximate row counts and the time they were counted: ``data_loss``
  (warning); in update mode what stays behind: ``components_kept`` (info).

Reads only: nothing here writes to Dataverse (StageSolution validates without installing) and the only
database write is the workflow's, when the job reports the result.

Modules: report (the report and its severities), inputs (what is read: import mode, settings, the stored
artifact, a client, the target's solutions), checks (the checks and promotion_preflight), data_loss (diff,
deleted tables and columns, row counts), job (the PREFLIGHT job). Import from here.
"""

from deployments.preflight.checks import manifest_missing_dependencies, promotion_preflight
from deployments.preflight.data_loss import count_rows, data_loss_entries, fill_row_counts, holding_data_loss
from deployments.preflight.inputs import (
    HOLDING_SUFFIX,
    PREFLIGHT_RETRY,
    PREFLIGHT_TIMEOUTS,
    ClientFactory,
    LocalArtifact,
    TargetFacts,
    current_settings_of,
    deployment_client_for,
    local_artifact,
    promotion_for_job,
    promotion_import_mode,
    promotion_strategy,
    read_target,
    settings_document_of,
)
from deployments.preflight.job import preflight_run
from deployments.preflight.report import BLOCKER, INFO, WARNING, PreflightCheck, PreflightReport

__all__ = [
    "BLOCKER",
    "HOLDING_SUFFIX",
    "INFO",
    "PREFLIGHT_RETRY",
    "PREFLIGHT_TIMEOUTS",
    "WARNING",
    "ClientFactory",
    "LocalArtifact",
    "PreflightCheck",
    "PreflightReport",
    "TargetFacts",
    "count_rows",
    "current_settings_of",
    "data_loss_entries",
    "deployment_client_for",
    "fill_row_counts",
    "holding_data_loss",
    "local_artifact",
    "manifest_missing_dependencies",
    "preflight_run",
    "promotion_for_job",
    "promotion_import_mode",
    "promotion_preflight",
    "promotion_strategy",
    "read_target",
    "settings_document_of",
]
