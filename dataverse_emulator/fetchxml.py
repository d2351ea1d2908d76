"""FetchXML on the entity sets the emulator serves: ``GET <entity set>?fetchXml=<url-encoded xml>``.

As documented in "Use FetchXml with the Web API"
(https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/use-fetchxml-web-api):
the ``entity`` is the entity set's table; ``attribute`` / ``all-attributes`` choose the columns (the primary
key always comes back, and "data returned from FetchXML will not return properties with null values");
``order`` sorts; ``filter`` (``type`` and / or, nested) holds ``condition`` elements; ``top`` limits;
``count`` + ``page`` page the result; with ``Prefer: odata.include-annotations`` the response carries
``@Microsoft.Dynamics.CRM.morerecords`` and ``@Microsoft.Dynamics.CRM.fetchxmlpagingcookie`` (a ``<cookie
pagenumber=… pagingcookie=…/>`` whose ``pagingcookie`` is URL-encoded twice) while more rows follow, and a
``paging-cookie`` sent back on the next page continues after the last row of the previous one.
``returntotalrecordcount="true"`` adds ``@Microsoft.Dynamics.CRM.totalrecordcount``.

Condition operators (the FetchXML operator reference,
https://learn.microsoft.com/en-us/power-apps/developer/data-platform/fetchxml/reference/operators): eq, ne,
neq, gt, ge, lt, le, like, not-like, begins-with, not-begin-with, ends-with, not-end-with, in, not-in,
between, not-between, null, not-null, on, on-or-before, on-or-after, eq-userid, ne-userid. String comparisons
ignore case, as Dataverse's collation does. Not implemented (refused with a message that says so):
``link-entity``, aggregates, ``condition`` on a linked entity, other operators.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from xml.etree.ElementTree import Element

from defusedxml import ElementTree as SafeET

from . import odata, unconfirmed
from .entities import EntitySet, Field
from .errors import DataverseError

MAX_COUNT = 5000  # the "paging limits of 5000" of the same page

Record = dict[str, Any]

VALUELESS = {"null", "not-null", "eq-userid", "ne-userid"}
MULTI_VALUE = {"in", "not-in", "between", "not-between"}
OPERATORS = {
    "eq",
    "ne",
    "neq",
    "gt",
    "ge",
    "lt",
    "le",
    "like",
    "not-like",
    "begins-with",
    "not-begin-with",
    "ends-with",
    "not-end-with",
    "in",
    "not-in",
    "between",
    "not-between",
    "null",
    "not-null",
    "on",
    "on-or-before",
    "on-or-after",
    "eq-userid",
    "ne-userid",
}


def fetch_error(message: str) -> DataverseError:
    return DataverseError(400, unconfirmed.FETCHXML_ERROR_CODE, message)


@dataclass
class Condition:
    field: Field
    operator: str
    values: list[Any]


@dataclass
class FilterNode:
    kind: str  # "and" | "or"
    conditions: list[Condition] = field(default_factory=list)
    filters: list[FilterNode] = field(default_factory=list)


@dataclass
class FetchQuery:
    entity: EntitySet
    columns: list[Field] | None  # None: all-attributes
    filter: FilterNode | None
    orders: list[tuple[Field, bool]]
    top: int | None
    count: int | None
    page: int
    paging_cookie: str | None
    total_count: bool

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns] if self.columns is not None else self.entity.field_names


@dataclass
class FetchPage:
    rows: list[Record]
    more: bool
    cookie: str | None
    total: int


def attribute_field(entity: EntitySet, name: str) -> Field:
    """A FetchXML attribute name (a column's logical name; a lookup by its own name, ``publisherid``)."""
    found = entity.field(name) or entity.field(f"_{name}_value")
    if found is None:
        raise fetch_error(unconfirmed.FETCHXML_NO_ATTRIBUTE_MESSAGE.format(entity=entity.logical_name, name=name))
    return found


def parse(text: str, entity: EntitySet) -> FetchQuery:
    """Parse and check a FetchXML document against ``entity`` (the table of the entity set called)."""
    try:
        root = SafeET.fromstring(text)
    except Exception as exc:  # defusedxml raises ParseError or its own forbidden-construct errors
        raise fetch_error(unconfirmed.FETCHXML_INVALID_MESSAGE.format(detail=exc)) from exc
    if root.tag != "fetch":
        raise fetch_error(unconfirmed.FETCHXML_INVALID_MESSAGE.format(detail=f"the root element is <{root.tag}>"))
    if (root.get("aggregate") or "").lower() == "true":
        raise fetch_error(unconfirmed.FETCHXML_NOT_IMPLEMENTED_MESSAGE.format(what="aggregate queries"))
    entities_ = root.findall("entity")
    if len(entities_) != 1:
        raise fetch_error(unconfirmed.FETCHXML_INVALID_MESSAGE.format(detail="a fetch needs exactly one <entity>"))
    node = entities_[0]
    if (node.get("name") or "") != entity.logical_name:
        raise fetch_error(
            unconfirmed.FETCHXML_ENTITY_MISMATCH_MESSAGE.format(name=node.get("name"), entity_set=entity.name)
        )
    columns: list[Field] | None = []
    orders: list[tuple[Field, bool]] = []
    filters: list[FilterNode] = []
    for child in node:
        if child.tag == "attribute":
            if child.get("alias") or child.get("aggregate"):
                raise fetch_error(unconfirmed.FETCHXML_NOT_IMPLEMENTED_MESSAGE.format(what="aliased attributes"))
            column = attribute_field(entity, child.get("name") or "")
            if columns is not None and column not in columns:
                columns.append(column)
        elif child.tag == "all-attributes":
            columns = None
        elif child.tag == "order":
            if child.get("alias"):
                raise fetch_error(unconfirmed.FETCHXML_NOT_IMPLEMENTED_MESSAGE.format(what="ordering by an alias"))
            orders.append((attribute_field(entity, child.get("attribute") or ""), _true(child.get("descending"))))
        elif child.tag == "filter":
            filters.append(_filter(child, entity))
        elif child.tag == "link-entity":
            raise fetch_error(unconfirmed.FETCHXML_NOT_IMPLEMENTED_MESSAGE.format(what="<link-entity>"))
        else:
            raise fetch_error(unconfirmed.FETCHXML_INVALID_MESSAGE.format(detail=f"unexpected <{child.tag}>"))
    if columns == []:
        columns = [entity.field(entity.primary_key)]  # type: ignore[list-item]
    top = _int_attribute(root, "top")
    count = _int_attribute(root, "count")
    page = _int_attribute(root, "page")
    if top is not None and (count is not None or page is not None):
        raise fetch_error(unconfirmed.FETCHXML_TOP_WITH_PAGING_MESSAGE)
    if count is not None and not 1 <= count <= MAX_COUNT:
        raise fetch_error(unconfirmed.FETCHXML_INVALID_MESSAGE.format(detail=f"count must be 1 to {MAX_COUNT}"))
    root_filter = None
    if len(filters) == 1:
        root_filter = filters[0]
    elif filters:
        root_filter = FilterNode("and", filters=filters)
    return FetchQuery(
        entity=entity,
        columns=columns,
        filter=root_filter,
        orders=orders,
        top=top,
        count=count,
        page=page or 1,
        paging_cookie=root.get("paging-cookie") or None,
        total_count=_true(root.get("returntotalrecordcount")),
    )


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1")


def _int_attribute(element: Element, name: str) -> int | None:
    value = element.get(name)
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise fetch_error(
            unconfirmed.FETCHXML_INVALID_MESSAGE.format(detail=f"{name}='{value}' is not a number")
        ) from None
    if number < 1:
        raise fetch_error(unconfirmed.FETCHXML_INVALID_MESSAGE.format(detail=f"{name} must be at least 1"))
    return number


def _filter(element: Element, entity: EntitySet) -> FilterNode:
    kind = (element.get("type") or "and").lower()
    if kind not in ("and", "or"):
        raise fetch_error(unconfirmed.FETCHXML_INVALID_MESSAGE.format(detail=f"filter type '{kind}'"))
    node = FilterNode(kind)
    for child in element:
        if child.tag == "condition":
            node.conditions.append(_condition(child, entity))
        elif child.tag == "filter":
            node.filters.append(_filter(child, entity))
        elif child.tag == "link-entity":
            raise fetch_error(unconfirmed.FETCHXML_NOT_IMPLEMENTED_MESSAGE.format(what="<link-entity>"))
        else:
            raise fetch_error(
                unconfirmed.FETCHXML_INVALID_MESSAGE.format(detail=f"unexpected <{child.tag}> in <filter>")
            )
    return node


def _condition(element: Element, entity: EntitySet) -> Condition:
    if element.get("entityname"):
        raise fetch_error(unconfirmed.FETCHXML_NOT_IMPLEMENTED_MESSAGE.format(what="conditions on a linked entity"))
    column = attribute_field(entity, element.get("attribute") or "")
    operator = (element.get("operator") or "").lower()
    if operator not in OPERATORS:
        raise fetch_error(unconfirmed.FETCHXML_BAD_OPERATOR_MESSAGE.format(operator=operator))
    raw = [(child.text or "") for child in element if child.tag == "value"]
    if element.get("value") is not None:
        raw.insert(0, element.get("value") or "")
    if operator in VALUELESS:
        values: list[Any] = []
    elif operator in ("between", "not-between"):
        if len(raw) != 2:
            raise fetch_error(unconfirmed.FETCHXML_VALUES_MESSAGE.format(operator=operator, expected="two <value>s"))
        values = [_typed(column, value, operator) for value in raw]
    elif operator in MULTI_VALUE:
        if not raw:
            raise fetch_error(unconfirmed.FETCHXML_VALUES_MESSAGE.format(operator=operator, expected="<value>s"))
        values = [_typed(column, value, operator) for value in raw]
    else:
        if len(raw) != 1:
            raise fetch_error(unconfirmed.FETCHXML_VALUES_MESSAGE.format(operator=operator, expected="one value"))
        values = [_typed(column, raw[0], operator)]
    return Condition(column, operator, values)


def _typed(column: Field, text: str, operator: str) -> Any:
    """A condition value as the column's type (FetchXML values are text)."""
    value = text.strip()
    if operator in ("like", "not-like", "begins-with", "not-begin-with", "ends-with", "not-end-with"):
        return text
    try:
        if column.type in ("int", "picklist"):
            return int(value)
        if column.type == "double":
            return float(value)
        if column.type == "bool":
            if value.lower() not in ("0", "1", "true", "false"):
                raise ValueError(value)
            return value.lower() in ("1", "true")
        if column.type in ("guid", "lookup"):
            return value.strip("{}").lower()
        if column.type == "datetime":
            return odata._parse_datetime(value)
    except ValueError:
        raise fetch_error(
            unconfirmed.FETCHXML_BAD_VALUE_MESSAGE.format(value=text, name=column.name, type=column.type)
        ) from None
    return text


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------
def _value(record: Record, column: Field) -> Any:
    value = record.get(column.name)
    if column.type == "datetime" and isinstance(value, str):
        return odata._parse_datetime(value)
    if column.type in ("guid", "lookup") and isinstance(value, str):
        return value.lower()
    return value


def _key(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _like(value: str, pattern: str) -> bool:
    """SQL LIKE: % any run, _ one character, [abc] a class; case-insensitive."""
    regex = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "%":
            regex.append(".*")
        elif char == "_":
            regex.append(".")
        elif char == "[" and "]" in pattern[index + 1 :]:
            end = pattern.index("]", index + 1)
            regex.append("[" + re.escape(pattern[index + 1 : end]).replace("\\^", "^", 1) + "]")
            index = end
        else:
            regex.append(re.escape(char))
        index += 1
    return re.fullmatch("".join(regex), value, re.IGNORECASE | re.DOTALL) is not None


def _matches_condition(record: Record, condition: Condition, user_id: str) -> bool:
    op = condition.operator
    value = _value(record, condition.field)
    values = condition.values
    if op == "null":
        return value is None
    if op == "not-null":
        return value is not None
    if op in ("eq-userid", "ne-userid"):
        return (value == user_id.lower()) == (op == "eq-userid")
    if value is None:
        return False  # SQL semantics: a comparison with NULL is never true
    if op in ("like", "not-like", "begins-with", "not-begin-with", "ends-with", "not-end-with"):
        text, pattern = str(value), values[0]
        if op in ("like", "not-like"):
            hit = _like(text, pattern)
        elif op in ("begins-with", "not-begin-with"):
            hit = _like(text, pattern + "%")
        else:
            hit = _like(text, "%" + pattern)
        return hit if not op.startswith("not") else not hit
    if isinstance(value, datetime) and op in ("on", "on-or-before", "on-or-after"):
        day, wanted = value.date(), values[0].date()
        return {"on": day == wanted, "on-or-before": day <= wanted, "on-or-after": day >= wanted}[op]
    left = _key(value)
    rights = [_key(v) for v in values]
    try:
        if op == "eq":
            return left == rights[0]
        if op in ("ne", "neq"):
            return left != rights[0]
        if op == "gt":
            return left > rights[0]
        if op == "ge":
            return left >= rights[0]
        if op == "lt":
            return left < rights[0]
        if op == "le":
            return left <= rights[0]
        if op == "in":
            return left in rights
        if op == "not-in":
            return left not in rights
        if op == "between":
            return rights[0] <= left <= rights[1]
        if op == "not-between":
            return not rights[0] <= left <= rights[1]
    except TypeError:
        return False
    raise fetch_error(unconfirmed.FETCHXML_BAD_OPERATOR_MESSAGE.format(operator=op))


def _matches(record: Record, node: FilterNode, user_id: str) -> bool:
    results = [_matches_condition(record, c, user_id) for c in node.conditions]
    results += [_matches(record, f, user_id) for f in node.filters]
    if not results:
        return True
    return all(results) if node.kind == "and" else any(results)


def _sort(records: list[Record], query: FetchQuery) -> list[Record]:
    """The requested order, then the primary key (the paging cookie names the primary key's first/last)."""
    primary = query.entity.field(query.entity.primary_key)
    assert primary is not None
    orders = [*query.orders, (primary, False)]
    return odata.sort_records(records, [(column.name, descending) for column, descending in orders], query.entity)


_COOKIE_LAST = re.compile(r'<(?P<column>\w+) last="(?P<last>[^"]*)"')


def _cookie_start(records: list[Record], query: FetchQuery) -> int | None:
    """Where a page continues from the previous page's paging cookie: after the row the cookie names last.

    Only for the page right after the cookie's (nonconsecutive pages ignore the cookie, as the FetchXML
    paging documentation says); None when the cookie does not fit, and paging goes by page number."""
    cookie = query.paging_cookie
    if not cookie:
        return None
    page_match = re.search(r'<cookie page="(\d+)"', cookie)
    if page_match is None or int(page_match.group(1)) != query.page - 1:
        return None
    last_id = None
    for match in _COOKIE_LAST.finditer(cookie):
        if match.group("column") == query.entity.primary_key:
            last_id = match.group("last").strip("{}").lower()
    if not last_id:
        return None
    for index, record in enumerate(records):
        if str(record.get(query.entity.primary_key) or "").lower() == last_id:
            return index + 1
    return None


def make_cookie(rows: list[Record], query: FetchQuery) -> str:
    """``<cookie pagenumber="N+1" pagingcookie="…" istracking="False" />`` as the Web API page shows it: the
    inner ``<cookie page="N">`` names the first and last value of the order column and the primary key,
    and is URL-encoded twice."""
    primary = query.entity.primary_key
    parts = []
    for column, _descending in query.orders[:1]:
        first, last = rows[0].get(column.name), rows[-1].get(column.name)
        parts.append(f'<{column.name} last="{_cookie_value(last)}" first="{_cookie_value(first)}" />')
    first_id, last_id = str(rows[0][primary]).upper(), str(rows[-1][primary]).upper()
    parts.append(f'<{primary} last="{{{last_id}}}" first="{{{first_id}}}" />')
    inner = f'<cookie page="{query.page}">{"".join(parts)}</cookie>'
    encoded = _encode(_encode(inner))
    return f'<cookie pagenumber="{query.page + 1}" pagingcookie="{encoded}" istracking="False" />'


def _cookie_value(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def _encode(text: str) -> str:
    """Percent-encoding with lower-case hex, as the documented cookie shows (``%253ccookie%2520page…``)."""
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), urllib.parse.quote(text, safe=""))


def run(records: list[Record], query: FetchQuery, user_id: str = "") -> FetchPage:
    """Filter, sort and page ``records`` (the projection is the caller's)."""
    if query.filter is not None:
        records = [r for r in records if _matches(r, query.filter, user_id)]
    records = _sort(records, query)
    total = len(records)
    if query.top is not None:
        return FetchPage(records[: query.top], False, None, total)
    size = query.count or MAX_COUNT
    start = _cookie_start(records, query)
    if start is None:
        start = (query.page - 1) * size
    rows = records[start : start + size]
    more = start + size < total
    cookie = make_cookie(rows, query) if more and rows else None
    return FetchPage(rows, more, cookie, total)
