"""The config loader under mutated files (property tests) and YAML syntax errors explained for people.

Every file in configs/, mutated as an editor's slip or a damaged disk would — lines deleted or
doubled, indentation changed, tabs, random bytes, YAML's own syntax (anchors, tags, merge
keys, flow brackets) dropped in — gives a config or a ConfigError whose every problem names the
file and a line. Never a traceback. A syntax error says the line, and when indentation is the
likely cause, says so: a tab, a key less (or more) indented than its siblings, a list item
under the wrong parent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import load_config
from gateway.errors import ConfigError
from tests.helpers import examples

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
TEXTS = {path.name: path.read_bytes() for path in CONFIGS}

_TOKENS = [
    b"\t", b" ", b"  ", b"- ", b":", b": ", b"#", b"'", b'"', b"{", b"}", b"[", b"]", b",", b"&a ", b"*a", b"<<: *a",
    b"!!python/object:os.system ", b"!!binary ", b"!!int ", b"? ", b"|", b">", b"%YAML 1.1\n", b"---\n", b"...\n",
    b"${", b"${X}", b"$${", b"2024-13-45", b"0x", b"1e999", b".nan", b"~", b"\xff", b"\xc3", b"\x00", b"\r", b"\x85",
    b"\xef\xbb\xbf", b"[" * 300, b"{a: " * 200,
]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(TEXTS)))
    lines = TEXTS[name].split(b"\n")
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        index = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["delete", "double", "indent", "dedent", "tab", "token", "bytes", "cut"]))
        line = lines[index]
        if kind == "delete":
            del lines[index]
        elif kind == "double":
            lines.insert(index, line)
        elif kind == "indent":
            lines[index] = b" " * draw(st.integers(1, 3)) + line
        elif kind == "dedent":
            lines[index] = line[draw(st.integers(1, 3)) :] if line.startswith(b" ") else line
        elif kind == "tab":
            lines[index] = b"\t" + line.lstrip(b" ")
        elif kind == "token":
            at = draw(st.integers(0, len(line)))
            lines[index] = line[:at] + draw(st.sampled_from(_TOKENS)) + line[at:]
        elif kind == "bytes":
            at = draw(st.integers(0, len(line)))
            lines[index] = line[:at] + draw(st.binary(min_size=1, max_size=6)) + line[at:]
        else:
            lines[index] = line[: draw(st.integers(0, len(line)))]
    return name, b"\n".join(lines)


@settings(
    max_examples=examples(300, 2000),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=mutated())
def test_a_mutated_config_loads_or_every_problem_names_its_file_and_line(
    tmp_path_factory: pytest.TempPathFactory, case: tuple[str, bytes]
) -> None:
    name, data = case
    path = tmp_path_factory.mktemp("config") / name
    path.write_bytes(data)
    try:
        load_config(path)
    except ConfigError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.file == str(path), problem
            assert problem.line is not None and problem.line >= 1, problem
            assert str(problem).startswith(f"{path}:{problem.line}:"), problem


# --- YAML syntax errors explained: real mistakes ------------------------------------------------

GOOD_START = "gateway:\n  name: cell-1\nsinks:\n  - name: local\n    type: historian\n    path: ./h.db\n"
MQTT = (
    "connectors:\n"
    "  - name: energy\n"
    "    type: mqtt\n"
    "    broker: mqtt://localhost:1883\n"
    "    topics:\n"
    "      - filter: factory/+/energy/+\n"
    "        format: json\n"
)


@pytest.mark.parametrize(
    ("text", "line", "hint"),
    [
        # a tab where the editor should have put spaces
        (GOOD_START + MQTT.replace("    type: mqtt", "\ttype: mqtt"), 9, "indented with a tab"),
        # a key one space short of its siblings
        (GOOD_START.replace("    path: ./h.db", "   path: ./h.db"), 6, "indented by 3 spaces"),
        # a key one space too far
        (GOOD_START.replace("    path: ./h.db", "     path: ./h.db"), 6, "indented by 5 spaces"),
        # a list item that does not line up with the items above it
        (GOOD_START + MQTT + "     - filter: factory/+/temp/+\n", 14, "indented by 5 spaces"),
        # a key meant for the list item, written at the dashes' indentation
        (GOOD_START + MQTT + "      measurement: energy\n", 14, "line 12"),
        # a top-level section indented by one space
        (GOOD_START.replace("sinks:", " sinks:"), 3, "indented by 1 space"),
        # a list item without the space after its dash
        ("sinks:\n  -name: local\n   type: historian\n", 2, "needs a space after '-'"),
    ],
)
def test_a_yaml_syntax_error_names_its_line_and_says_when_indentation_is_the_cause(
    tmp_path: Path, text: str, line: int, hint: str
) -> None:
    path = tmp_path / "cell.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert "YAML syntax error" in problem.message
    assert hint in problem.message, problem
    assert problem.line is not None and abs(problem.line - line) <= 1, problem


def test_a_syntax_error_that_is_not_about_indentation_gets_no_indentation_hint(tmp_path: Path) -> None:
    path = tmp_path / "cell.yaml"
    path.write_text('gateway:\n  name: "cell-1\n  http: {listen: 127.0.0.1:8080}\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert "YAML syntax error" in problem.message and "indent" not in problem.message


@pytest.mark.parametrize(
    ("data", "line", "message"),
    [
        (b"gateway:\n  name: caf\xe9\n", 2, "not UTF-8"),  # saved as Latin-1
        (b"gateway:\n  name: a\x00b\n", 2, "special characters"),
        (b"gateway:\n  name: !!python/object:os.system x\n", 2, "cannot be read"),
        (b"gateway:\n  name: a\nx: 2024-13-45\n", 3, "cannot be read"),
        (b"a: &x [*x, *x]\n", 1, ""),
        (b"gateway: " + b"[" * 5000 + b"\n", 1, ""),
    ],
)
def test_unreadable_values_and_bytes_are_problems_at_their_line(
    tmp_path: Path, data: bytes, line: int, message: str
) -> None:
    path = tmp_path / "cell.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = caught.value.problems
    assert any(p.line == line and message in p.message for p in problems), problems
    assert all(p.line is not None for p in problems), problems
