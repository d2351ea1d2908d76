"""The OData query engine: $select, $filter, $orderby, $top, $count, $expand and server-driven paging.

Behaviour follows the Dataverse query docs (MicrosoftDocs/powerapps-docs
powerapps-docs/developer/data-platform/webapi/query/*.md, commit 1943c1cd):
- filter-rows.md: eq/ne/gt/ge/lt/le, and/or/not, parentheses, contains/startswith/endswith, lookup
  navigation (``primarycontactid/fullname``); "All filters using string values are case insensitive";
  quotes inside strings are doubled (``'O''Bryan'``).
- page-results.md: ``Prefer: odata.maxpagesize=N`` (at most 5,000; default 5,000), answered with
  ``Preference-Applied``; ``@odata.nextLink`` carries ``$skiptoken=<cookie pagenumber=…/>``; "$top is
  ignored" when combined with maxpagesize; ``$skip`` is not supported.
- count-rows.md: ``$count=true`` adds ``@odata.count`` (capped at 5,000) irrespective of page size.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import errors, unconfirmed
from .entities import EntitySet, Field
from .errors import DataverseError

MAX_PAGE_SIZE = 5000  # page-results.md: "You can't request a page size larger than 5,000."
MAX_COUNT = 5000  # count-rows.md: "up to 5,000"
SUPPORTED_OPTIONS = {"$select", "$filter", "$orderby", "$top", "$count", "$expand", "$skiptoken"}

Record = dict[str, Any]
Resolver = Callable[[str, Record], Record | None]  # (navigation property, record) -> related record


def odata_error(message: str, status: int = 400) -> DataverseError:
    return DataverseError(status, unconfirmed.ODATA_ERROR_CODE, message)


# --------------------------------------------------------------------------------------------------
# $filter: tokenizer, parser (to nested tuples) and evaluator
# --------------------------------------------------------------------------------------------------
_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b)
  | (?P<datetime>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)?(?![\w.]))
  | (?P<number>-?\d+(?:\.\d+)?(?![\w-]))
  | (?P<punct>[(),/])
  | (?P<ident>[A-Za-z_@$][\w.@$]*)
    """,
    re.VERBOSE,
)
COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le"}
STRING_FUNCTIONS = {"contains", "startswith", "endswith"}
VALUE_FUNCTIONS = {"tolower", "toupper", "trim"}


