"""The web app at /ui in a real headless Chromium (the system's, driven by Playwright), against
the app on 127.0.0.1 with every request to another host blocked and counted: ask and open a
citation, a refusal, a wrong key, an upload with per-file outcomes, a delete, the eval report,
feedback reaching the API. Screenshots of the main screens land in docs/screenshots/."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from playwright.sync_api import Browser, Page, Request, Route, expect, sync_playwright

from {{ cookiecutter.package_name }}.api.app import create_app
from {{ cookiecutter.package_name }}.container import Services, build_services
from {{ cookiecutter.package_name }}.embeddings import DenseEncoder, SparseEncoder
from {{ cookiecutter.package_name }}.evals.gate import GateOptions, run_gate
from {{ cookiecutter.package_name }}.keys import KeyStore

from .conftest import (
    PROJECT_ROOT,
    SAMPLE_CORPUS,
    api_key,
    auth,
    make_settings,
    serve_on_loopback,
)
from .fake_openai import FakeOpenAI, Reply
from .test_api_docs import chromium_or_skip

pytestmark = pytest.mark.slow

SCREENSHOTS = PROJECT_ROOT / "docs" / "screenshots"
QUESTION = "How many days of paid leave do employees get?"
OFF_TOPIC = "Who won the football world cup in 1998?"
LAPTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 60_000  # an upload job loads its own model copy; a loaded CI machine is slow


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = chromium_or_skip()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                # Belt and braces with the route guard below: no other host even resolves.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            ],
        )
        yield launched
        launched.close()


@dataclass
class Session:
    """One browser tab on the app, and what it tried to do."""

    page: Page
    base: str
    key: str
    requests: list[Request] = field(default_factory=list)  # those to the app
    blocked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def open(self, screen: str = "") -> None:
        self.page.goto(f"{self.base}/ui/{'#' + screen if screen else ''}")
        expect(self.page.locator("body[data-ready=true]")).to_be_attached()

    def enter_key(self, key: str | None = None) -> None:
        self.page.goto(f"{self.base}/ui/#key")
        expect(self.page.locator("body[data-ready=true]")).to_be_attached()
        self.page.get_by_role("textbox", name="API key").fill(key or self.key)
        self.page.get_by_role("button", name="Use this key").click()

    def ask(self, question: str) -> None:
        self.page.goto(f"{self.base}/ui/#ask")
        self.page.get_by_label("Question").fill(question)
        self.page.get_by_role("button", name="Ask", exact=True).click()

    def shot(self, name: str, full_page: bool = True) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


@dataclass
class Served:
    base: str
    services: Services
    spans: InMemorySpanExporter


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
    model_dir: Path,
    dense: DenseEncoder,
    sparse: SparseEncoder,
) -> Iterator[Served]:
    """One app over the sample corpus for the whole module (ingesting it is the slow part);
    each test makes its own keys and leaves the corpus as it found it."""
    root = tmp_path_factory.mktemp("ui")
    settings = make_settings(root, model_dir, eval_report_dir=root / "eval")
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    services = build_services(settings, tracer_provider=provider, dense=dense, sparse=sparse)
    services.ingestor.ingest(SAMPLE_CORPUS)
    try:
        with serve_on_loopback(create_app(services=services)) as base:
            yield Served(base, services, spans)
    finally:
        services.close()


@pytest.fixture
def services(served: Served) -> Services:
    """The module's services (conftest's per-test ones would need a second ingest)."""
    return served.services


def _session(browser: Browser, base: str, key: str, viewport: dict[str, int]) -> Session:
    context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    session = Session(page, base, key)
    ours = urlsplit(base).netloc

    def guard(route: Route) -> None:
        request = route.request
        if urlsplit(request.url).netloc == ours:
            session.requests.append(request)
            route.continue_()
        else:
            session.blocked.append(request.url)
            route.abort()

    context.route("**/*", guard)
    # Uncaught script errors and refused loads (CSP); a 4xx the app reports itself is fine.
    page.on("pageerror", lambda error: session.errors.append(str(error)))
    page.on(
        "console",
        lambda message: (
            session.errors.append(message.text)
            if message.type == "error" and "Failed to load resource" not in message.text
            else None
        ),
    )
    return session


@pytest.fixture
def tab(browser: Browser, served: Served) -> Iterator[Session]:
    session = _session(browser, served.base, api_key(served.services.settings), LAPTOP)
    yield session
    session.page.context.close()
    assert session.blocked == [], f"requests to other hosts: {session.blocked}"
    assert session.errors == [], session.errors
    # The key travels as a header, never in a URL.
    assert all(session.key not in request.url for request in session.requests)


def finished_traces(spans: InMemorySpanExporter, wanted: str) -> set[str]:
    """The trace ids of finished spans, once `wanted` is among them (the request's own span
    ends just after its last byte reached the browser) or after 10 s."""
    deadline = time.monotonic() + 10
    while True:
        traces = {format(span.context.trace_id, "032x") for span in spans.get_finished_spans()}
        if wanted in traces or time.monotonic() > deadline:
            return traces
        time.sleep(0.05)


def test_ask_streams_a_cited_answer_and_a_citation_opens_its_passage(
    tab: Session, served: Served
) -> None:
    tab.enter_key()
    expect(tab.page.locator("#key-status")).to_contain_text("Key accepted")
    tab.ask(QUESTION)
    answer = tab.page.locator("article.answer[data-state=answered]")
    expect(answer).to_be_visible()
    assert int(answer.get_attribute("data-tokens") or 0) >= 1  # it came as token events
    query = [r for r in tab.requests if r.url.endswith("/v1/query")]
    assert query
    assert query[0].headers["authorization"] == f"Bearer {tab.key}"
    assert tab.page.evaluate("sessionStorage.length") == 1
    # The trace id shown is the answer's own trace.
    trace_id = answer.locator(".trace-id").inner_text()
    assert trace_id in finished_traces(served.spans, trace_id)

    # What the API answers to the same question is what the page shows.
    expected = httpx.post(
        f"{tab.base}/v1/query", json={"question": QUESTION}, headers=auth(tab.key), timeout=60
    ).json()
    first = expected["citations"][0]
    expect(answer.locator(".answer-text")).to_have_text(expected["answer"])
    tab.shot("ask")

    cite = answer.locator("button.cite").first
    expect(cite).to_have_text(f"[{first['number']}]")
    cite.click()
    dialog = tab.page.locator("#citation-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#citation-where")).to_contain_text(first["source"])
    expect(dialog.locator("#citation-text")).to_have_text(first["text"])
    tab.shot("citation", full_page=False)
    tab.page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    # The keyboard alone: focus the citation, open it with Enter.
    cite.focus()
    tab.page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()


def test_a_refusal_says_the_documents_do_not_answer_not_that_something_failed(
    tab: Session,
) -> None:
    tab.enter_key()
    expect(tab.page.locator("#key-status")).to_contain_text("Key accepted")
    tab.ask(OFF_TOPIC)
    refused = tab.page.locator("article.answer[data-state=refused]")
    expect(refused).to_be_visible()
    expect(refused.locator(".notice.refusal")).to_contain_text(
        "The documents do not answer this question"
    )
    expect(refused.get_by_role("alert")).to_have_count(0)  # not shown as an error
    expect(refused.locator("button.cite")).to_have_count(0)
    expect(refused.locator(".trace-id")).to_have_count(1)
    tab.shot("refusal")


def test_a_wrong_key_is_refused_in_a_sentence_and_not_kept(
    tab: Session, services: Services
) -> None:
    tab.open()
    expect(tab.page.locator("body[data-screen=key]")).to_be_attached()  # no key: asked for one
    tab.ask(QUESTION)
    expect(tab.page.get_by_role("alert")).to_contain_text("No API key is set for this tab")

    tab.enter_key("rag_not-a-real-key")
    alert = tab.page.locator("#key-status [role=alert]")
    expect(alert).to_contain_text("The API key is not valid")
    expect(alert).to_contain_text("Enter a valid key on the Key screen.")
    expect(alert.locator(".trace-id")).to_have_count(1)
    assert tab.page.evaluate("sessionStorage.length") == 0
    expect(tab.page.locator("#key-state")).to_have_text("No key set")
    tab.shot("key-refused")

    # A key that worked and was revoked since: the next answer says so.
    tab.enter_key()
    expect(tab.page.locator("#key-status")).to_contain_text("Key accepted")
    store = KeyStore(services.settings.keys_path)
    store.revoke(tab.key.split("_")[1])  # rag_<id>_<secret>
    tab.ask(QUESTION)
    failed = tab.page.locator("article.answer[data-state=error]")
    expect(failed.get_by_role("alert")).to_contain_text("The API key is not valid")

    # A key without the ingest scope: the Documents screen says what it lacks.
    query_only = api_key(services.settings, scopes=("query",))
    tab.enter_key(query_only)
    expect(tab.page.locator("#key-status")).to_contain_text("lacks the ingest scope")
    tab.page.goto(f"{tab.base}/ui/#documents")
    expect(tab.page.locator("#documents-table [role=alert]")).to_contain_text(
        "This API key may not do that."
    )

    # 429 and a problem without a known status, as the app words them.
    words: list[str] = tab.page.evaluate(
        """async () => {
            const { sentence } = await import("/ui/api.js");
            return [
                sentence(429, { detail: "Rate limit reached." }, "7", true),
                sentence(409, { detail: "A job is writing; retry when it is done" }, null, true),
                sentence(502, null, null, true),
            ];
        }"""
    )
    assert words == [
        "Too many requests with this key: try again in 7 seconds.",
        "A job is writing; retry when it is done.",
        "The service failed (502); its log says why.",
    ]


def test_upload_shows_each_files_outcome_then_lists_and_deletes_the_document(
    tab: Session, tmp_path: Path, services: Services
) -> None:
    good = tmp_path / "canteen-hours.md"
    good.write_text(
        "# Canteen\n\nThe canteen on the ground floor serves lunch from 11:30 to 14:00.\n",
        "utf-8",
    )
    broken = tmp_path / "scanned-contract.pdf"
    broken.write_bytes(b"%PDF-1.7\nthis is not really a PDF\n")
    tab.enter_key()
    expect(tab.page.locator("#key-status")).to_contain_text("Key accepted")
    tab.page.goto(f"{tab.base}/ui/#documents")
    expect(tab.page.locator("#documents-table table")).to_be_visible()
    tab.page.get_by_label("Files to upload").set_input_files([str(good), str(broken)])
    tab.page.get_by_role("button", name="Upload", exact=True).click()

    job = tab.page.locator(".job[data-status=succeeded]")
    expect(job).to_be_visible(timeout=TIMEOUT_MS * 2)
    expect(job.locator("li[data-status=added]")).to_contain_text("canteen-hours.md")
    skipped = job.locator("li[data-status=skipped]")
    expect(skipped).to_contain_text("scanned-contract.pdf")
    assert len(skipped.locator(".reason").inner_text()) > 10  # the reason, in words
    expect(job.locator(".job-summary")).to_contain_text("2 of 2 files done, 1 skipped")
    row = tab.page.locator("#documents-table tr[data-source='canteen-hours.md']")
    expect(row).to_be_visible()
    tab.shot("documents")

    row.get_by_role("button", name="Delete canteen-hours.md").click()
    confirm = tab.page.locator("#confirm-dialog")
    expect(confirm).to_contain_text("Delete canteen-hours.md?")
    confirm.get_by_role("button", name="Cancel").click()
    expect(row).to_be_visible()
    row.get_by_role("button", name="Delete canteen-hours.md").click()
    confirm.get_by_role("button", name="Delete", exact=True).click()
    expect(tab.page.locator("#documents-status")).to_contain_text("Deleted canteen-hours.md")
    expect(row).to_have_count(0)
    sources = {d.source for d in services.store.documents(tenant="default")}
    assert "canteen-hours.md" not in sources


def test_eval_screen_says_how_to_make_a_report_then_shows_the_gates_report(
    tab: Session, services: Services, tmp_path: Path
) -> None:
    tab.enter_key()
    expect(tab.page.locator("#key-status")).to_contain_text("Key accepted")
    tab.page.goto(f"{tab.base}/ui/#eval")
    missing = tab.page.locator("#eval-body [data-missing=true]")
    expect(missing).to_contain_text("No eval report yet")
    expect(missing).to_contain_text("make eval")

    golden = tmp_path / "golden.jsonl"
    shipped = (PROJECT_ROOT / "evals" / "golden.jsonl").read_text("utf-8").splitlines()
    golden.write_text("\n".join(shipped[:4]) + "\n", "utf-8")
    settings = services.settings
    options = GateOptions(
        golden=golden,
        thresholds=PROJECT_ROOT / "evals" / "thresholds.toml",
        corpus=SAMPLE_CORPUS,
        report_dir=settings.eval_report_dir,
    )
    run_gate(services, options)  # GO or NO-GO, it writes the report
    tab.page.get_by_role("button", name="Reload").click()
    frame = tab.page.frame_locator("iframe.report")
    expect(frame.locator("h1")).to_contain_text("Go/no-go")
    expect(frame.locator("table").first).to_be_visible()
    tab.shot("eval")


def test_the_app_reads_on_a_phone(browser: Browser, served: Served) -> None:
    session = _session(browser, served.base, api_key(served.services.settings), PHONE)
    try:
        session.enter_key()
        expect(session.page.locator("#key-status")).to_contain_text("Key accepted")
        session.ask(QUESTION)
        expect(session.page.locator("article.answer[data-state=answered]")).to_be_visible()
        overflow: Any = session.page.evaluate(
            "document.documentElement.scrollWidth - window.innerWidth"
        )
        assert overflow <= 0, f"{overflow}px wider than the phone's screen"
        # Every control has a name a screen reader says.
        unnamed = session.page.evaluate(
            """[...document.querySelectorAll('input, textarea, button, select')]
                .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                             && !e.textContent.trim())
                .map(e => e.outerHTML)"""
        )
        assert unnamed == []
        session.shot("ask-phone")
        assert session.blocked == []
        assert session.errors == []
    finally:
        session.page.context.close()


LLM_KEY = "sk-ui-test-key"


def test_an_llm_answer_appears_word_by_word_and_stop_ends_the_generation(
    browser: Browser,
    tmp_path: Path,
    model_dir: Path,
    dense: DenseEncoder,
    sparse: SparseEncoder,
    corpus: Path,
) -> None:
    fake = FakeOpenAI(api_key=LLM_KEY).start()
    settings = make_settings(
        tmp_path,
        model_dir,
        answerer="llm",
        llm_provider="openai_like",
        llm_base_url=fake.base_url,
        llm_api_key=LLM_KEY,
        llm_model="fake-chat",
        llm_max_retries=0,
    )
    services = build_services(settings, dense=dense, sparse=sparse)
    try:
        services.ingestor.ingest(corpus)
        with serve_on_loopback(create_app(services=services)) as base:
            session = _session(browser, base, api_key(settings), LAPTOP)
            page = session.page
            session.enter_key()
            expect(page.locator("#key-status")).to_contain_text("Key accepted")

            fake.replies = [Reply(content="Passwords must be at least 14 characters long [1].")]
            fake.stream_chunk_delay_s = 0.3
            session.ask("How long must a password be?")
            # Read in one step in the page: part of the answer is there, the rest is coming.
            partial = page.wait_for_function(
                """() => {
                    const a = document.querySelector("article.answer");
                    return a && a.dataset.state === "streaming" && Number(a.dataset.tokens) >= 3
                        && a.querySelector(".answer-text").textContent;
                }"""
            ).json_value()
            done = page.locator("article.answer[data-state=answered]")
            expect(done).to_be_visible()
            whole = done.locator(".answer-text").inner_text()
            assert whole.startswith(partial.strip())
            assert 0 < len(partial) < len(whole)
            expect(done.locator("button.cite")).to_have_text("[1]")
            expect(done).to_contain_text("Model: fake-chat")

            fake.replies = [Reply(content=" ".join(["word"] * 300) + " [1].")]
            fake.stream_chunk_delay_s = 0.05
            session.ask("How often are passwords rotated?")
            streaming = page.locator("article.answer[data-state=streaming]")
            expect(streaming).to_have_attribute("data-tokens", re.compile(r"^\d\d$"))
            page.get_by_role("button", name="Stop").click()
            expect(page.locator("article.answer[data-state=stopped]")).to_contain_text("Stopped.")
            deadline = time.monotonic() + 10
            while fake.streams_aborted == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert fake.streams_aborted == 1  # the model's stream was closed, not read to the end
            assert fake.stream_chunks_sent < 250
            assert session.blocked == []
            assert session.errors == []
            page.context.close()
    finally:
        services.close()
        fake.stop()


def test_feedback_on_an_answer_reaches_the_api(tab: Session, served: Served) -> None:
    tab.enter_key()
    expect(tab.page.locator("#key-status")).to_contain_text("Key accepted")
    tab.ask(QUESTION)
    answer = tab.page.locator("article.answer[data-state=answered]")
    expect(answer).to_be_visible()
    trace_id = answer.locator(".trace-id").inner_text()
    form = answer.locator("form.feedback")
    send = form.get_by_role("button", name="Send feedback")
    expect(send).to_be_disabled()  # nothing to send before a rating
    form.get_by_role("button", name="No").click()
    expect(form.get_by_role("button", name="No")).to_have_attribute("aria-pressed", "true")
    expect(form.get_by_role("button", name="Yes")).to_have_attribute("aria-pressed", "false")
    comment = "It should say what part-time staff get."
    form.get_by_label("Comment (optional)").fill(comment)
    send.click()
    expect(form.locator(".notice.ok")).to_contain_text("your feedback was recorded")
    expect(form).to_have_attribute("data-sent", "down")
    tab.shot("feedback")

    sent = [r for r in tab.requests if r.url.endswith("/v1/feedback")]
    assert len(sent) == 1
    assert sent[0].method == "POST"
    assert sent[0].headers["authorization"] == f"Bearer {tab.key}"
    assert json.loads(sent[0].post_data or "") == {
        "trace_id": trace_id,
        "rating": "down",
        "comment": comment,
    }
    # And the service kept it, under the key's tenant and the answer's trace.
    (stored,) = served.services.feedback.of_tenant("default", trace_id)
    assert (stored.rating, stored.comment) == ("down", comment)
