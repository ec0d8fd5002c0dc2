"""YAML with positions: documents as plain Python data plus ``path -> file:line:col``.

Rule files are read through this so that every problem can name where it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from kaudit.errors import Location

Path_ = tuple[str | int, ...]


@dataclass
class Positions:
    """Where each value of a document is (1-based line and column)."""

    source: str
    marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    duplicates: list[tuple[Path_, tuple[int, int]]] = field(default_factory=list)

    def at(self, path: Path_) -> Location:
        """The location of ``path`` or of its nearest parent that has one."""
        p = tuple(path)
        while p and p not in self.marks:
            p = p[:-1]
        line, col = self.marks.get(p, (1, 1))
        return Location(self.source, line, col)

    def sub(self, prefix: Path_) -> Positions:
        """Positions of the subtree at ``prefix`` (paths made relative)."""
        n = len(prefix)
        out = Positions(self.source)
        out.marks = {k[n:]: v for k, v in self.marks.items() if k[:n] == tuple(prefix)}
        return out


def load_yaml(text: str, source: str) -> tuple[object, Positions]:
    """Parse one YAML document; raises ``yaml.MarkedYAMLError`` on syntax errors."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    pos = Positions(source)
    if node is None:
        return None, pos
    return _convert(node, (), pos), pos


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _convert(node: yaml.Node, path: Path_, pos: Positions) -> object:
    pos.marks[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        out: dict[object, object] = {}
        for k_node, v_node in node.value:
            key = k_node.value if isinstance(k_node, yaml.ScalarNode) else repr(k_node.value)
            if key in out:
                pos.duplicates.append(((*path, str(key)), _mark(k_node)))
            out[key] = _convert(v_node, (*path, str(key)), pos)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(v, (*path, i), pos) for i, v in enumerate(node.value)]
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()
