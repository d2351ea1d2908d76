"""The emulator held to Dataverse's documentation and OData's URL conventions, not to any one client.

Every test names the public page it follows and talks to the emulator over HTTPS with plain ``requests``
(or msal), as a third-party client would: no code of the portal is involved. Behaviour the documentation
does not give is a switch in dataverse_emulator/unconfirmed.py, tested from both sides here or in
test_unconfirmed_switches.py.
"""

from __future__ import annotations

import base64
import html
import json
import re
import socket
import ssl
import urllib.parse
import uuid
from pathlib import Path

import pytest
import requests

from tests.emulator.packages import b64, make_solution
from tests.support.emulator import EmulatorOrg, EmulatorServer, start_emulator

CLIENT_ERRORS = (
    "https://learn.microsoft.com/en-us/troubleshoot/power-platform/power-apps/dataverse/web-api-client-errors"
)
PRIVILEGE_ERROR = "https://learn.microsoft.com/en-us/troubleshoot/power-platform/power-apps/dataverse/client-errors"
PRIVILEGE_DENIED = "0x80040220"


def fetch(org: EmulatorOrg, entity_set: str, xml: str, *, annotations: bool = True, **extra: str) -> requests.Response:
    headers = {"Prefer": 'odata.include-annotations="*"'} if annotations else {}
    return org.get(entity_set, params={"fetchXml": xml, **extra}, headers=headers)


def limited_identity(org: EmulatorOrg, *, lacks: tuple[str, ...], name: str = "Limited") -> None:
    """Give the org's application user only a custom role: System Administrator minus ``lacks``."""
    roles = org.server.admin("GET", f"/orgs/{org.name}/roles")
    everything = next(r for r in roles if r["name"] == "System Administrator")["privileges"]
    granted = [p for p in everything if p not in lacks]
    org.server.admin("POST", f"/orgs/{org.name}/roles", {"name": name, "privileges": granted})
    org.server.admin("POST", f"/orgs/{org.name}/users/{org.client_id}/roles", {"roles": [name]})


def set_roles(org: EmulatorOrg, *roles: str) -> dict:
    return org.server.admin("POST", f"/orgs/{org.name}/users/{org.client_id}/roles", {"roles": list(roles)})


# --------------------------------------------------------------------------------------------------
# 1. '+' in a query string is a space
# --------------------------------------------------------------------------------------------------
def test_plus_in_a_query_string_is_a_space(emulator_org: EmulatorOrg) -> None:
    """Query strings are form-encoded: '+' and %20 are both a space, %2B is a plus. "Use FetchXml with the Web
    API" sends its examples that way (``fetchXml=%3Cfetch+page%3D%221%22+count…``):
    https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/use-fetchxml-web-api and
    https://url.spec.whatwg.org/#application/x-www-form-urlencoded"""
    session, headers = emulator_org.http, emulator_org.headers()
    plus = session.get(
        emulator_org.api_url + "EntityDefinitions?$select=LogicalName&$filter=LogicalName+eq+'solution'",
        headers=headers,
    )
    spaces = session.get(
        emulator_org.api_url + "EntityDefinitions?$select=LogicalName&$filter=LogicalName%20eq%20'solution'",
        headers=headers,
    )
    assert plus.status_code == 200, plus.text
    assert [row["LogicalName"] for row in plus.json()["value"]] == ["solution"]
    assert plus.json()["value"] == spaces.json()["value"]
    literal_plus = session.get(
        emulator_org.api_url + "solutions?$select=uniquename&$filter=uniquename+eq+'a%2Bb'", headers=headers
    )
    assert literal_plus.status_code == 200 and literal_plus.json()["value"] == []
    # What requests' params= sends: spaces as '+'.
    encoded = session.get(
        emulator_org.api_url + "solutions",
        params={"$select": "uniquename", "$filter": "uniquename eq 'Default'"},
        headers=headers,
    )
    assert "+eq+" in encoded.url
    assert [row["uniquename"] for row in encoded.json()["value"]] == ["Default"]


