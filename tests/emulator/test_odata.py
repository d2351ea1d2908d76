"""OData on the tables the portal reads: $select, $filter, $orderby, $top, $count, paging, $expand, keys."""

from __future__ import annotations

import uuid

import pytest

from tests.emulator.packages import corpus, make_solution
from tests.support.emulator import EmulatorOrg, EmulatorServer


@pytest.fixture(scope="module")
def org_with_solutions(emulator: EmulatorServer) -> EmulatorOrg:
    """One org for the read-only tests of this module (installing once keeps the suite fast)."""
    org = emulator.new_org()
    org.install(corpus("IncidentReporting_1_0_0_4.zip"))
    org.install(corpus("Success_1_0_0_0_managed.zip"))
    org.install(make_solution("Zeta", "2.0.0.0", managed=False, tables=("emt_zeta",)))
    return org


def names(response) -> list[str]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    return [row["uniquename"] for row in response.json()["value"]]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("uniquename eq 'Success'", ["Success"]),
        (
            "uniquename ne 'Success' and ismanaged eq false and isvisible eq true",
            ["Default", "IncidentReporting", "Zeta"],
        ),
        ("version gt '1.0.0.4' and ismanaged eq false", ["Zeta"]),
        ("version ge '1.0.0.4' and ismanaged eq false and uniquename ne 'Default'", ["IncidentReporting", "Zeta"]),
        ("version lt '1.0' and ismanaged eq false", []),
        ("version le '1.0' and ismanaged eq false", ["Active", "Default"]),
        ("startswith(uniquename,'Incident')", ["IncidentReporting"]),
        ("contains(friendlyname,'INCIDENT')", ["IncidentReporting"]),
        ("endswith(uniquename,'eta')", ["Zeta"]),
        ("not (ismanaged eq true) and (uniquename eq 'Zeta' or uniquename eq 'Success')", ["Zeta"]),
        ("(uniquename eq 'Zeta' or uniquename eq 'Success') and ismanaged", ["Success"]),
        ("_parentsolutionid_value ne null", []),
        ("description eq null and uniquename eq 'Zeta'", ["Zeta"]),
        ("publisherid/uniquename eq 'ultradynamics'", ["Success"]),
        ("uniquename eq 'o''brien'", []),
    ],
)
def test_filter_expressions(org_with_solutions: EmulatorOrg, expression: str, expected: list[str]) -> None:
    response = org_with_solutions.get(f"solutions?$select=uniquename&$filter={expression}&$orderby=uniquename")
    assert names(response) == expected


def test_filter_by_guid_and_datetime_literals(org_with_solutions: EmulatorOrg) -> None:
    row = org_with_solutions.get(
        "solutions?$select=solutionid,_publisherid_value,createdon&$filter=uniquename eq 'Zeta'"
    ).json()["value"][0]
    assert names(org_with_solutions.get(f"solutions?$select=uniquename&$filter=solutionid eq {row['solutionid']}")) == [
        "Zeta"
    ]
    by_publisher = org_with_solutions.get(
        f"solutions?$select=uniquename&$filter=_publisherid_value eq {row['_publisherid_value']}"
    )
    assert names(by_publisher) == ["Zeta"]
    assert "Zeta" in names(
        org_with_solutions.get("solutions?$select=uniquename&$filter=createdon ge 2020-01-01T00:00:00Z")
    )
    assert names(org_with_solutions.get("solutions?$select=uniquename&$filter=createdon lt 2020-01-01")) == []


def test_filter_type_errors_and_unknown_properties(emulator_org: EmulatorOrg) -> None:
    incompatible = emulator_org.get("solutions?$filter=uniquename eq 5")
    assert incompatible.status_code == 400
    assert "incompatible types" in incompatible.json()["error"]["message"]
    unknown = emulator_org.get("solutions?$select=nosuchcolumn")
    assert unknown.status_code == 400
    assert unknown.json()["error"]["message"] == (
        "Could not find a property named 'nosuchcolumn' on type 'Microsoft.Dynamics.CRM.solution'."
    )
    assert emulator_org.get("solutions?$filter=nosuch eq 1").status_code == 400
    assert emulator_org.get("nosuchentities").status_code == 404


