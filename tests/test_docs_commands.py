"""Every command the README and the documentation pages print runs as printed: each ```bash
block of README.md and docs/*.md (snippets included, as the site includes them) is split into
commands, and each command is checked against the real thing. ``asgan-train``, ``asgan-probe``
and ``asgan-study`` lines are parsed by the CLIs' own argparse parsers (``build_parser``), so
an unknown verb, a missing required argument or a bad value fails, and every ``--option``
must be spelled exactly as the parser defines it (argparse would accept an abbreviation);
``bash``/``python`` lines must name a script or module that exists and options it defines.
A program this test does not know fails it, so a new kind of command is checked on purpose.
The README's other promises are checked here too: its length, the quick-start block first, no
links outside the repository, every link to a file that exists."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SNIPPET = re.compile(r'^--8<-- "([^"]+)"\s*$', re.M)
# programs run as printed outside this package: (what is checked) the first argument
EXTERNAL = {"pip": {"wheel", "install"}, "git": {"worktree"}, "pkill": {"-TERM"}}
SHELL_OPS = {"&&", "||", ";", "|", "&"}
REDIRECTS = {">", ">>", "<"}


def _text(page: Path) -> str:
    """The page as the site renders it: ``--8<-- "path"`` lines replaced by the file."""
    return SNIPPET.sub(lambda m: (ROOT / m.group(1)).read_text(), page.read_text())


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M)


def commands(block: str) -> list[list[str]]:
    """The commands of a bash block as argument lists: continuation lines joined, comments,
    redirections, a leading ``nohup`` and ``VAR=value`` assignments dropped, ``&&``/``;``/
    ``|``/``&`` splitting one line into several commands."""
    tokens: list[str] = []
    for line in block.replace("\\\n", " ").splitlines():
        line = re.sub(r"\s\d>&\d", " ", line)  # 2>&1: a stream joined, nothing to check
        line = re.sub(r"\s\d>", " >", line)  # 2> FILE: a redirection like > FILE
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens += [*lexer, "\n"]
    out, cur, skip = [], [], False
    for tok in tokens:
        if skip:
            skip = False
            continue
        if tok == "\n" or tok in SHELL_OPS:
            out.append(cur)
            cur = []
        elif tok in REDIRECTS:
            skip = True
        elif not cur and (tok == "nohup" or re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", tok)):
            continue
        else:
            cur.append(tok)
    out.append(cur)
    return [c for c in out if c]


def _parser(prog: str) -> argparse.ArgumentParser:
    if prog == "asgan-train":
        from trainers.cli import build_parser
    elif prog == "asgan-probe":
        from probes.cli import build_parser
    else:
        from probes.study.cli import build_parser
    return build_parser()


def _leaf(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    """The (sub)parser that owns the options of ``argv``: the verb's, where there are verbs."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            verb = next(a for a in argv if not a.startswith("-"))
            return _leaf(action.choices[verb], argv[argv.index(verb) + 1:])
    return parser


def check_cli(prog: str, argv: list[str]) -> None:
    parser = _parser(prog)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(argv)
        except SystemExit as e:
            if e.code != 0 or "--help" not in argv:
                raise AssertionError(f"{prog} {' '.join(argv)}: {err.getvalue().strip()}") \
                    from None
    known = {s for a in _leaf(parser, argv)._actions for s in a.option_strings}
    for arg in argv:
        if arg.startswith("--"):
            assert arg.split("=")[0] in known, f"{prog}: option {arg} is not spelled as defined"
    if prog == "asgan-train" and "--resume" not in argv and "--help" not in argv:
        from trainers.cli import UserError, config_fields, make_config  # UserError: as asgan-train

        args = parser.parse_args(argv)  # the config resolved as a run would (values checked)
        try:
            make_config(args.preset, {k: v for k in config_fields()
                                      if (v := getattr(args, k)) is not None})
        except UserError as e:
            raise AssertionError(f"asgan-train {' '.join(argv)}: {e}") from None


def _source_options(files: list[Path], argv: list[str], what: str) -> None:
    src = "".join(f.read_text() for f in files)
    for arg in argv:
        if arg.startswith("--"):
            assert f'"{arg.split("=")[0]}"' in src, f"{what}: option {arg} is not defined there"