# --------------------------------------------------------------------------------------------------
# 2. Organisations at the root of their own origin, the identity provider on a port of its own
# --------------------------------------------------------------------------------------------------
def test_an_organisation_lives_at_the_root_of_its_own_origin(emulator: EmulatorServer) -> None:
    """An environment is ``https://<org>.crm.dynamics.com/api/data/v9.2/`` ("Web API URL and versions",
    https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors#web-api-url-and-versions):
    a client that resolves ``api/data/v9.2/WhoAmI()`` against the organisation's URL reaches it, and the token
    is asked for ``<org url>/.default``. The emulator gives each organisation a port of its own."""
    org = emulator.new_org()
    parts = urllib.parse.urlsplit(org.url)
    assert parts.path in ("", "/") and parts.port not in (None, urllib.parse.urlsplit(emulator.base_url).port)
    url = urllib.parse.urljoin(org.url + "/", "api/data/v9.2/WhoAmI()")
    assert url == f"https://127.0.0.1:{parts.port}/api/data/v9.2/WhoAmI()"
    whoami = org.http.get(url, headers=org.headers())
    assert whoami.status_code == 200, whoami.text
    assert set(whoami.json()) >= {"UserId", "BusinessUnitId", "OrganizationId"}
    # Reported by the admin API.
    summary = emulator.admin("GET", f"/orgs/{org.name}")
    assert (summary["addressing"], summary["port"], summary["url"]) == ("origin", parts.port, org.url)
    assert emulator.admin("GET", "/health")["org_ports"][org.name] == parts.port
    # Nothing else lives at that origin, and the org is not under the main port's path.
    assert org.http.get(f"{org.url}/{org.name}/api/data/v9.2/WhoAmI()", headers=org.headers()).status_code == 404
    assert (
        org.http.get(f"{emulator.base_url}/{org.name}/api/data/v9.2/WhoAmI()", headers=org.headers()).status_code == 404
    )
    # A token for another organisation's origin is refused (audience).
    other = emulator.new_org()
    refused = org.http.get(url, headers={**org.headers(), "Authorization": f"Bearer {other.token()}"})
    assert refused.status_code == 401


def test_the_identity_provider_is_a_host_of_its_own(emulator_org: EmulatorOrg) -> None:
    """login.microsoftonline.com is not the environment's host: the authority, its discovery document and
    token endpoint live on the identity provider's own port
    (https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow), and
    Dataverse's 401 challenge points there."""
    server = emulator_org.server
    idp = urllib.parse.urlsplit(server.idp_url)
    assert idp.port not in (urllib.parse.urlsplit(server.base_url).port, urllib.parse.urlsplit(emulator_org.url).port)
    assert emulator_org.authority == f"{server.idp_url}/{emulator_org.tenant_id}"
    discovery = emulator_org.http.get(f"{emulator_org.authority}/v2.0/.well-known/openid-configuration").json()
    assert discovery["token_endpoint"] == f"{emulator_org.authority}/oauth2/v2.0/token"
    app = server.msal_app(emulator_org.client_id, emulator_org.client_secret)
    result = app.acquire_token_for_client(scopes=[f"{emulator_org.url}/.default"])
    assert "access_token" in result, result
    challenge = emulator_org.http.get(emulator_org.api_url + "WhoAmI()").headers["WWW-Authenticate"]
    assert f"authorization_uri={emulator_org.authority}/oauth2/authorize" in challenge
    assert f"resource_id={emulator_org.url}/" in challenge
    # The main port serves no identity provider.
    assert (
        emulator_org.http.get(
            f"{server.base_url}/{emulator_org.tenant_id}/v2.0/.well-known/openid-configuration"
        ).status_code
        == 404
    )


def test_the_path_option_serves_an_organisation_under_the_main_port(emulator: EmulatorServer) -> None:
    """For tests that create hundreds of organisations: ``addressing: path`` puts one under ``/<org>`` of the
    main port (the emulator's own option; the product's client works with either)."""
    org = emulator.new_org(addressing="path")
    assert org.url == f"{emulator.base_url}/{org.name}"
    assert emulator.admin("GET", f"/orgs/{org.name}")["addressing"] == "path"
    assert org.get("WhoAmI()").status_code == 200


def test_ports_are_picked_by_the_os_and_remembered_across_a_restart(tmp_path: Path) -> None:
    """The emulator's own behaviour: ports the OS picked are reported (admin API, state file) and taken again
    after a restart while still free, so registered URLs keep working."""
    with start_emulator(tmp_path) as first:
        org = first.new_org("remembered")
        idp_url, url = first.idp_url, org.url
        state = json.loads((tmp_path / "state.json").read_text())
        assert state["idp_port"] == urllib.parse.urlsplit(idp_url).port
        org_state = json.loads((tmp_path / "state.json.orgs" / "remembered.json").read_text())
        assert org_state["port"] == urllib.parse.urlsplit(url).port
        main_port = urllib.parse.urlsplit(first.base_url).port
    with start_emulator(tmp_path, "--port", str(main_port)) as second:
        assert second.idp_url == idp_url
        assert second.admin("GET", "/orgs/remembered")["url"] == url
        org.server, org._session, org._token = second, None, None
        assert org.get("WhoAmI()").status_code == 200
    # A remembered port somebody else took: the organisation moves, and says where.
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", urllib.parse.urlsplit(url).port))
    blocker.listen(1)
    try:
        with start_emulator(tmp_path, "--port", str(main_port)) as third:
            moved = third.admin("GET", "/orgs/remembered")["url"]
            assert moved != url and re.fullmatch(r"https://127\.0\.0\.1:\d+", moved)
            context = ssl.create_default_context(cafile=str(third.ca_file))
            address = ("127.0.0.1", urllib.parse.urlsplit(moved).port)
            with (
                socket.create_connection(address, timeout=5) as raw,
                context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
            ):
                assert tls.version()
    finally:
        blocker.close()


