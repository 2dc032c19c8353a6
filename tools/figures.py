"""Keep the figures the prose states equal to the figures a recorded cpu run computed (issue 28).

Every number a lesson's markdown promises ("in the cpu profile expect about 0.89") is written between two
HTML comments that name the recorded figure it comes from::

    In the cpu profile expect about <!--fig:head_test_accuracy:.2f-->0.89<!--/fig--> on test.

HTML comments are invisible in Jupyter, on GitHub and in a Sphinx/MyST site, so readers see "about 0.89";
this tool sees which figure it is and how it is written. The figures come from ONE recorded cpu run committed
beside the lessons, ``lessons/figures.cpu.json`` (``{"notebooks": {"lessons/05_fine_tuning": {name: value}}}``):

    python tools/figures.py record RUNS/cpu            # read RUNS/cpu/report.json of `tlcourse run lessons
                                                       #   --profile cpu --out RUNS/cpu`; update the json
    python tools/figures.py                            # rewrite every marker's text from the json
    python tools/figures.py --check                    # exit 1 and list each marker whose text disagrees
    python tools/figures.py --hand-typed               # list run figures typed outside markers (a guide)

Marker syntax: ``<!--fig:REF[:FORMAT]-->TEXT<!--/fig-->``.

- ``REF`` is a recorded name (of the same notebook; for ``solutions/`` and ``exercises/``, their lesson's), or
  ``NOTEBOOK@NAME`` with a key of the json (``lessons/07_domain_shift@source_accuracy``), or two references
  ``LOW,HIGH`` for an interval. ``NAME#band`` is the band ``record.expect`` checked the figure against in
  that run's profile (an interval), ``NAME#low`` and ``NAME#high`` its ends: "the cell asserts
  ``<!--fig:head_test_accuracy#band:.2f-->0.75 to 0.97<!--/fig-->``". A name must not contain ``:``, ``,``,
  ``@``, ``#`` or ``-->``.
- ``FORMAT`` is a Python format spec (``.2f``, ``+.3f``, ``.0%``, ``,.0f``), optionally after a scale:
  ``pts`` multiplies by 100 (percentage points: ``pts+.1f`` writes 0.042 as ``+4.2``), ``min`` divides seconds
  by 60. An interval's format may end with ``;to`` (``+1.2 to +7.4``, the default), ``;brackets``
  (``[+1.2, +7.4]``) or ``;dash`` (``+1.2–7.4``). Without a format, numbers are written with 4 significant
  digits and strings as they are.
- A marker may not start a line (nor a list item or quote): CommonMark would read the whole line as raw HTML.
  Put at least one word before it.

The tool refuses a marker whose name the json does not hold, an unclosed or nested marker and an unknown
format (exit 2). It rewrites only the text between the comments, so a notebook keeps its cells, ids and
outputs. ``exercises/`` is rewritten like ``solutions/``, so ``tools/make_exercises.py --check`` stays green.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # this checkout's tlcourse, even when another copy is installed

from tlcourse.record import read_bands  # noqa: E402

FIGURES_FILE = REPO_ROOT / "lessons" / "figures.cpu.json"
NOTEBOOK_FOLDERS = ("lessons", "solutions", "exercises")
OPEN = re.compile(r"<!--fig:(?P<body>.*?)-->")
CLOSE = "<!--/fig-->"
SCALES = {"pts": 100.0, "min": 1 / 60}
STYLES = {"to": "{} to {}", "brackets": "[{}, {}]", "dash": "{}–{}"}
_LINE_START = re.compile(r"^\s{0,3}(?:(?:[-*+]|\d+[.)])\s+|>\s*)*$")


class FigureError(Exception):
    """A marker the tool cannot use: unknown name, bad syntax or format (exit status 2)."""


@dataclass(frozen=True)
class Marker:
    """One ``<!--fig:...-->TEXT<!--/fig-->`` span in a markdown cell."""

    cell: int
    start: int
    """Offset of the opening comment in the cell's source."""
    end: int
    """Offset just after the closing comment."""
    text_start: int
    text_end: int
    refs: tuple[str, ...]
    fmt: str
    text: str


