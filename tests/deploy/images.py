"""Reading the deployment's files as Docker, Compose and make read them, for the tests beside this one.

There is no Docker daemon here: the image's steps are checked by running them outside Docker, each on
exactly the files its build stage copies in.
"""

from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
ENV_EXAMPLE = ROOT / "deploy" / "node.env.example"


@dataclass
class Instruction:
    keyword: str
    arguments: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def arguments(self, keyword: str) -> list[str]:
        return [instruction.arguments for instruction in self.instructions if instruction.keyword == keyword]

    def env(self) -> dict[str, str]:
        """ENV key=value pairs (the only form the Dockerfile uses)."""
        values: dict[str, str] = {}
        for arguments in self.arguments("ENV"):
            for pair in shlex.split(arguments):
                name, separator, value = pair.partition("=")
                assert separator, f"ENV {arguments!r}: expected key=value pairs"
                values[name] = value
        return values

    def copies(self) -> list[tuple[str, str]]:
        """(source, destination) of each COPY from the build context (not --from another stage)."""
        pairs = []
        for arguments in self.arguments("COPY"):
            words = shlex.split(arguments)
            if any(word.startswith("--from=") for word in words):
                continue
            words = [word for word in words if not word.startswith("--")]
            *sources, destination = words
            pairs.extend((source, destination) for source in sources)
        return pairs


def instructions(text: str) -> list[Instruction]:
    """A Dockerfile's instructions, continuation lines joined, comments dropped."""
    result: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = pending + stripped
        pending = ""
        keyword, _, arguments = whole.partition(" ")
        result.append(Instruction(keyword.upper(), " ".join(arguments.split())))
    assert not pending, "the Dockerfile ends inside a continued line"
    return result


def stages(text: str | None = None) -> list[Stage]:
    result: list[Stage] = []
    for instruction in instructions(DOCKERFILE.read_text() if text is None else text):
        if instruction.keyword == "FROM":
            words = instruction.arguments.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            result.append(Stage(base=words[0], name=name))
        else:
            assert result, f"{instruction.keyword} before the first FROM"
            result[-1].instructions.append(instruction)
    return result


def stage(name: str) -> Stage:
    (found,) = [each for each in stages() if each.name == name]
    return found


def final_stage() -> Stage:
    return stages()[-1]


def copy_stage_context(build_stage: Stage, destination: Path) -> None:
    """Lay out in `destination` (its WORKDIR) the files `build_stage` copies from the build context,
    as COPY does: a directory's contents into the target, a file into a target ending in /."""
    for source, target in build_stage.copies():
        origin = ROOT / source
        assert origin.exists(), f"the Dockerfile copies {source}, which is not in the repository"
        place = destination / target
        if origin.is_dir():
            # What .dockerignore leaves out of the context.
            ignored = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
            shutil.copytree(origin, place, ignore=ignored, dirs_exist_ok=True)
        else:
            if target.endswith("/") or target in {".", "./"}:
                place = place / origin.name
            place.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, place)


def makefile_recipes() -> dict[str, list[str]]:
    """Each Makefile target's recipe lines (continuations joined), by the target as written."""
    recipes: dict[str, list[str]] = {}
    current: str | None = None
    pending = ""
    for line in (ROOT / "Makefile").read_text().splitlines():
        if line.startswith("\t") and current is not None:
            text = line.strip()
            if text.endswith("\\"):
                pending += text[:-1] + " "
                continue
            recipes[current].append(" ".join((pending + text).split()))
            pending = ""
            continue
        match = re.match(r"^([^\s#:=][^:=]*):(?!=)", line)
        if match:
            current = match.group(1).strip()
            recipes.setdefault(current, [])
        elif line.strip() and not line.startswith("#"):
            current = None
    return recipes


def compose() -> dict[str, Any]:
    """compose.yaml as Compose reads it (YAML merge keys resolved)."""
    return yaml.safe_load(COMPOSE.read_text())


def env_example() -> dict[str, str]:
    """The assignments deploy/node.env.example makes (an env file: NAME=value, `#` comments)."""
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, separator, value = line.partition("=")
            assert separator, f"deploy/node.env.example: {line!r} is not NAME=value"
            values[name.strip()] = value
    return values


def env_example_mentions() -> set[str]:
    """Every variable the example sets or, commented, says where else it is set."""
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE))