# --------------------------------------------------------------------------------------------------
# 3. FetchXML, and unknown query options refused
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def fetch_org(emulator: EmulatorServer) -> EmulatorOrg:
    org = emulator.new_org()
    for index, name in enumerate(("Alpha", "Bravo", "Charlie", "Delta", "Echo")):
        org.install(make_solution(f"Fx{name}", f"1.0.{index}.0", managed=index % 2 == 0))
    return org


def test_fetchxml_attributes_filter_and_order(fetch_org: EmulatorOrg) -> None:
    """``?fetchXml=`` on an entity set, as "Use FetchXml with the Web API" shows
    (https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/use-fetchxml-web-api):
    the attributes asked for plus the primary key, no null properties, the filter and the order applied."""
    xml = (
        "<fetch mapping='logical'><entity name='solution'>"
        "<attribute name='uniquename'/><attribute name='version'/><attribute name='description'/>"
        "<order attribute='uniquename' descending='true'/>"
        "<filter type='and'><condition attribute='uniquename' operator='like' value='Fx%'/>"
        "<condition attribute='ismanaged' operator='eq' value='1'/></filter>"
        "</entity></fetch>"
    )
    response = fetch(fetch_org, "solutions", xml, annotations=False)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["@odata.context"].endswith("$metadata#solutions(uniquename,version,description,solutionid)")
    assert [row["uniquename"] for row in body["value"]] == ["FxEcho", "FxCharlie", "FxAlpha"]
    first = body["value"][0]
    assert set(first) == {"@odata.etag", "uniquename", "version", "solutionid"}  # description is null: left out
    assert uuid.UUID(first["solutionid"])


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("<condition attribute='uniquename' operator='eq' value='fxbravo'/>", ["FxBravo"]),
        (
            "<condition attribute='uniquename' operator='ne' value='FxBravo'/>",
            ["FxAlpha", "FxCharlie", "FxDelta", "FxEcho"],
        ),
        (
            "<condition attribute='uniquename' operator='in'><value>FxAlpha</value><value>FxEcho</value></condition>",
            ["FxAlpha", "FxEcho"],
        ),
        (
            "<condition attribute='uniquename' operator='not-in'>"
            "<value>FxAlpha</value><value>FxEcho</value></condition>",
            ["FxBravo", "FxCharlie", "FxDelta"],
        ),
        ("<condition attribute='uniquename' operator='begins-with' value='FxC'/>", ["FxCharlie"]),
        ("<condition attribute='uniquename' operator='ends-with' value='ta'/>", ["FxDelta"]),
        ("<condition attribute='uniquename' operator='not-like' value='%a%'/>", ["FxEcho"]),
        ("<condition attribute='uniquename' operator='gt' value='FxC'/>", ["FxCharlie", "FxDelta", "FxEcho"]),
        ("<condition attribute='uniquename' operator='le' value='FxBravo'/>", ["FxAlpha", "FxBravo"]),
        (
            "<condition attribute='uniquename' operator='between'><value>FxB</value><value>FxD</value></condition>",
            ["FxBravo", "FxCharlie"],
        ),
        ("<condition attribute='description' operator='not-null'/>", []),
        (
            "<filter type='or'><condition attribute='uniquename' operator='eq' value='FxAlpha'/>"
            "<condition attribute='uniquename' operator='eq' value='FxDelta'/></filter>",
            ["FxAlpha", "FxDelta"],
        ),
    ],
)
def test_fetchxml_condition_operators(fetch_org: EmulatorOrg, condition: str, expected: list[str]) -> None:
    """The common condition operators of the FetchXML operator reference
    (https://learn.microsoft.com/en-us/power-apps/developer/data-platform/fetchxml/reference/operators);
    string comparisons ignore case."""
    xml = (
        "<fetch><entity name='solution'><attribute name='uniquename'/><order attribute='uniquename'/>"
        f"<filter><condition attribute='uniquename' operator='like' value='Fx%'/>{condition}</filter>"
        "</entity></fetch>"
    )
    response = fetch(fetch_org, "solutions", xml, annotations=False)
    assert response.status_code == 200, response.text
    assert [row["uniquename"] for row in response.json()["value"]] == expected


