"""A lint report as text (one `path:line:col CODE message` per line), JSON, or SARIF 2.1.0 for
code-scanning tools."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version

from hasten.lint.registry import REGISTRY
from hasten.lint.run import Finding, Report

FORMATS = ("text", "json", "sarif")
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def text(report: Report) -> str:
    return "".join(f"{line}\n" for line in [*report.failures, *report.findings, *report.notes])


def _finding(f: Finding) -> dict:
    return {"path": f.path, "line": f.line, "column": f.column, "code": f.code,
            "name": f.rule.name, "message": f.message, "fixable": f.fixable,
            "train": f.rule.train, "infer": f.rule.infer}


def as_json(report: Report) -> str:
    return json.dumps({
        "findings": [_finding(f) for f in report.findings],
        "errors": [{"path": e.path, "line": e.line, "column": e.column, "message": e.message}
                   for e in report.failures],
        "notes": [{"path": n.path, "message": n.message} for n in report.notes],
    }, indent=2) + "\n"


def _location(path: str, line: int, column: int) -> dict:
    return {"physicalLocation": {"artifactLocation": {"uri": path},
                                 "region": {"startLine": line, "startColumn": column}}}


def sarif(report: Report) -> str:
    try:
        tool_version = version("hasten")
    except PackageNotFoundError:
        tool_version = "0"
    codes = sorted(REGISTRY)
    rules = [{"id": r.code, "name": r.name, "shortDescription": {"text": r.what},
              "fullDescription": {"text": r.why},
              "help": {"text": f"{r.fix} Measured by: {r.measured_by()}."}}
             for r in (REGISTRY[c] for c in codes)]
    results = [{"ruleId": f.code, "ruleIndex": codes.index(f.code), "level": "warning",
                "message": {"text": f.message},
                "locations": [_location(f.path, f.line, f.column)]} for f in report.findings]
    notes = [{"level": "error", "message": {"text": f"cannot parse: {e.message}"},
              "locations": [_location(e.path, e.line, e.column)]} for e in report.failures]
    notes += [{"level": "warning", "message": {"text": n.message},
               "locations": [{"physicalLocation": {"artifactLocation": {"uri": n.path}}}]}
              for n in report.notes]
    run = {"tool": {"driver": {"name": "hasten lint", "version": tool_version, "rules": rules}},
           "results": results,
           "invocations": [{"executionSuccessful": not report.failures,
                            "toolExecutionNotifications": notes}]}
    return json.dumps({"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]},
                      indent=2) + "\n"


RENDER = {"text": text, "json": as_json, "sarif": sarif}
