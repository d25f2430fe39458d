"""Prompt templates are package files with a version; the version goes on every answer."""

from __future__ import annotations

import string
import tomllib
from dataclasses import dataclass
from importlib import resources

from ..errors import ConfigurationError


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: str
    refusal: str
    system_template: str
    user_template: str

    def system(self) -> str:
        return string.Template(self.system_template).substitute(refusal=self.refusal)

    def user(self, context: str, question: str) -> str:
        # substitute() once: `$` inside the documents or the question is left as it is.
        return string.Template(self.user_template).substitute(
            context=context, question=question, refusal=self.refusal
        )


def available_prompts() -> list[str]:
    folder = resources.files(__package__).joinpath("prompts")
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


def load_prompt(name: str) -> PromptTemplate:
    resource = resources.files(__package__).joinpath("prompts", f"{name}.toml")
    if not resource.is_file():
        known = ", ".join(available_prompts())
        raise ConfigurationError(f"No prompt named {name!r} (RAG_LLM_PROMPT); available: {known}.")
    try:
        data = tomllib.loads(resource.read_text("utf-8"))
        prompt = PromptTemplate(
            name=name,
            version=str(data["version"]),
            refusal=str(data["refusal"]),
            system_template=str(data["system"]),
            user_template=str(data["user"]),
        )
        prompt.system()
        prompt.user("", "")
    except (tomllib.TOMLDecodeError, KeyError, ValueError) as exc:
        raise ConfigurationError(
            f"Prompt file {name}.toml is invalid ({exc}); it needs version, refusal, system and "
            "user, with only $context, $question and $refusal as placeholders."
        ) from None
    return prompt