def test_fetchxml_top_count_page_and_the_paging_cookie(fetch_org: EmulatorOrg) -> None:
    """``top``; ``count`` + ``page``; with ``Prefer: odata.include-annotations`` the
    ``@Microsoft.Dynamics.CRM.morerecords`` and ``@Microsoft.Dynamics.CRM.fetchxmlpagingcookie`` annotations
    while more rows follow, the cookie's ``pagingcookie`` URL-encoded twice, sent back XML-encoded in
    ``paging-cookie`` for the next page; none on the last page; ``$count=true`` counts all rows
    (https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/use-fetchxml-web-api#paging-with-fetchxml)."""
    body = "<entity name='solution'><attribute name='uniquename'/><order attribute='uniquename'/>" + (
        "<filter><condition attribute='uniquename' operator='begins-with' value='Fx'/></filter></entity>"
    )
    top = fetch(fetch_org, "solutions", f"<fetch top='2'>{body}</fetch>").json()
    assert [row["uniquename"] for row in top["value"]] == ["FxAlpha", "FxBravo"]
    assert "@Microsoft.Dynamics.CRM.morerecords" not in top

    first = fetch(fetch_org, "solutions", f"<fetch count='2' page='1'>{body}</fetch>", **{"$count": "true"}).json()
    assert [row["uniquename"] for row in first["value"]] == ["FxAlpha", "FxBravo"]
    assert first["@odata.count"] == 5 and first["@Microsoft.Dynamics.CRM.totalrecordcount"] == 5
    assert first["@Microsoft.Dynamics.CRM.morerecords"] is True
    cookie = first["@Microsoft.Dynamics.CRM.fetchxmlpagingcookie"]
    match = re.fullmatch(r'<cookie pagenumber="2" pagingcookie="([^"]+)" istracking="False" />', cookie)
    assert match, cookie
    inner = urllib.parse.unquote(urllib.parse.unquote(match.group(1)))
    assert inner.startswith('<cookie page="1"><uniquename last="FxBravo" first="FxAlpha" />')

    second = fetch(
        fetch_org,
        "solutions",
        f"<fetch count='2' page='2' paging-cookie='{html.escape(inner, quote=True)}'>{body}</fetch>",
    ).json()
    assert [row["uniquename"] for row in second["value"]] == ["FxCharlie", "FxDelta"]
    inner = urllib.parse.unquote(
        urllib.parse.unquote(
            re.search(r'pagingcookie="([^"]+)"', second["@Microsoft.Dynamics.CRM.fetchxmlpagingcookie"]).group(1)
        )
    )
    last = fetch(
        fetch_org,
        "solutions",
        f"<fetch count='2' page='3' paging-cookie='{html.escape(inner, quote=True)}'>{body}</fetch>",
    ).json()
    assert [row["uniquename"] for row in last["value"]] == ["FxEcho"]
    assert "@Microsoft.Dynamics.CRM.morerecords" not in last
    assert "@Microsoft.Dynamics.CRM.fetchxmlpagingcookie" not in last
    # Without the annotation preference, no annotations.
    plain = fetch(fetch_org, "solutions", f"<fetch count='2' page='1'>{body}</fetch>", annotations=False).json()
    assert not any(key.startswith("@Microsoft") for key in plain)


def test_fetchxml_refusals(fetch_org: EmulatorOrg) -> None:
    """A FetchXML the server cannot run is refused with 400, never run partly: an attribute the table lacks,
    another table than the entity set's, what the emulator does not implement (docs/emulator.md)
    (https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/use-fetchxml-web-api)."""
    cases = {
        "<fetch><entity name='solution'><attribute name='nosuch'/></entity></fetch>": "nosuch",
        "<fetch><entity name='publisher'><attribute name='uniquename'/></entity></fetch>": "publisher",
        "<fetch><entity name='solution'>"
        "<link-entity name='publisher' from='publisherid' to='publisherid'/></entity></fetch>": "link-entity",
        "<fetch aggregate='true'><entity name='solution'>"
        "<attribute name='uniquename' aggregate='count' alias='n'/></entity></fetch>": "aggregate",
        "<fetch><entity name='solution'><filter>"
        "<condition attribute='uniquename' operator='sounds-like' value='x'/></filter></entity></fetch>": "sounds-like",
        "<fetch top='1' count='1'><entity name='solution'/></fetch>": "top",
        "<fetch><entity name='solution'>": "not valid",
    }
    for xml, mentioned in cases.items():
        response = fetch(fetch_org, "solutions", xml)
        assert response.status_code == 400, (xml, response.text)
        assert mentioned in response.json()["error"]["message"], (xml, response.text)
    mixed = fetch_org.get("solutions", params={"fetchXml": "<fetch><entity name='solution'/></fetch>", "$top": "1"})
    assert mixed.status_code == 400


@pytest.mark.parametrize("option", ["$skip=1", "$apply=groupby((uniquename))", "$search=x", "sql=select+*", "foo=1"])
def test_unknown_query_options_are_refused_never_ignored(emulator_org: EmulatorOrg, option: str) -> None:
    """An option the emulator does not apply is refused, as Dataverse refuses the ones it does not support
    ("page-results": "$skip" is not supported,
    https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/query/page-results), never
    answered with every row. ``sql`` gets the answer of an environment without the SQL preview."""
    response = emulator_org.get(f"solutions?$select=uniquename&{option}")
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "0x80060888"
    name = option.split("=")[0]
    if name == "sql":
        assert error["message"] == "sql query parameter is not supported."
    else:
        assert error["message"] == f"The query parameter {name} is not supported"
    # Parameter aliases (@p1) are part of OData and never refused.
    assert emulator_org.get("solutions?$select=uniquename&@p1='x'").status_code == 200


