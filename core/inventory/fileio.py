"""Reading and writing inventory files (YAML and CSV) with line numbers kept for every row."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from core.errors import ValidationFailed
from core.inventory.schema import SECTIONS, Row, SnmpSpec, SshSpec

CSV_TYPES = {csv_type: section for section, (csv_type, _model) in SECTIONS.items()}
NESTED = {"snmp": set(SnmpSpec.model_fields), "ssh": set(SshSpec.model_fields)}
LIST_FIELDS = {"uplink_interfaces", "snmp_contexts"}


@dataclass
class RawRow:
    section: str
    line: int
    data: dict[str, Any]


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line each mapping starts on."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping: dict[str, Any] = dict(loader.construct_mapping(node, deep=True))  # type: ignore[arg-type]
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _strip_lines(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_lines(v) for k, v in value.items() if k != "__line__"}
    if isinstance(value, list):
        return [_strip_lines(v) for v in value]
    return value


def read_yaml(text: str, name: str = "<yaml>") -> list[RawRow]:
    try:
        doc = yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        raise ValidationFailed(f"{name}: not valid YAML: {exc}") from None
    if doc is None:
        return []
    if not isinstance(doc, dict):
        raise ValidationFailed(f"{name}: expected a mapping of sections, got {type(doc).__name__}")
    problems: list[str] = []
    rows: list[RawRow] = []
    for section, items in doc.items():
        if section == "__line__":
            continue
        if section not in SECTIONS:
            problems.append(f"{name}: unknown section {section!r} (known: {', '.join(SECTIONS)})")
            continue
        if not isinstance(items, list):
            problems.append(f"{name}: section {section!r} must be a list")
            continue
        for item in items:
            if not isinstance(item, dict):
                problems.append(f"{name}: section {section!r}: every entry must be a mapping")
                continue
            rows.append(RawRow(section, int(item.get("__line__", 0)), _strip_lines(item)))
    if problems:
        raise ValidationFailed(f"{name}: {len(problems)} problem(s)", problems)
    return rows


def _unflatten(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key == "type" or value is None or value == "":
            continue
        val: Any = [v for v in value.split(";") if v] if key in LIST_FIELDS else value
        prefix, _, sub = key.partition("_")
        if sub in NESTED.get(prefix, ()):
            out.setdefault(prefix, {})[sub] = val
        else:
            out[key] = val
    return out


def read_csv(text: str, name: str = "<csv>") -> list[RawRow]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "type" not in reader.fieldnames:
        raise ValidationFailed(f"{name}: the first row must be a header with a 'type' column")
    rows: list[RawRow] = []
    problems: list[str] = []
    for record in reader:
        line = reader.line_num
        kind = (record.get("type") or "").strip()
        if kind not in CSV_TYPES:
            problems.append(f"{name}:{line}: unknown type {kind!r}")
            continue
        rows.append(RawRow(CSV_TYPES[kind], line, _unflatten(record)))
    if problems:
        raise ValidationFailed(f"{name}: {len(problems)} problem(s)", problems)
    return rows


def read_file(path: Path) -> list[RawRow]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ValidationFailed(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise ValidationFailed(f"{path}: not UTF-8 text ({exc.reason})") from None
    if path.suffix.lower() == ".csv":
        return read_csv(text, str(path))
    if path.suffix.lower() in (".yaml", ".yml"):
        return read_yaml(text, str(path))
    raise ValidationFailed(f"{path}: unknown format; use .yaml, .yml or .csv")


def _format_error(err: Any) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def parse_rows(raw: list[RawRow], name: str) -> tuple[list[Row], list[str]]:
    """Turn raw rows into row models; every field error becomes one line with its location."""
    rows: list[Row] = []
    problems: list[str] = []
    for item in raw:
        model = SECTIONS[item.section][1]
        try:
            row = model.model_validate(item.data)
        except ValidationError as exc:
            for err in exc.errors():
                problems.append(
                    f"{name}:{item.line}: {SECTIONS[item.section][0]}: {_format_error(err)}"
                )
            continue
        row.line = item.line
        rows.append(row)
    return rows, problems


def dump_yaml(doc: dict[str, list[dict[str, Any]]]) -> str:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=120)


def dump_csv(doc: dict[str, list[dict[str, Any]]]) -> str:
    columns: list[str] = ["type"]
    flat_rows: list[dict[str, Any]] = []
    for section, items in doc.items():
        for item in items:
            flat: dict[str, Any] = {"type": SECTIONS[section][0]}
            for key, value in item.items():
                if key in NESTED and isinstance(value, dict):
                    for sub, subval in value.items():
                        flat[f"{key}_{sub}"] = subval
                else:
                    flat[key] = value
            for key, value in list(flat.items()):
                if isinstance(value, list):
                    flat[key] = ";".join(str(v) for v in value)
                elif isinstance(value, bool):
                    flat[key] = "true" if value else "false"
                elif value is None:
                    flat[key] = ""
                if key not in columns:
                    columns.append(key)
            flat_rows.append(flat)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat_rows)
    return out.getvalue()
