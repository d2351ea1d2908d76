"""The runner's typed state reads the job rows earlier versions of the portal wrote, and writes the same JSON."""

from __future__ import annotations

import copy

from deployments.runner import CompletedOperation, Phase, PlannedOperation, RunState, RunStep

# A two-operation rollback (uninstall, then import) as the runner wrote it on `Job.result` while it waited on the
# import's submit: one operation done (adopted after a crash), the second uncertain.
WRITTEN_MID_RUN = {
    "promotion_id": 7,
    "ops": [
        {"kind": "uninstall", "solution": "Contoso"},
        {"kind": "import", "solution": "Contoso", "mode": "update"},
    ],
    "op": 1,
    "done": [
        {
            "kind": "uninstall",
            "solution": "Contoso",
            "async_operation_id": "4a6c1d9e-0000-4000-8000-000000000001",
            "import_job_id": None,
            "submitted_at": "2026-12-01T10:00:00+00:00",
            "completed_on": "2026-12-01T10:02:00+00:00",
            "seen_at": "2026-12-01T10:02:05.123456+00:00",
            "succeeded": True,
            "adopted": {"async_operation_id": "4a6c1d9e-0000-4000-8000-000000000001", "import_job_id": None},
        }
    ],
    "previous_version": "1.0.0.3",
    "checked": True,
    "preflight": {"status": "passed", "codes": []},
    "first_submitted_at": "2026-12-01T10:03:00.250000+00:00",
    "uncertain": 1,
    "transient_attempts": 2,
}

# A failed import's record (no "adopted"), with its log, and a warning on the import log.
FAILED_IMPORT_RECORD = {
    "kind": "import",
    "solution": "Contoso",
    "mode": "upgrade",
    "async_operation_id": "4a6c1d9e-0000-4000-8000-000000000002",
    "import_job_id": "4a6c1d9e-0000-4000-8000-000000000003",
    "submitted_at": "2026-12-01T10:03:00+00:00",
    "completed_on": None,
    "seen_at": "2026-12-01T10:09:00+00:00",
    "succeeded": False,
    "log_warning": "The system job succeeded but the import log reports failures.",
    "import_log": {"available": True, "result": "failure"},
    "components": [{"name": "account", "result": "failure"}],
}


def test_a_row_written_mid_run_loads_and_is_written_back_unchanged():
    state = RunState.from_json(copy.deepcopy(WRITTEN_MID_RUN))

    assert state.planned == [
        PlannedOperation(kind="uninstall", solution="Contoso"),
        PlannedOperation(kind="import", solution="Contoso", mode="update"),
    ]
    assert (state.next_index, state.uncertain, state.transient_attempts, state.checked) == (1, 1, 2, True)
    assert state.first_submitted_at is not None and state.first_submitted_at.microsecond == 250000
    assert state.done[0].adopted == WRITTEN_MID_RUN["done"][0]["adopted"]
    assert state.to_json() == WRITTEN_MID_RUN


def test_rows_of_every_stage_of_a_run_round_trip():
    before_planning: dict[str, object] = {}
    transient_before_planning = {"transient_attempts": 1}
    just_planned = {
        "promotion_id": 3,
        "ops": [{"kind": "import", "solution": "Contoso", "mode": None}],
        "op": 0,
        "done": [],
        "previous_version": "",
    }
    holding = {**just_planned, "ops": [{"kind": "delete_and_promote", "solution": "Contoso"}], "checked": True}
    for written in (before_planning, transient_before_planning, just_planned, holding):
        assert RunState.from_json(copy.deepcopy(written)).to_json() == written


def test_a_failed_record_keeps_its_log_and_has_no_adoption():
    record = CompletedOperation.from_json(FAILED_IMPORT_RECORD)

    assert record.operation.is_upgrade and not record.succeeded
    assert record.to_json() == FAILED_IMPORT_RECORD
    assert "import_log" not in record.to_json(with_log=False)


def test_steps_read_and_write_the_row_text():
    for text, step in [
        ("prepare", RunStep(Phase.PREPARE)),
        ("submit:0", RunStep(Phase.SUBMIT, 0)),
        ("wait:1", RunStep(Phase.WAIT, 1)),
        ("poll:12", RunStep(Phase.POLL, 12)),
        ("done:0", RunStep(Phase.DONE, 0)),
        ("finish", RunStep(Phase.FINISH)),
        ("", RunStep("")),
    ]:
        assert RunStep.parse(text) == step
        assert str(step) == text
    assert RunStep.parse("submit:1").is_(Phase.SUBMIT, 1) and not RunStep.parse("submit:1").is_(Phase.SUBMIT, 0)