@dataclass(frozen=True)
class Token:
    kind: str
    value: str
    position: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN_RE.match(text, position)
        if not match:
            if text[position] == "'":
                raise odata_error(f"There is an unterminated literal at position {position} in '{text}'.")
            raise odata_error(f"Syntax error at position {position} in '{text}'.")
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, match.group(), position))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0

    def peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise odata_error(f"Syntax error at position {len(self.text)} in '{self.text}'.")
        self.index += 1
        return token

    def expect(self, value: str) -> None:
        token = self.take()
        if token.value != value:
            raise odata_error(f"Syntax error at position {token.position} in '{self.text}'.")

    def is_word(self, word: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "ident" and token.value == word

    def parse(self) -> tuple:
        node = self.or_expr()
        if self.peek() is not None:
            token = self.peek()
            assert token is not None
            raise odata_error(f"Syntax error at position {token.position} in '{self.text}'.")
        return node

    def or_expr(self) -> tuple:
        node = self.and_expr()
        while self.is_word("or"):
            self.take()
            node = ("or", node, self.and_expr())
        return node

    def and_expr(self) -> tuple:
        node = self.not_expr()
        while self.is_word("and"):
            self.take()
            node = ("and", node, self.not_expr())
        return node

    def not_expr(self) -> tuple:
        if self.is_word("not"):
            self.take()
            return ("not", self.not_expr())
        return self.comparison()

    def comparison(self) -> tuple:
        left = self.operand()
        token = self.peek()
        if token is not None and token.kind == "ident" and token.value in COMPARISONS:
            self.take()
            right = self.operand()
            return ("cmp", token.value, left, right)
        if left[0] in ("call",) and left[1] in STRING_FUNCTIONS:
            return left
        if left[0] == "group":
            return left[1]
        if left[0] == "lit" and isinstance(left[1], bool):
            return left
        if left[0] == "path":  # a boolean column on its own is a valid expression
            return ("cmp", "eq", left, ("lit", True, "bool"))
        raise odata_error(f"Syntax error in '{self.text}': expected a comparison.")

    def operand(self) -> tuple:
        token = self.take()
        if token.value == "(":
            inner = self.or_expr()
            self.expect(")")
            return ("group", inner)
        if token.kind == "string":
            return ("lit", token.value[1:-1].replace("''", "'"), "string")
        if token.kind == "guid":
            return ("lit", token.value.lower(), "guid")
        if token.kind == "datetime":
            return ("lit", _parse_datetime(token.value), "datetime")
        if token.kind == "number":
            value: float | int = float(token.value) if "." in token.value else int(token.value)
            return ("lit", value, "number")
        if token.kind == "ident":
            if token.value in ("true", "false"):
                return ("lit", token.value == "true", "bool")
            if token.value == "null":
                return ("lit", None, "null")
            nxt = self.peek()
            if nxt is not None and nxt.value == "(":
                return self.call(token)
            path = [token.value]
            while self.peek() is not None and self.peek().value == "/":  # type: ignore[union-attr]
                self.take()
                path.append(self.take().value)
            return ("path", tuple(path))
        raise odata_error(f"Syntax error at position {token.position} in '{self.text}'.")

    def call(self, name_token: Token) -> tuple:
        name = name_token.value
        if name not in STRING_FUNCTIONS and name not in VALUE_FUNCTIONS:
            raise odata_error(f"The function '{name}' is not supported by the emulator's $filter.")
        self.expect("(")
        args = [self.operand()]
        while self.peek() is not None and self.peek().value == ",":  # type: ignore[union-attr]
            self.take()
            args.append(self.operand())
        self.expect(")")
        return ("call", name, tuple(args))


def _parse_datetime(text: str) -> datetime:
    value = text.replace("Z", "+00:00")
    if "T" not in value:
        value += "T00:00:00+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def parse_filter(text: str) -> tuple:
    return _Parser(text).parse()


@dataclass
class Evaluator:
    """Evaluates a parsed $filter against records of one entity set."""

    entity: EntitySet
    resolve: Resolver
    entity_sets: dict[str, EntitySet]

    def check(self, node: tuple) -> None:
        """Reject unknown properties before touching any row (Dataverse answers 400 even for empty sets)."""
        kind = node[0]
        if kind in ("and", "or"):
            self.check(node[1])
            self.check(node[2])
        elif kind == "not":
            self.check(node[1])
        elif kind == "cmp":
            self.check(node[2])
            self.check(node[3])
            self._check_types(node)
        elif kind == "call":
            for arg in node[2]:
                self.check(arg)
        elif kind == "path":
            self._field_for(node[1])
        elif kind == "group":
            self.check(node[1])

    def _field_for(self, path: tuple[str, ...]) -> Field:
        entity = self.entity
        for navigation in path[:-1]:
            nav_field = entity.navigation(navigation)
            if nav_field is None or nav_field.target not in self.entity_sets:
                raise errors.property_not_found(navigation, entity.logical_name)
            entity = self.entity_sets[nav_field.target]
        found = entity.field(path[-1])
        if found is None:
            raise errors.property_not_found(path[-1], entity.logical_name)
        return found

    def _check_types(self, node: tuple) -> None:
        _, op, left, right = node
        for a, b in ((left, right), (right, left)):
            if a[0] == "path" and b[0] == "lit" and b[2] != "null":
                column = self._field_for(a[1])
                compatible = {
                    "string": {"string"},
                    "memo": {"string"},
                    "guid": {"guid", "string"},
                    "lookup": {"guid", "string"},
                    "bool": {"bool"},
                    "int": {"number"},
                    "double": {"number"},
                    "picklist": {"number"},
                    "datetime": {"datetime"},
                }.get(column.type, {"string", "number", "bool", "guid", "datetime"})
                if b[2] not in compatible:
                    raise odata_error(
                        "A binary operator with incompatible types was detected. Found operand types "
                        f"'{_edm(column.type)}' and '{_edm_literal(b[2])}' for operator kind '{op}'."
                    )

    def matches(self, node: tuple, record: Record) -> bool:
        return self._eval(node, record) is True

    def _eval(self, node: tuple, record: Record) -> Any:
        kind = node[0]
        if kind == "and":
            return self._eval(node[1], record) is True and self._eval(node[2], record) is True
        if kind == "or":
            return self._eval(node[1], record) is True or self._eval(node[2], record) is True
        if kind == "not":
            return self._eval(node[1], record) is not True
        if kind == "group":
            return self._eval(node[1], record)
        if kind == "cmp":
            return _compare(node[1], self._value(node[2], record), self._value(node[3], record))
        if kind == "call":
            name, args = node[1], node[2]
            values = [self._value(arg, record) for arg in args]
            if name in STRING_FUNCTIONS:
                haystack, needle = values[0], values[1]
                if haystack is None or needle is None:
                    return False
                haystack, needle = str(haystack).casefold(), str(needle).casefold()
                if name == "contains":
                    return needle in haystack
                if name == "startswith":
                    return haystack.startswith(needle)
                return haystack.endswith(needle)
            return self._value(node, record)
        if kind == "lit":
            return node[1]
        return self._value(node, record)

    def _value(self, node: tuple, record: Record) -> Any:
        kind = node[0]
        if kind == "lit":
            return node[1]
        if kind == "group":
            return self._eval(node[1], record)
        if kind == "call" and node[1] in VALUE_FUNCTIONS:
            inner = self._value(node[2][0], record)
            if inner is None:
                return None
            if node[1] == "tolower":
                return str(inner).lower()
            if node[1] == "toupper":
                return str(inner).upper()
            return str(inner).strip()
        if kind == "call":
            return self._eval(node, record)
        if kind == "path":
            current: Record | None = record
            path = node[1]
            for navigation in path[:-1]:
                if current is None:
                    return None
                current = self.resolve(navigation, current)
            if current is None:
                return None
            column = self._field_for(path)
            value = current.get(path[-1])
            if column.type == "datetime" and isinstance(value, str):
                return _parse_datetime(value)
            return value
        raise odata_error("Unsupported $filter expression.")


def _edm(kind: str) -> str:
    return {
        "string": "Edm.String",
        "memo": "Edm.String",
        "guid": "Edm.Guid",
        "lookup": "Edm.Guid",
        "bool": "Edm.Boolean",
        "int": "Edm.Int32",
        "picklist": "Edm.Int32",
        "double": "Edm.Double",
        "datetime": "Edm.DateTimeOffset",
    }.get(kind, "Edm.String")


def _edm_literal(kind: str) -> str:
    return {
        "string": "Edm.String",
        "guid": "Edm.Guid",
        "bool": "Edm.Boolean",
        "number": "Edm.Int32",
        "datetime": "Edm.DateTimeOffset",
    }.get(kind, "Edm.String")


def _normal(value: Any) -> Any:
    """Comparison key: strings case-insensitive (filter-rows.md), GUIDs lowercase, everything else as is."""
    if isinstance(value, str):
        return value.casefold()
    return value


def _compare(op: str, left: Any, right: Any) -> bool:
    if op == "eq":
        return _normal(left) == _normal(right)
    if op == "ne":
        return _normal(left) != _normal(right)
    if left is None or right is None:
        return False
    left, right = _normal(left), _normal(right)
    try:
        if op == "gt":
            return left > right
        if op == "ge":
            return left >= right
        if op == "lt":
            return left < right
        return left <= right
    except TypeError:
        return False


# --------------------------------------------------------------------------------------------------
# Query options
# --------------------------------------------------------------------------------------------------
@dataclass
class Expand:
    navigation: str
    select: list[str] | None = None


@dataclass
class Query:
    select: list[str] | None = None
    filter: tuple | None = None
    filter_text: str | None = None
    orderby: list[tuple[str, bool]] = field(default_factory=list)  # (column, descending)
    top: int | None = None
    count: bool = False
    expand: list[Expand] = field(default_factory=list)
    page: int = 1


def _split_top_level(text: str, separator: str) -> list[str]:
    parts, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == separator and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def check_options(options: dict[str, str], system: set[str] | frozenset[str], custom: tuple[str, ...] = ()) -> None:
    """Refuse every query option this resource does not apply, never ignore one.

    ``system``: the ``$`` options allowed here; ``custom``: the Dataverse options without ``$`` allowed here
    (``fetchXml``). Parameter aliases (``@p1``) are always allowed. Unknown ``$`` options get the OData error;
    ``?sql=`` gets the answer of an environment without the SQL preview; other unknown names are refused too
    unless ``unconfirmed.REFUSE_UNKNOWN_CUSTOM_QUERY_OPTIONS`` is off.
    """
    for name in options:
        if name.startswith("@") or name in custom:
            continue
        if name.startswith("$"):
            if name not in system:
                raise unsupported_option(name)
        elif name.lower() == "sql":
            raise odata_error(unconfirmed.SQL_QUERY_OPTION_MESSAGE, unconfirmed.UNSUPPORTED_QUERY_OPTION_STATUS)
        elif unconfirmed.REFUSE_UNKNOWN_CUSTOM_QUERY_OPTIONS:
            raise unsupported_option(name)


def unsupported_option(name: str) -> DataverseError:
    return odata_error(
        unconfirmed.UNSUPPORTED_QUERY_OPTION_MESSAGE.format(name=name), unconfirmed.UNSUPPORTED_QUERY_OPTION_STATUS
    )


def parse_query(options: dict[str, str], entity: EntitySet, entity_sets: dict[str, EntitySet]) -> Query:
    """Parse the system query options of a collection request; unknown properties are a 400.

    The caller has refused the options it does not apply (``check_options``); ``$``-options outside
    SUPPORTED_OPTIONS are refused here as well."""
    for name in options:
        if name.startswith("$") and name not in SUPPORTED_OPTIONS:
            raise unsupported_option(name)
    query = Query()
    if "$select" in options:
        query.select = _split_top_level(options["$select"], ",")
        for name in query.select:
            if entity.field(name) is None:
                raise errors.property_not_found(name, entity.logical_name)
    if options.get("$filter"):
        query.filter_text = options["$filter"]
        query.filter = parse_filter(options["$filter"])
    if options.get("$orderby"):
        for part in _split_top_level(options["$orderby"], ","):
            pieces = part.split()
            column = pieces[0]
            direction = pieces[1].lower() if len(pieces) > 1 else "asc"
            if entity.field(column) is None or direction not in ("asc", "desc") or len(pieces) > 2:
                raise errors.property_not_found(column, entity.logical_name)
            query.orderby.append((column, direction == "desc"))
    if "$top" in options:
        try:
            query.top = int(options["$top"])
        except ValueError as exc:
            raise odata_error(f"Invalid value '{options['$top']}' for $top query option found.") from exc
        if query.top < 0:
            raise odata_error(f"Invalid value '{options['$top']}' for $top query option found.")
    if "$count" in options:
        if options["$count"].lower() not in ("true", "false"):
            raise odata_error(f"'{options['$count']}' is not a valid count option.")
        query.count = options["$count"].lower() == "true"
    if options.get("$expand"):
        for part in _split_top_level(options["$expand"], ","):
            navigation, _, rest = part.partition("(")
            navigation = navigation.strip()
            nav_field = entity.navigation(navigation)
            if nav_field is None or nav_field.target not in entity_sets:
                raise errors.property_not_found(navigation, entity.logical_name)
            expand = Expand(navigation)
            if rest:
                for option in _split_top_level(rest.rstrip(")"), ";"):
                    key, _, value = option.partition("=")
                    if key.strip() != "$select":
                        raise odata_error(f"The query option '{key.strip()}' is not supported inside $expand.")
                    expand.select = [v.strip() for v in value.split(",") if v.strip()]
                    target = entity_sets[nav_field.target]
                    for name in expand.select:
                        if target.field(name) is None:
                            raise errors.property_not_found(name, target.logical_name)
            query.expand.append(expand)
    if options.get("$skiptoken"):
        query.page = parse_skiptoken(options["$skiptoken"])
    return query


_PAGENUMBER_RE = re.compile(r'pagenumber="(\d+)"')


def make_skiptoken(page: int, first_id: str, last_id: str, primary_key: str) -> str:
    """A skip token shaped like Dataverse's (page-results.md): a ``<cookie pagenumber=…>`` element."""
    bounds = f'last="{{{last_id.upper()}}}" first="{{{first_id.upper()}}}"'
    inner = f'<cookie page="{page - 1}"><{primary_key} {bounds} /></cookie>'
    return f'<cookie pagenumber="{page}" pagingcookie="{urllib.parse.quote(inner)}" istracking="False" />'


def parse_skiptoken(token: str) -> int:
    match = _PAGENUMBER_RE.search(token)
    if not match:
        raise odata_error("The $skiptoken value is not valid.")
    return max(1, int(match.group(1)))


def parse_prefer(headers: list[str]) -> dict[str, str]:
    """``Prefer`` values (several headers and/or comma lists) → {preference: value} (DOC-ERR "Prefer Headers")."""
    preferences: dict[str, str] = {}
    for header in headers:
        for part in _split_prefer(header):
            name, _, value = part.partition("=")
            preferences[name.strip().lower()] = value.strip()
    return preferences


def _split_prefer(header: str) -> list[str]:
    parts, current, quoted = [], [], False
    for char in header:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def sort_records(records: list[Record], orderby: list[tuple[str, bool]], entity: EntitySet) -> list[Record]:
    """Stable multi-key sort; NULLs sort first ascending (SQL Server order), strings case-insensitively."""
    result = list(records)
    for column, descending in reversed(orderby):
        kind = entity.field(column).type if entity.field(column) else "string"

        def key(record: Record, column: str = column, kind: str = kind) -> tuple:
            value = record.get(column)
            if value is None:
                return (0, "")
            if kind == "datetime" and isinstance(value, str):
                return (1, _parse_datetime(value))
            if isinstance(value, str):
                return (1, value.casefold())
            return (1, value)

        result.sort(key=key, reverse=descending)
    return result


@dataclass
class Page:
    rows: list[Record]
    count: int | None
    next_page: int | None
    page_size_applied: int | None


def run_query(
    records: list[Record],
    query: Query,
    entity: EntitySet,
    resolve: Resolver,
    entity_sets: dict[str, EntitySet],
    max_page_size: int | None,
) -> Page:
    """Filter, sort and page ``records`` (the projection is the caller's)."""
    if query.filter is not None:
        evaluator = Evaluator(entity, resolve, entity_sets)
        evaluator.check(query.filter)
        records = [r for r in records if evaluator.matches(query.filter, r)]
    if query.orderby:
        records = sort_records(records, query.orderby, entity)
    total = len(records)
    count = min(total, MAX_COUNT) if query.count else None
    if max_page_size is not None:
        size = max(1, min(max_page_size, MAX_PAGE_SIZE))  # page-results.md: $top is ignored with maxpagesize
    elif query.top is not None:
        return Page(records[: query.top], count, None, None)
    else:
        size = MAX_PAGE_SIZE
    start = (query.page - 1) * size
    rows = records[start : start + size]
    next_page = query.page + 1 if start + size < total else None
    return Page(rows, count, next_page, size if max_page_size is not None else None)