# --------------------------------------------------------------------------------------------------
# 4. EntityDefinitions
# --------------------------------------------------------------------------------------------------
def test_entity_definitions_is_private_and_the_pinned_properties(emulator_org: EmulatorOrg) -> None:
    """EntityMetadata properties clients filter and read (the EntityMetadata reference,
    https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/reference/entitymetadata;
    "Query table definitions using the Web API": ``$filter`` on primitive properties,
    https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/query-metadata-web-api)."""
    listed = emulator_org.get("EntityDefinitions?$select=LogicalName,IsPrivate&$filter=IsPrivate eq false")
    assert listed.status_code == 200, listed.text
    names = {row["LogicalName"] for row in listed.json()["value"]}
    assert {"solution", "publisher", "asyncoperation", "importjob", "solutionhistorydata", "role"} <= names
    assert all(row["IsPrivate"] is False for row in listed.json()["value"])
    assert emulator_org.get("EntityDefinitions?$filter=IsPrivate eq true").json()["value"] == []
    one = emulator_org.get("EntityDefinitions(LogicalName='solution')?$expand=Attributes($select=LogicalName)").json()
    pinned = {
        "EntitySetName": "solutions",
        "PrimaryIdAttribute": "solutionid",
        "PrimaryNameAttribute": "friendlyname",
        "SchemaName": "Solution",
        "ObjectTypeCode": 7100,
        "IsCustomEntity": False,
        "IsManaged": True,
        "IsPrivate": False,
    }
    assert {key: one[key] for key in pinned} == pinned
    assert one["DisplayName"]["UserLocalizedLabel"]["Label"] == "Solution"
    assert "uniquename" in {attribute["LogicalName"] for attribute in one["Attributes"]}
    assert uuid.UUID(one["MetadataId"])


# --------------------------------------------------------------------------------------------------
# 5. The documented client errors
# --------------------------------------------------------------------------------------------------
def test_the_three_documented_client_errors(emulator_org: EmulatorOrg) -> None:
    """ "Troubleshoot Dataverse Web API client errors" (CLIENT_ERRORS): an unknown segment is 404 0x8006088a, an
    unknown property 400 0x0, a function called with POST 404 with an empty code and "No HTTP resource was
    found that matches the request URI"."""
    segment = emulator_org.get("Account")
    assert segment.status_code == 404
    assert segment.json()["error"] == {"code": "0x8006088a", "message": "Resource not found for the segment 'Account'."}
    prop = emulator_org.get("solutions?$select=Name")
    assert prop.status_code == 400
    assert prop.json()["error"] == {
        "code": "0x0",
        "message": "Could not find a property named 'Name' on type 'Microsoft.Dynamics.CRM.solution'.",
    }
    method = emulator_org.post("WhoAmI")
    assert method.status_code == 404
    assert method.json()["error"] == {
        "code": "",
        "message": f"No HTTP resource was found that matches the request URI '{emulator_org.api_url}WhoAmI'.",
    }
    assert emulator_org.get("ImportSolution").json()["error"]["code"] == ""  # an action with GET, the same
    assert emulator_org.get("solutions?$filter=Nosuch eq 1").json()["error"]["code"] == "0x0"


# --------------------------------------------------------------------------------------------------
# 6. solutionhistories, bodies of any Content-Type
# --------------------------------------------------------------------------------------------------
def test_solutionhistories_beside_msdyn_solutionhistories(emulator_org: EmulatorOrg) -> None:
    """The solutionhistorydata table (entity set solutionhistories): RetrieveMultiple only, operation 0
    Import / 1 Uninstall / 2 Export, status 0 Start / 1 End, result and errorcode integers
    (https://learn.microsoft.com/en-us/power-apps/developer/data-platform/reference/entities/solutionhistorydata)."""
    emulator_org.install(make_solution("Historic", "1.0.0.0"))
    emulator_org.post("ExportSolution", json={"SolutionName": "Default", "Managed": False})
    rows = emulator_org.get(
        "solutionhistories?$select=solutionname,operation,suboperation,status,result,ismanaged,errorcode"
        "&$orderby=starttime asc"
    ).json()["value"]
    imported = next(row for row in rows if row["solutionname"] == "Historic")
    assert (imported["operation"], imported["suboperation"], imported["status"], imported["result"]) == (0, 1, 1, 1)
    assert imported["ismanaged"] is True and imported["errorcode"] is None
    assert any(row["operation"] == 2 for row in rows)
    assert uuid.UUID(imported["solutionhistorydataid"])
    by_key = emulator_org.get(f"solutionhistories({imported['solutionhistorydataid']})")
    assert by_key.status_code == 405


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/octet-stream",
        "application/json; odata.metadata=minimal",
        "application/json; charset=utf-16",
    ],
)
def test_request_bodies_are_read_whatever_their_content_type(
    emulator_org: EmulatorOrg, content_type: str | None
) -> None:
    """An action's JSON body is read whatever Content-Type the client declares (a charset is honoured):
    https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/use-web-api-actions"""
    body = json.dumps({"SolutionName": "Default", "Managed": False})
    encoding = "utf-16" if content_type and "utf-16" in content_type else "utf-8"
    headers = {k: v for k, v in emulator_org.headers().items() if k != "Content-Type"}
    if content_type:
        headers["Content-Type"] = content_type
    response = emulator_org.http.post(
        emulator_org.api_url + "ExportSolution", data=body.encode(encoding), headers=headers, timeout=60
    )
    assert response.status_code == 200, response.text
    assert base64.b64decode(response.json()["ExportSolutionFile"])[:2] == b"PK"