# ------------------------------------------------------------------------------------------ parsing


def notebook_key(path: str | Path) -> str:
    """The json key of a notebook: its folder and stem, e.g. ``lessons/05_fine_tuning``."""
    path = Path(path)
    return f"{path.parent.name}/{path.stem}"


def parse_markers(source: str, cell: int = 0) -> list[Marker]:
    """Every marker of one markdown cell's source, in order; :class:`FigureError` for bad syntax."""
    markers: list[Marker] = []
    position = 0
    while True:
        found = OPEN.search(source, position)
        if found is None:
            stray = source.find(CLOSE, position)
            if stray >= 0:
                raise FigureError(f"cell {cell}: a closing {CLOSE} without its opening marker")
            return markers
        stray = source.find(CLOSE, position, found.start())
        if stray >= 0:
            raise FigureError(f"cell {cell}: a closing {CLOSE} without its opening marker")
        close = source.find(CLOSE, found.end())
        if close < 0:
            raise FigureError(f"cell {cell}: <!--fig:{found['body']}--> is never closed with {CLOSE}")
        inner = source[found.end() : close]
        if "<!--fig:" in inner:
            raise FigureError(f"cell {cell}: markers cannot be nested (inside <!--fig:{found['body']}-->)")
        if "\n" in inner:
            raise FigureError(
                f"cell {cell}: <!--fig:{found['body']}-->'s text spans lines: keep it on one line"
            )
        line_start = source.rfind("\n", 0, found.start()) + 1
        if _LINE_START.match(source[line_start : found.start()]):
            raise FigureError(
                f"cell {cell}: <!--fig:{found['body']}--> starts a line; CommonMark would read that line as raw "
                "HTML. Put a word before it."
            )
        refs, fmt = _split_body(found["body"], cell)
        markers.append(Marker(cell, found.start(), close + len(CLOSE), found.end(), close, refs, fmt, inner))
        position = close + len(CLOSE)


def _split_body(body: str, cell: int) -> tuple[tuple[str, ...], str]:
    ref, _, fmt = body.partition(":")
    refs = tuple(part.strip() for part in ref.split(","))
    if not all(refs) or len(refs) > 2:
        raise FigureError(f"cell {cell}: <!--fig:{body}--> needs one name or two (LOW,HIGH)")
    _check_format(fmt, len(refs), cell, body)
    return refs, fmt.strip()


def _check_format(fmt: str, count: int, cell: int, body: str) -> None:
    spec, _, style = fmt.partition(";")
    if style and (count != 2 or style not in STYLES):
        raise FigureError(
            f"cell {cell}: <!--fig:{body}-->: ';{style}' is only for an interval (LOW,HIGH), one of {sorted(STYLES)}"
        )
    try:
        format_value(0.5, spec)
    except ValueError as error:
        raise FigureError(f"cell {cell}: <!--fig:{body}-->: bad format {spec!r} ({error})") from None


# ------------------------------------------------------------------------------------------ formatting


def format_value(value: Any, fmt: str = "") -> str:
    """A recorded value written with a marker's format (see the module docstring)."""
    spec, _, style = fmt.partition(";")
    if isinstance(value, (list, tuple)):
        low, high = (format_value(v, spec) for v in value)
        return STYLES[style or "to"].format(low, high)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    scale = next((name for name in SCALES if spec.startswith(name)), "")
    number = value * SCALES[scale] if scale else value
    spec = spec[len(scale) :]
    if not spec:
        return f"{number:.4g}" if isinstance(number, float) else str(number)
    if isinstance(number, int) and spec[-1:] in "eEfFgG%":
        number = float(number)
    return format(number, spec)


# ------------------------------------------------------------------------------------------ figures json