def test_orderby_multiple_keys_and_top(org_with_solutions: EmulatorOrg) -> None:
    response = org_with_solutions.get(
        "solutions?$select=uniquename,ismanaged&$orderby=ismanaged desc,uniquename asc&$top=3"
    )
    rows = response.json()["value"]
    assert len(rows) == 3
    assert all(row["ismanaged"] for row in rows)
    assert [r["uniquename"] for r in rows] == sorted((r["uniquename"] for r in rows), key=str.casefold)
    assert "@odata.nextLink" not in response.json()


def test_select_always_returns_the_key_and_etag(org_with_solutions: EmulatorOrg) -> None:
    row = org_with_solutions.get("solutions?$select=uniquename&$top=1").json()["value"][0]
    assert set(row) == {"@odata.etag", "uniquename", "solutionid"}
    assert row["@odata.etag"].startswith('W/"')


def test_paging_follows_next_links_to_the_end(org_with_solutions: EmulatorOrg) -> None:
    everything = names(org_with_solutions.get("solutions?$select=uniquename&$orderby=uniquename"))
    seen: list[str] = []
    url = org_with_solutions.api_url + "solutions?$select=uniquename&$orderby=uniquename&$count=true"
    pages = 0
    while url:
        response = org_with_solutions.http.get(url, headers=org_with_solutions.headers(Prefer="odata.maxpagesize=4"))
        assert response.headers["Preference-Applied"] == "odata.maxpagesize=4"
        body = response.json()
        assert body["@odata.count"] == len(everything)
        assert len(body["value"]) <= 4
        seen += [row["uniquename"] for row in body["value"]]
        url = body.get("@odata.nextLink")
        pages += 1
    assert seen == everything
    assert pages == -(-len(everything) // 4)


def test_expand_publisher_and_formatted_values(org_with_solutions: EmulatorOrg) -> None:
    response = org_with_solutions.get(
        "solutions?$select=uniquename,_publisherid_value,ismanaged&$filter=uniquename eq 'Success'"
        "&$expand=publisherid($select=uniquename,customizationprefix)",
        headers={"Prefer": 'odata.include-annotations="*"'},
    )
    row = response.json()["value"][0]
    assert row["publisherid"]["uniquename"] == "ultradynamics"
    assert row["publisherid"]["customizationprefix"] == "ud"
    assert row["publisherid"]["publisherid"] == row["_publisherid_value"]
    assert row["ismanaged@OData.Community.Display.V1.FormattedValue"] == "Managed"
    assert row["_publisherid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "publisher"
    assert response.json()["@odata.context"].endswith(
        "$metadata#solutions(uniquename,_publisherid_value,ismanaged,publisherid(uniquename,customizationprefix))"
    )


def test_read_by_key(org_with_solutions: EmulatorOrg) -> None:
    solution_id = org_with_solutions.get("solutions?$select=solutionid&$filter=uniquename eq 'Success'").json()[
        "value"
    ][0]["solutionid"]
    one = org_with_solutions.get(f"solutions({solution_id})?$select=uniquename,version").json()
    assert one["uniquename"] == "Success"
    assert one["@odata.context"].endswith("$metadata#solutions(uniquename,version)/$entity")
    missing = uuid.uuid4()
    response = org_with_solutions.get(f"solutions({missing})")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == f"Entity 'solution' With Id = {missing} Does Not Exist"
    assert org_with_solutions.get("solutions(not-a-guid)").status_code == 400


def test_solution_components_reflect_the_package(org_with_solutions: EmulatorOrg) -> None:
    solution_id = org_with_solutions.get(
        "solutions?$select=solutionid&$filter=uniquename eq 'IncidentReporting'"
    ).json()["value"][0]["solutionid"]
    rows = org_with_solutions.get(
        "solutioncomponents?$select=componenttype,objectid,rootcomponentbehavior"
        f"&$filter=_solutionid_value eq {solution_id}"
    ).json()["value"]
    types = {row["componenttype"] for row in rows}
    assert {
        1,
        2,
        9,
        29,
        60,
        62,
        80,
        300,
        380,
    } <= types  # tables, columns, choices, flow, dashboard, sitemap, apps, env vars
    flow = next(row for row in rows if row["componenttype"] == 29)
    assert flow["objectid"] == "6e5a9197-e359-ee11-be6f-000d3a45ed19"  # the workflow id of the package
    assert flow["rootcomponentbehavior"] == 0


def test_entity_definitions_of_installed_tables(org_with_solutions: EmulatorOrg) -> None:
    table = org_with_solutions.get(
        "EntityDefinitions(LogicalName='emt_zeta')?$select=LogicalName,EntitySetName,IsCustomEntity"
    )
    assert table.status_code == 200
    assert table.json()["EntitySetName"] == "emt_zetas"
    assert table.json()["IsCustomEntity"] is True
    custom = org_with_solutions.get("EntityDefinitions?$select=LogicalName&$filter=IsCustomEntity eq true").json()[
        "value"
    ]
    assert {"csa_csincident", "emt_zeta", "ud_testentity1"} <= {row["LogicalName"] for row in custom}
    attributes = org_with_solutions.get(
        "EntityDefinitions(LogicalName='emt_zeta')/Attributes?$select=LogicalName"
    ).json()
    assert {"emt_name", "emt_zetaid"} <= {a["LogicalName"] for a in attributes["value"]}
    expanded = org_with_solutions.get(
        "EntityDefinitions(LogicalName='solution')?$select=LogicalName&$expand=Attributes($select=LogicalName)"
    )
    assert "uniquename" in {a["LogicalName"] for a in expanded.json()["Attributes"]}
    assert org_with_solutions.get("EntityDefinitions(LogicalName='nosuchtable')").status_code == 404


def test_record_counts_of_custom_tables(emulator_org: EmulatorOrg) -> None:
    emulator_org.install(make_solution("Counting", "1.0.0.0", tables=("emt_counted",)))
    response = emulator_org.get('RetrieveTotalRecordCount(EntityNames=@p1)?@p1=["emt_counted"]')
    seeded = response.json()["EntityRecordCountCollection"]["Values"][0]
    assert seeded > 0
    again = emulator_org.get('RetrieveTotalRecordCount(EntityNames=@p1)?@p1=["emt_counted"]')
    assert again.json()["EntityRecordCountCollection"]["Values"][0] == seeded  # deterministic
    emulator_org.server.admin("POST", f"/orgs/{emulator_org.name}/tables/emt_counted", {"rows": 42})
    set_by_admin = emulator_org.get("RetrieveTotalRecordCount(EntityNames=@p1)?@p1=" + '["emt_counted"]')
    assert set_by_admin.json()["EntityRecordCountCollection"]["Values"] == [42]
    assert emulator_org.get('RetrieveTotalRecordCount(EntityNames=@p1)?@p1=["nosuch_table"]').status_code == 404


def test_system_solutions_of_a_new_org(emulator_org: EmulatorOrg) -> None:
    rows = emulator_org.get("solutions?$select=uniquename,ismanaged,isvisible").json()["value"]
    by_name = {row["uniquename"]: row for row in rows}
    assert {"Default", "Active", "Basic", "System"} <= set(by_name)
    assert by_name["Default"]["ismanaged"] is False
    assert by_name["Default"]["isvisible"] is True
    assert emulator_org.get("publishers?$select=uniquename&$filter=startswith(uniquename,'DefaultPublisher')").json()[
        "value"
    ]