def test_a_chunked_request_body_is_read(emulator_org: EmulatorOrg) -> None:
    """HTTP/1.1 chunked transfer coding (https://www.rfc-editor.org/rfc/rfc9112#section-7.1): a client that
    streams its body without Content-Length is read in full."""
    body = json.dumps({"SolutionName": "Default", "Managed": False}).encode()
    response = emulator_org.http.post(
        emulator_org.api_url + "ExportSolution",
        data=iter([body[:10], body[10:]]),
        headers=emulator_org.headers(**{"Content-Type": "application/json"}),
        timeout=60,
    )
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert response.status_code == 200, response.text


# --------------------------------------------------------------------------------------------------
# 7. Privileges
# --------------------------------------------------------------------------------------------------
IMPORT_PRIVILEGES = (
    "https://learn.microsoft.com/en-us/previous-versions/dynamicscrm-2016/developers-guide/gg327891(v=crm.8)"
)
EXPORT_PRIVILEGES = (
    "https://learn.microsoft.com/en-us/previous-versions/dynamicscrm-2016/developers-guide/gg328430(v=crm.8)"
)


def assert_denied(response: requests.Response, privilege: str) -> None:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == PRIVILEGE_DENIED, error
    assert re.match(r"Principal user \(Id=[0-9a-f-]{36}, type=8\b", error["message"]), error
    assert f"is missing {privilege} privilege (Id=" in error["message"], error


def test_import_solution_needs_its_documented_privileges(emulator_org: EmulatorOrg) -> None:
    """ "ImportSolution message privileges" (IMPORT_PRIVILEGES) lists prvWriteOrganization, which System
    Customizer does not hold (the "Organization entity privileges" page,
    https://learn.microsoft.com/en-us/previous-versions/dynamicscrm-2013/developers-guide/gg327916(v=crm.6));
    the refusal is 403 with 0x80040220 naming it (PRIVILEGE_ERROR)."""
    assert set_roles(emulator_org, "System Customizer")["roles"] == ["System Customizer"]
    package = b64(make_solution("Guarded", "1.0.0.0"))
    assert_denied(emulator_org.post("ImportSolution", json={"CustomizationFile": package}), "prvWriteOrganization")
    assert_denied(emulator_org.post("ImportSolutionAsync", json={"CustomizationFile": package}), "prvWriteOrganization")
    assert emulator_org.import_count("Guarded") == 0
    set_roles(emulator_org, "System Administrator")
    assert emulator_org.post("ImportSolution", json={"CustomizationFile": package}).status_code == 204


def test_privileges_that_depend_on_the_components(emulator_org: EmulatorOrg) -> None:
    """ "The exact set of privileges needed depends on the entity types specified in the request"
    (IMPORT_PRIVILEGES): without prvReadWebResource a solution without web resources imports, one with a
    web resource is refused naming it."""
    limited_identity(emulator_org, lacks=("prvReadWebResource",))
    plain = make_solution("NoResources", "1.0.0.0")
    assert emulator_org.post("ImportSolution", json={"CustomizationFile": b64(plain)}).status_code == 204
    resource = make_solution("WithResource", "1.0.0.0", web_resources=((str(uuid.uuid4()), "emt_/script.js"),))
    assert_denied(emulator_org.post("ImportSolution", json={"CustomizationFile": b64(resource)}), "prvReadWebResource")


def test_export_solution_needs_its_documented_privileges(emulator_org: EmulatorOrg) -> None:
    """ "ExportSolution message privileges" (EXPORT_PRIVILEGES) lists prvReadPublisher."""
    limited_identity(emulator_org, lacks=("prvReadPublisher",))
    body = {"SolutionName": "Default", "Managed": False}
    assert_denied(emulator_org.post("ExportSolution", json=body), "prvReadPublisher")
    assert_denied(emulator_org.post("ExportSolutionAsync", json=body), "prvReadPublisher")