def lookup(figures: Mapping[str, Mapping[str, Any]], key: str, ref: str) -> Any:
    """The recorded value ``ref`` means in notebook ``key``; :class:`FigureError` when it is not recorded."""
    if "@" in ref:
        notebook, _, name = ref.partition("@")
        candidates = [notebook.strip()]
    else:
        folder, _, stem = key.partition("/")
        name = ref
        candidates = [key] + [f"{other}/{stem}" for other in ("solutions", "lessons") if other != folder]
    name, _, part = name.strip().partition("#")
    if part and part not in ("band", "low", "high"):
        raise FigureError(f"{key}: '{ref}': after '#' write band, low or high")
    for candidate in candidates:
        table = figures.get(f"{candidate}#bands" if part else candidate, {})
        if name in table:
            value = table[name]
            if part:
                return value if part == "band" else value[0 if part == "low" else 1]
            if isinstance(value, float) and math.isnan(value):
                break
            return value
    raise FigureError(
        f"{key}: '{ref}' is not recorded (looked in {', '.join(candidates)}); record it in its cell"
    )


def expected_text(marker: Marker, figures: Mapping[str, Mapping[str, Any]], key: str) -> str:
    """What a marker's text must read, from the figures json."""
    values = [lookup(figures, key, ref) for ref in marker.refs]
    return format_value(values if len(values) == 2 else values[0], marker.fmt)


def load_figures(path: Path = FIGURES_FILE) -> dict[str, dict[str, Any]]:
    """``{notebook key: {name: value}}`` from the committed json, plus ``{key + "#bands": {name: [low, high]}}``
    for the bands its ``record.expect`` calls checked (empty when the file does not exist)."""
    if not path.exists():
        return {}
    payload = json.loads(path.read_text(encoding="utf-8"))
    figures = dict(payload.get("notebooks", {}))
    figures.update({f"{key}#bands": dict(bands) for key, bands in payload.get("bands", {}).items()})
    return figures


def record_run(run_dir: Path, out: Path = FIGURES_FILE, *, profile: str = "cpu") -> dict[str, Any]:
    """Merge the figures of a ``tlcourse run`` (its ``report.json``) into ``out``; return what was written.

    Refuses (:class:`FigureError`) a run with a failed notebook or one run in another profile; notebooks not
    in the run keep their entries.
    """
    report_path = Path(run_dir) / "report.json"
    if not report_path.exists():
        raise FigureError(
            f"{report_path} does not exist: give the --out folder of `tlcourse run ... --profile {profile}`"
        )
    report = json.loads(report_path.read_text(encoding="utf-8"))
    failed = [
        item["path"] for item in report["notebooks"] if item["status"] not in ("ok", "skipped (unchanged)")
    ]
    if failed:
        raise FigureError(f"the run has failed notebooks ({', '.join(failed)}): fix them and run again")
    other = [
        item["path"]
        for item in report["notebooks"]
        if str((item.get("parameters") or {}).get("PROFILE", profile)) != profile
    ]
    if other:
        raise FigureError(f"not a {profile} run: {', '.join(other)} ran with another PROFILE")
    current = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    notebooks = dict(current.get("notebooks", {}))
    bands = dict(current.get("bands", {}))
    runs = dict(current.get("runs", {}))
    for item in report["notebooks"]:
        key = notebook_key(item["path"])
        notebooks[key] = dict(sorted((item.get("metrics") or {}).items()))
        executed = Path(str(item.get("output") or ""))
        if not executed.is_absolute():  # the runner writes it relative to its --out folder
            executed = Path(run_dir) / executed
        if not executed.is_file():  # a path from another machine: the run keeps notebooks by folder
            executed = Path(run_dir) / Path(item["path"]).parent.name / Path(item["path"]).name
        found = read_bands(executed) if executed.is_file() else {}
        bands[key] = dict(sorted(found.items()))
        runs[key] = {"seconds": round(float(item.get("seconds") or 0.0), 1), "peak_mib": item.get("peak_mib")}
    payload = {
        "profile": profile,
        "about": "figures of one recorded run; tools/figures.py writes them into the prose",
        "notebooks": dict(sorted(notebooks.items())),
        "bands": {key: value for key, value in sorted(bands.items()) if value},
        "runs": dict(sorted(runs.items())),
    }
    out.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return payload


