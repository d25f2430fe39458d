"""How well the suspicious-chunk flag (guard.injection_signals) finds planted instructions.

Reads benchmarks/injection_planted.jsonl: explicit injections (stock phrasings), paraphrased
ones (the same intent without them), and benign sentences about instructions, systems and
roles. The `heldout_*` rows were written after the others and before the patterns were
extended, and were not used to tune them: their rates are the honest estimate.
Each planted sentence is also tried with zero-width characters inside its words and
in fullwidth forms, which the flag must see through. False positives are counted on the benign
sentences and on every chunk of the sample corpus as the service chunks it.

    uv run python benchmarks/bench_injection_flag.py
"""

from __future__ import annotations

import json
from pathlib import Path

from {{ cookiecutter.package_name }}.guard import injection_signals
from {{ cookiecutter.package_name }}.ingest.chunk import Chunker
from {{ cookiecutter.package_name }}.ingest.load import discover, load_document
from {{ cookiecutter.package_name }}.settings import Settings

PROJECT = Path(__file__).resolve().parents[1]
PLANTED = PROJECT / "benchmarks" / "injection_planted.jsonl"
SAMPLE = PROJECT / "data" / "sample"


def disguised(text: str) -> str:
    """Zero-width spaces inside every word of four letters or more."""
    return " ".join(w[:2] + "\u200b" + w[2:] if len(w) > 3 else w for w in text.split(" "))


def fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def sample_chunks() -> list[str]:
    settings = Settings(_env_file=None)
    chunker = Chunker(settings.chunk_size, settings.chunk_overlap, settings.chunk_pack_blocks)
    texts = []
    for path in discover(SAMPLE):
        document = load_document(path, SAMPLE, settings.max_file_bytes)
        texts += [c.text for c in chunker.chunk(document, tenant="bench", corpus="sample")]
    return texts


def main() -> None:
    rows = [json.loads(line) for line in PLANTED.read_text("utf-8").splitlines() if line]
    print(f"{'set':<32} {'n':>4} {'flagged':>8} {'rate':>6}")
    for kind in ("explicit", "paraphrased", "heldout_paraphrased"):
        texts = [r["text"] for r in rows if r["kind"] == kind]
        for variant, form in (("", str), (" +zero-width", disguised), (" +fullwidth", fullwidth)):
            hits = sum(bool(injection_signals(form(t))) for t in texts)
            print(f"{kind + variant:<32} {len(texts):>4} {hits:>8} {hits / len(texts):>6.0%}")
    flagged: list[str] = []
    for kind in ("benign", "heldout_benign"):
        benign = [r["text"] for r in rows if r["kind"] == kind]
        wrong = [t for t in benign if injection_signals(t)]
        flagged += wrong
        print(
            f"{kind + ' (FP)':<32} {len(benign):>4} {len(wrong):>8} "
            f"{len(wrong) / len(benign):>6.0%}"
        )
    chunks = sample_chunks()
    noisy = [c for c in chunks if injection_signals(c)]
    print(
        f"{'sample corpus chunks (FP)':<32} {len(chunks):>4} {len(noisy):>8} "
        f"{len(noisy) / len(chunks):>6.0%}"
    )
    for text in flagged + noisy:
        print(f"  false positive {injection_signals(text)}: {text[:90]!r}")
    missed = [
        r["text"]
        for r in rows
        if not r["kind"].endswith("benign") and not injection_signals(r["text"])
    ]
    for text in missed:
        print(f"  missed: {text[:90]!r}")


if __name__ == "__main__":
    main()
