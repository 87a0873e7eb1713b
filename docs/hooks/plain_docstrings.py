"""A griffe extension for the API pages (not part of the jaxbof package).

jaxbof's docstrings are plain text, read as Markdown. Plain text such as
config["experiment"]["kind"] or "[+ M if a bias is trained] [+ M for both layers]" reads as a
Markdown reference link `[text][id]`, which mkdocs-autorefs then reports as a missing
cross-reference (a warning, so an error under --strict). This escapes the opening bracket of
such pairs outside code spans and indented code blocks, so the text shows as written.
"""

import re

import griffe

_REF = re.compile(r"(?<!\\)\[([^\[\]`]*)\](\s?)\[")
_CODE = re.compile(r"(`+)(?:.+?)\1")


def _escape_line(line: str) -> str:
    out, pos = [], 0
    for m in _CODE.finditer(line):  # leave inline code as it is
        out.append(_REF.sub(r"\\[\1]\2[", line[pos : m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(_REF.sub(r"\\[\1]\2[", line[pos:]))
    return "".join(out)


def escape(text: str) -> str:
    lines, fenced = [], False
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        code = fenced or line.startswith("    ") or line.startswith("\t")
        lines.append(line if code else _escape_line(line))
    return "\n".join(lines)


class PlainDocstrings(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = escape(obj.docstring.value)