# ------------------------------------------------------------------------------------------ check and rewrite


@dataclass(frozen=True)
class Mismatch:
    """A marker whose text differs from the record."""

    path: str
    cell: int
    refs: tuple[str, ...]
    found: str
    expected: str

    def __str__(self) -> str:
        return (
            f"{self.path} cell {self.cell}: {','.join(self.refs)} reads {self.found!r}, the record gives "
            f"{self.expected!r}"
        )


def sync_notebook(path: Path, figures: Mapping[str, Mapping[str, Any]], *, write: bool) -> list[Mismatch]:
    """Compare (and with ``write``, rewrite) every marker of one notebook; return the mismatches found."""
    notebook = nbformat.read(path, as_version=4)
    key = notebook_key(path)
    mismatches: list[Mismatch] = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "markdown":
            continue
        try:
            markers = parse_markers(cell.source, index)
        except FigureError as error:
            raise FigureError(f"{path}: {error}") from None
        source = cell.source
        for marker in reversed(markers):
            want = expected_text(marker, figures, key)
            if want != marker.text:
                mismatches.append(Mismatch(str(path), index, marker.refs, marker.text, want))
                source = source[: marker.text_start] + want + source[marker.text_end :]
        cell.source = source
    if write and mismatches:
        nbformat.write(notebook, path)
    return sorted(mismatches, key=lambda m: m.cell)


def notebooks_under(root: Path = REPO_ROOT, folders: Iterable[str] = NOTEBOOK_FOLDERS) -> list[Path]:
    """Every committed notebook of the folders that hold prose, sorted."""
    return sorted(path for folder in folders for path in (root / folder).glob("*.ipynb"))


# ------------------------------------------------------------------------------------------ hand-typed figures

_RUN_TALK = re.compile(
    r"\b(expect(?:s|ed)?|measured|in the (?:cpu|gpu|smoke) profile|we got|this run|the run|(?:a|one|each) run|"
    r"reach(?:es|ed)?|scor(?:es|ed)|gave|gives|came out|ends? (?:at|near)|stays? (?:at|near)|drops? (?:to|by)|"
    r"climbs? to|falls? to|took|peak(?:ed|s)?)\b",
    re.IGNORECASE,
)
_NOT_A_RESULT = re.compile(
    r"\b(asserts?|tolerance|chance(?: level)?(?: of)?|at most|derivative|multiplied by)\b[^;()]*$",
    re.IGNORECASE,
)
_NUMBER = re.compile(
    r"(?<![\w.])(?:[+\-−±]\s?)?\d*\.\d+(?:\s?%)?(?!\w|\.\d)"  # 0.89, +0.14, .5, 13.3%
    r"|(?<![\w.])[+\-−]?\d+(?:\.\d+)?\s?%"  # 12%
    r"|(?<![\w.,])\d+(?:\.\d+)?\s?(?:s|ms|min|MiB|GiB|MB|GB|times)\b(?![\w-])"  # 58 s, 1,691 MiB, 13 times
)
_SETTING_WORDS = re.compile(
    r"\b(alpha|rate|lr|learning|momentum|dropout|severity|severities|factor|zoom|rotation|threshold|version|"
    r"tensorflow|keras|python|tf|numpy|weight decay|epsilon|temperature|gamma|quality|scale|probability|"
    r"width|ratio of|Adam|SGD|p)(?:\s*(?:is|was|of|at|to|about|=|:))*\s*$",
    re.IGNORECASE,
)
_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)
_LINK = re.compile(r"\]\([^)]*\)|<https?://[^>]*>|https?://\S+")
_MARKED = re.compile(r"<!--fig:.*?-->.*?<!--/fig-->", re.DOTALL)
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z(*_\[])")
_PARAGRAPH = re.compile(r"\n\s*\n|\n\s*(?:[-*+]|\d+\.)\s")