def test_the_undocumented_action_sets_are_an_assumption(emulator_org: EmulatorOrg) -> None:
    """No list is documented for UninstallSolutionAsync; dataverse_emulator/unconfirmed.py ACTION_PRIVILEGES
    assumes prvDeleteSolution among others (refusal as PRIVILEGE_ERROR)."""
    emulator_org.install(make_solution("Removable", "1.0.0.0"))
    limited_identity(emulator_org, lacks=("prvDeleteSolution",))
    assert_denied(
        emulator_org.post("UninstallSolutionAsync", json={"SolutionUniqueName": "Removable"}), "prvDeleteSolution"
    )
    assert_denied(emulator_org.post("DeleteAndPromoteAsync", json={"UniqueName": "Removable"}), "prvDeleteSolution")


def test_an_async_action_refused_at_the_request_or_in_its_system_job(emulator_org: EmulatorOrg) -> None:
    """Both sides of unconfirmed.PRIVILEGE_CHECK_DEFAULT: "request" refuses the call (403), "job" accepts it and
    the system job fails with errorcode -2147220960 (0x80040220) and the same message (PRIVILEGE_ERROR)."""
    set_roles(emulator_org, "System Customizer")
    package = b64(make_solution("Later", "1.0.0.0"))
    assert_denied(emulator_org.post("ImportSolutionAsync", json={"CustomizationFile": package}), "prvWriteOrganization")
    emulator_org.settings(privilege_check="job")
    accepted = emulator_org.post("ImportSolutionAsync", json={"CustomizationFile": package})
    assert accepted.status_code == 200, accepted.text
    set_roles(emulator_org, "System Administrator")  # to read the job; it runs as its caller
    operation = emulator_org.wait_for_operation(accepted.json()["AsyncOperationId"])
    assert (operation["statecode"], operation["statuscode"], operation["errorcode"]) == (3, 31, -2147220960)
    assert "is missing prvWriteOrganization privilege" in operation["message"]
    assert emulator_org.get("solutions?$filter=uniquename eq 'Later'").json()["value"] == []


def test_reading_an_entity_set_needs_its_read_privilege(emulator_org: EmulatorOrg) -> None:
    """Reading a table needs its read privilege (PRIVILEGE_ERROR; solution and solutioncomponent share
    prvReadSolution on the "Solution entity privileges" page,
    https://learn.microsoft.com/en-us/previous-versions/dynamicscrm-2015/developers-guide/gg334478(v=crm.7));
    an ``$expand`` or a ``$filter`` through a lookup needs the related table's too."""
    limited_identity(emulator_org, lacks=("prvReadAsyncOperation", "prvReadPublisher"))
    assert_denied(emulator_org.get("asyncoperations?$select=name"), "prvReadAsyncOperation")
    assert_denied(emulator_org.get("asyncoperations/$count"), "prvReadAsyncOperation")
    assert_denied(
        emulator_org.get("asyncoperations", params={"fetchXml": "<fetch><entity name='asyncoperation'/></fetch>"}),
        "prvReadAsyncOperation",
    )
    assert emulator_org.get("solutions?$select=uniquename").status_code == 200
    assert_denied(
        emulator_org.get("solutions?$select=uniquename&$expand=publisherid($select=uniquename)"), "prvReadPublisher"
    )
    assert_denied(emulator_org.get("solutions?$filter=publisherid/uniquename eq 'x'"), "prvReadPublisher")
    assert emulator_org.get("WhoAmI()").status_code == 200  # no privilege needed