def check(cmd: list[str]) -> None:
    """Check one command (see the module docstring); raises AssertionError naming it."""
    prog, *argv = cmd
    name = Path(prog).name
    if name in ("asgan-train", "asgan-probe", "asgan-study"):
        return check_cli(name, argv)
    if name in ("python", "python3"):
        if argv[0] == "-m":
            module, rest = argv[1], argv[2:]
            if module in ("trainers", "probes"):
                return check_cli({"trainers": "asgan-train"}.get(module, "asgan-probe"), rest)
            assert importlib.util.find_spec(module) is not None, f"no module {module}"
            if module == "pytest":
                assert "-n" not in rest or importlib.util.find_spec("xdist"), "-n needs xdist"
                return None
            path = ROOT / Path(*module.split("."))
            files = [path.with_suffix(".py")] + sorted(path.parent.glob("_common.py"))
            return _source_options(files, rest, module)
        script = ROOT / argv[0]
        assert script.is_file(), f"no script {argv[0]}"
        return _source_options([script], argv[1:], argv[0])
    if name == "bash":
        assert (ROOT / argv[0]).is_file(), f"no script {argv[0]}"
        return None
    if name == "cd":
        assert len(argv) == 1, f"cd {' '.join(argv)}: one folder"
        return None
    if name in EXTERNAL:
        assert argv[0] in EXTERNAL[name], f"{name} {argv[0]}: not a use this test knows"
        return None
    raise AssertionError(f"unknown program {prog!r}: teach tests/test_docs_commands.py to "
                         "check it")


def all_commands() -> list[tuple[str, list[str]]]:
    return [(page.relative_to(ROOT).as_posix(), cmd)
            for page in PAGES for block in bash_blocks(_text(page)) for cmd in commands(block)]


def test_the_splitter_finds_each_command():
    block = ("asgan-train --a 1 \\\n    --b 2   # a comment\nX=1 nohup asgan-study run p >> "
             "log 2>&1 &\nbash s.sh && python -m m --q\n")
    assert commands(block) == [["asgan-train", "--a", "1", "--b", "2"],
                               ["asgan-study", "run", "p"], ["bash", "s.sh"],
                               ["python", "-m", "m", "--q"]]


def test_a_wrong_command_fails_the_check():
    for bad in (["asgan-probe", "atack", "x.safetensors"],  # no such verb
                ["asgan-probe", "attack", "x.safetensors", "--epsilon", "0"],
                ["asgan-probe", "attack", "x.safetensors", "--meth", "fgsm"],  # abbreviation
                ["asgan-study", "report", "studies/example.toml"],  # --out is required
                ["asgan-train", "--steps", "many"],
                ["python", "-m", "bench.asgan_overhead", "--fast"],
                ["bash", "scripts/nothing.sh"], ["make", "docs"], ["git", "push"],
                ["cd", "a", "b"]):
        with pytest.raises(AssertionError):
            check(bad)


def test_the_pages_have_commands_to_check():
    found = all_commands()
    pages = {p for p, _ in found}
    assert {"README.md", "docs/attacks.md", "docs/study.md", "docs/benchmarks.md"} <= pages
    progs = {Path(c[0]).name for _, c in found}
    assert {"asgan-train", "asgan-probe", "asgan-study", "bash", "python"} <= progs
    readme_verbs = {c[1] for p, c in found if p == "README.md" and c[0] == "asgan-probe"}
    assert readme_verbs == {"attack", "gradients", "saliency", "coverage", "quality",
                            "evolution", "fidelity", "info", "report"}


@pytest.mark.parametrize("page,cmd", all_commands(),
                         ids=[f"{p}:{' '.join(c)[:60]}" for p, c in all_commands()])
def test_every_printed_command_parses(page, cmd):
    check(cmd)


def test_the_readme_is_short_and_starts_with_the_quick_start():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 170
    assert bash_blocks(text)[0] == ("bash scripts/quickstart.sh\n"
                                    ".venv/bin/python -m pytest -n 2 -q\n")
    assert "../" not in text, "the README links outside the repository"
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        assert (ROOT / target).is_file(), f"README links to a missing file: {target}"


def test_the_readme_info_and_dry_run_commands_run(tmp_path, monkeypatch, capsys):
    """The cheap README commands run for real: ``info`` on a shipped checkpoint, and the
    training command with ``--dry-run`` added (the config it would train, nothing written)."""
    from probes.cli import main as probe
    from trainers.cli import main as train

    found = [c for p, c in all_commands() if p == "README.md"]
    (info,) = [c for c in found if c[:2] == ["asgan-probe", "info"]]
    monkeypatch.chdir(ROOT)
    assert probe(info[1:]) == 0
    assert "dcgan" in capsys.readouterr().out
    fresh = [c for c in found if c[0] == "asgan-train" and "--resume" not in c][0]
    out = tmp_path / "a1"
    argv = [a if a != "runs/a1" else str(out) for a in fresh[1:]] + ["--dry-run"]
    assert train(argv) == 0
    assert '"trainer": "asgan"' in capsys.readouterr().out and not out.exists()


def test_no_page_points_outside_the_repository():
    for page in PAGES:
        assert "../shared" not in page.read_text() and "SPEC.md" not in page.read_text(), page
