#!/usr/bin/env python3
"""Render an Envoy config template: scripts/render.py TEMPLATE OUTPUT NAME=VALUE...

Replaces every ${NAME} in TEMPLATE and fails on a placeholder with no value, as the test
harness does (tests/src/template.rs). Unused NAME=VALUE pairs are fine.
"""
import sys


def render(text: str, values: dict) -> str:
    out, rest = [], text
    while (start := rest.find("${")) >= 0:
        end = rest.find("}", start + 2)
        if end < 0:
            raise SystemExit("render.py: `${` with no closing `}`")
        name = rest[start + 2 : end]
        if name not in values:
            raise SystemExit(f"render.py: no value for placeholder ${{{name}}}")
        out += [rest[:start], values[name]]
        rest = rest[end + 1 :]
    out.append(rest)
    return "".join(out)


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    template, output, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
    values = dict(pair.split("=", 1) for pair in pairs)
    with open(template, encoding="utf-8") as f:
        rendered = render(f.read(), values)
    with open(output, "w", encoding="utf-8") as f:
        f.write(rendered)


if __name__ == "__main__":
    main()