def test_retrieve_user_privileges_and_the_role_tables(emulator_org: EmulatorOrg) -> None:
    """RetrieveUserPrivileges bound to systemuser returns RolePrivilege complex types (BusinessUnitId, Depth,
    PrivilegeId, PrivilegeName, RecordFilterId, RecordFilterUniqueName):
    https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/reference/retrieveuserprivileges,
    https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/reference/roleprivilege; the
    roles, privileges, roleprivilegescollection and systemuserrolescollection entity sets and the
    systemuserroles_association navigation read the same
    (https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/reference/role)."""
    set_roles(emulator_org, "System Customizer")
    user_id = emulator_org.get("WhoAmI()").json()["UserId"]
    response = emulator_org.get(f"systemusers({user_id})/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["@odata.context"].endswith("$metadata#Microsoft.Dynamics.CRM.RetrieveUserPrivilegesResponse")
    held = {row["PrivilegeName"]: row for row in body["RolePrivileges"]}
    assert "prvWriteOrganization" not in held and "prvWriteCustomization" in held
    sample = held["prvReadSolution"]
    assert set(sample) == {
        "BusinessUnitId",
        "Depth",
        "PrivilegeId",
        "PrivilegeName",
        "RecordFilterId",
        "RecordFilterUniqueName",
    }
    assert sample["Depth"] == "Global"
    assert sample["PrivilegeId"] == "b64e92c8-5d2a-4052-a026-1b73eff9cebf"  # the documented GUID
    roles = emulator_org.get(f"systemusers({user_id})/systemuserroles_association?$select=name").json()["value"]
    assert [role["name"] for role in roles] == ["System Customizer"]
    role_id = roles[0]["roleid"]
    memberships = emulator_org.get(f"systemuserrolescollection?$filter=systemuserid eq {user_id}").json()["value"]
    assert [row["roleid"] for row in memberships] == [role_id]
    granted = emulator_org.get(f"roles({role_id})/roleprivileges_association?$select=name").json()["value"]
    assert {row["name"] for row in granted} == set(held)
    links = emulator_org.get(f"roleprivilegescollection?$filter=roleid eq {role_id}&$count=true").json()
    assert links["@odata.count"] == len(held)
    privilege = emulator_org.get("privileges?$filter=name eq 'prvWriteOrganization'").json()["value"]
    assert privilege[0]["privilegeid"] == "9f7b7e89-e5f6-41fd-8390-f06a7ec66d25"
    # Another user's privileges need prvReadUser; one's own never do.
    limited_identity(emulator_org, lacks=("prvReadUser",))
    assert (
        emulator_org.get(f"systemusers({user_id})/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()").status_code == 200
    )
    other = emulator_org.get("systemusers?$select=systemuserid")
    assert_denied(other, "prvReadUser")


def test_roles_through_the_admin_api_and_the_state_file(tmp_path: Path) -> None:
    """The emulator's own set-up: a custom role with chosen privileges, an application user given fewer
    roles at registration, and roles edited in the state file while the emulator is stopped."""
    with start_emulator(tmp_path) as server:
        org_info = server.create_org("roles-org")
        client = server.register_client(["roles-org"])
        server.admin(
            "POST",
            "/clients",
            {
                "tenant_id": server.tenant_id,
                "client_id": client["client_id"],
                "orgs": ["roles-org"],
                "roles": ["System Customizer"],
            },
        )
        summary = server.admin("GET", f"/orgs/roles-org/users/{client['client_id']}/roles")
        assert summary["roles"] == ["System Customizer"] and "prvWriteOrganization" not in summary["privileges"]
        refused = server.admin(
            "POST", "/orgs/roles-org/roles", {"name": "Bad", "privileges": ["prvNoSuchThing"]}, expect=400
        )
        assert "prvNoSuchThing" in refused["error"]
        created = server.admin(
            "POST", "/orgs/roles-org/roles", {"name": "Solution reader", "privileges": ["prvReadSolution"]}
        )
        assert created["privileges"] == {"prvReadSolution": "Global"}
        main_port = urllib.parse.urlsplit(server.base_url).port
    state_file = tmp_path / "state.json.orgs" / "roles-org.json"
    org_state = json.loads(state_file.read_text())
    reader = next(role_id for role_id, role in org_state["roles"].items() if role["name"] == "Solution reader")
    user = next(u for u in org_state["systemusers"].values() if u["applicationid"] == client["client_id"])
    user["emu_roles"] = [reader]
    state_file.write_text(json.dumps(org_state))
    with start_emulator(tmp_path, "--port", str(main_port)) as server:
        summary = server.admin("GET", f"/orgs/roles-org/users/{client['client_id']}/roles")
        assert summary["roles"] == ["Solution reader"]
        org = EmulatorOrg(
            server=server,
            name="roles-org",
            url=org_info["url"],
            api_url=org_info["api_url"],
            tenant_id=org_info["tenant_id"],
            authority=f"{server.idp_url}/{org_info['tenant_id']}",
            client_id=client["client_id"],
            client_secret=client["client_secret"],
        )
        assert org.get("solutions?$select=uniquename").status_code == 200
        assert_denied(org.get("publishers?$select=uniquename"), "prvReadPublisher")


def test_the_demo_has_an_identity_that_lacks_a_privilege(tmp_path: Path) -> None:
    """The demo's fabrikam-dev application user holds a custom role without prvReadPublisher, which
    "ExportSolution message privileges" (EXPORT_PRIVILEGES) lists, so its exports are refused naming it."""
    with start_emulator(tmp_path, "--seed", "demo") as server:
        credentials = json.loads((tmp_path / "demo-credentials.json").read_text())
        fabrikam = credentials["orgs"]["fabrikam-dev"]
        token = server.token(
            fabrikam["url"], fabrikam["client_id"], fabrikam["client_secret"], credentials["tenant_id"]
        )
        session = server.session()
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        refused = session.post(
            fabrikam["url"] + "/api/data/v9.2/ExportSolution",
            json={"SolutionName": "TravelRequestApprovalApp", "Managed": True},
            headers=headers,
        )
        assert_denied(refused, "prvReadPublisher")
        contoso = credentials["orgs"]["contoso-dev"]
        token = server.token(contoso["url"], contoso["client_id"], contoso["client_secret"], credentials["tenant_id"])
        exported = session.post(
            contoso["url"] + "/api/data/v9.2/ExportSolution",
            json={"SolutionName": "IncidentReporting", "Managed": True},
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )
        assert exported.status_code == 200