def _not_a_result(sentence: str, match: re.Match[str]) -> bool:
    """A setting, an asserted bound, a chance level or a big round count rather than a run's result."""
    before = sentence[max(0, match.start() - 30) : match.start()]
    after = sentence[match.end() : match.end() + 12]
    return bool(
        _SETTING_WORDS.search(before)
        or _NOT_A_RESULT.search(before)
        or re.search(r"\d[eE]$|\bv$", before)
        or re.match(r"\s*(million|billion|thousand|confidence|bootstrap|interval|percentile)\b", after)
    )


@dataclass(frozen=True)
class HandTyped:
    """A decimal figure in markdown, outside any marker, in a sentence that talks about a run."""

    cell: int
    figure: str
    sentence: str

    def __str__(self) -> str:
        return f"cell {self.cell}: {self.figure!r} in: {self.sentence}"


def find_hand_typed_figures(notebook: Any) -> list[HandTyped]:
    """Decimal figures (0.89, +4.2, 12%, ±0.03) typed by hand in a notebook's markdown about a run (issue 28).

    A figure counts when it stands outside every ``<!--fig:...-->`` marker, outside code and links, in a
    sentence that talks about a run ("expect", "measured", "in the cpu profile", "we got", "reaches",
    "about", ...), and is not a setting (a number right after alpha, rate, momentum, severity, dropout, a
    version, ...). Integers without a percent sign are never flagged (image sizes, epochs, counts). A guide,
    not a proof: the lessons helper drives the list to zero by marking real figures.
    """
    if isinstance(notebook, (str, Path)):
        notebook = nbformat.read(notebook, as_version=4)
    found: list[HandTyped] = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "markdown":
            continue
        text = _MARKED.sub(" ", cell.source)
        text = _COMMENT.sub(" ", _LINK.sub(" ", _CODE.sub(" ", text)))
        for paragraph in _PARAGRAPH.split(text):
            sentences = [" ".join(part.split()) for part in _SENTENCE.split(paragraph)]
            talks = [bool(_RUN_TALK.search(sentence)) for sentence in sentences]
            for number, sentence in enumerate(sentences):
                about_run = talks[number] or (number > 0 and talks[number - 1])
                for match in _NUMBER.finditer(sentence):
                    figure = match.group().strip()
                    signed = figure[:1] in "+-−±"
                    if not (about_run or (signed and any(talks))) or _not_a_result(sentence, match):
                        continue
                    found.append(HandTyped(index, figure, sentence))
    return found


# ------------------------------------------------------------------------------------------ command line


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["record"]:
        parser = argparse.ArgumentParser(
            prog="figures.py record", description="merge a run's figures into the json"
        )
        parser.add_argument("run_dir", type=Path)
        parser.add_argument("--figures", type=Path, default=FIGURES_FILE)
        parser.add_argument("--profile", default="cpu")
        args = parser.parse_args(argv[1:])
        try:
            payload = record_run(args.run_dir, args.figures, profile=args.profile)
        except FigureError as error:
            print(f"figures.py: {error}", file=sys.stderr)
            return 2
        print(
            f"{args.figures}: {sum(len(v) for v in payload['notebooks'].values())} figures of {len(payload['notebooks'])} notebooks"
        )
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "notebooks", nargs="*", type=Path, help="default: every notebook of lessons/, solutions/, exercises/"
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a marker disagrees")
    parser.add_argument("--hand-typed", action="store_true", help="list figures typed outside markers")
    parser.add_argument("--figures", type=Path, default=FIGURES_FILE)
    args = parser.parse_args(argv)
    paths = args.notebooks or notebooks_under()
    if args.hand_typed:
        for path in paths:
            for item in find_hand_typed_figures(path):
                print(f"{path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path} {item}")
        return 0
    figures = load_figures(args.figures)
    mismatches: list[Mismatch] = []
    try:
        for path in paths:
            mismatches += sync_notebook(path, figures, write=not args.check)
    except FigureError as error:
        print(f"figures.py: {error}", file=sys.stderr)
        return 2
    for mismatch in mismatches:
        print(str(mismatch) if args.check else f"rewrote {mismatch}")
    if args.check and mismatches:
        print(
            f"{len(mismatches)} figure(s) in the prose disagree with {args.figures.name}: run tools/figures.py"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
