"""An answerer that asks an LLM, then checks that the answer cites only what it was given.

Flow: numbered context within a token budget -> exact-match cache -> the primary model, with
retries on 429/5xx and the fallback model on error or timeout -> citation check -> usage and
cost. A refusing decision from the ask use case, or no context at all, is answered with the
prompt's refusal and no model call. Everything lands on one `chat {model}` span (retries and
fallbacks as events) and a child `citation check` span. Streaming yields tokens as they
arrive; retries and fallback are possible only until the first token has been sent.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import closing
from dataclasses import dataclass, replace

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from ..domain import Answer, Hit, Usage
from ..errors import LLMUnavailableError
from ..refusal import RefusalDecision
from ..telemetry import RagMetrics, SpanContent
from .base import AnswerEvent, Final, Token
from .cache import AnswerCache, cache_key
from .grounding import Context, approx_tokens, build_context, check_citations
from .prompt import PromptTemplate
from .providers import ChatProvider, ChatRequest, Completion, LLMError
from .refusal_text import is_refusal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LLMOptions:
    model: str
    fallback_model: str | None
    max_output_tokens: int
    temperature: float | None
    timeout_s: float
    max_retries: int
    retry_backoff_s: float
    context_tokens: int
    refuse_ungrounded: bool
    prices: dict[str, tuple[float, float]]
    # A refusing decision with a P(unanswerable) below this still calls the model, which
    # reads the context and answers or refuses (the refusal model's borderline cases); at
    # or above it (or from the hand rules, which have no probability): refused, no call.
    refuse_without_call_from: float = 0.0


class LLMAnswerer:
    def __init__(
        self,
        provider: ChatProvider,
        prompt: PromptTemplate,
        options: LLMOptions,
        tracer: Tracer,
        cache: AnswerCache,
        *,
        metrics: RagMetrics | None = None,
        content: SpanContent | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._provider = provider
        self._prompt = prompt
        self._options = options
        self._tracer = tracer
        self._cache = cache
        self._metrics = metrics or RagMetrics.noop()
        self._content = content or SpanContent()
        self._sleep = sleep
        self._unpriced_warned: set[str] = set()

    @property
    def model(self) -> str:
        return self._options.model

    def answer(
        self, question: str, hits: list[Hit], *, decision: RefusalDecision | None = None
    ) -> Answer:
        for event in self._run(question, hits, decision, streaming=False):
            if isinstance(event, Final):
                return event.answer
        raise AssertionError("the answer run ended without a final event")  # pragma: no cover

    def stream(
        self, question: str, hits: list[Hit], *, decision: RefusalDecision | None = None
    ) -> Iterator[AnswerEvent]:
        return self._run(question, hits, decision, streaming=True)

    # -- the run -----------------------------------------------------------------------------

    def _run(
        self,
        question: str,
        hits: list[Hit],
        decision: RefusalDecision | None,
        *,
        streaming: bool,
    ) -> Iterator[AnswerEvent]:
        started = time.perf_counter()
        options = self._options
        span = self._tracer.start_span(
            f"chat {options.model}", context=otel_context.get_current(), kind=SpanKind.CLIENT
        )
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.provider.name", self._provider.name)
        span.set_attribute("gen_ai.request.model", options.model)
        span.set_attribute("gen_ai.request.max_tokens", options.max_output_tokens)
        if options.temperature is not None:
            span.set_attribute("gen_ai.request.temperature", options.temperature)
        span.set_attribute("rag.prompt.version", self._prompt.version)
        span.set_attribute("rag.answer.streaming", streaming)
        span.set_attribute("answer.hits", len(hits))
        answer: Answer | None = None
        try:
            context = build_context(hits, options.context_tokens)
            span.set_attribute("rag.context.chunks", len(context.hits))
            span.set_attribute("rag.context.tokens_estimated", context.tokens)
            # Nothing to give the model, or the retrievers' evidence says the corpus has no
            # answer: no call, no cost.
            if decision is not None and context.hits:
                span.set_attribute("answer.refusal.reason", decision.reason)
            deferred = (
                decision is not None
                and decision.refuse
                and decision.probability is not None
                and decision.probability < options.refuse_without_call_from
            )
            if deferred:
                span.set_attribute("answer.refusal.deferred_to_model", True)
            if not context.hits or (decision is not None and decision.refuse and not deferred):
                answer = self._no_context_refusal()
                span.set_attribute("rag.answer.cache_hit", False)
                yield Token(answer.text)
                yield Final(answer)
                return
            key = cache_key(question, context.hits, options.model, self._prompt.version)
            cached = self._cache.get(key) if self._cache.enabled else None
            if self._cache.enabled:
                self._metrics.answer_cache.add(1, {"hit": cached is not None})
            span.set_attribute("rag.answer.cache_hit", cached is not None)
            if cached is not None:
                answer = replace(cached, cached=True, usage=Usage(), cost_usd=0.0)
                span.set_attribute("gen_ai.response.model", cached.model or options.model)
                yield Token(answer.text)
                yield Final(answer)
                return
            system = self._prompt.system()
            user = self._prompt.user(context.text, question)
            if self._content.record_content:
                self._record_input(span, system, user)
            completion: Completion | None = None
            fallback_used = False
            # closing(): when our reader goes away, the HTTP stream is closed now, not at GC.
            with closing(self._generate(span, system, user, streaming)) as generation:
                for event in generation:
                    if isinstance(event, Completion):
                        completion = event
                    elif isinstance(event, bool):
                        fallback_used = event
                    else:
                        yield Token(event)
            assert completion is not None
            answer = self._finish(span, completion, context, system, user, fallback_used)
            if answer.grounded:
                self._cache.put(key, answer)
            yield Final(answer)
        except GeneratorExit:  # the client went away: generation was stopped upstream
            span.set_attribute("rag.answer.cancelled", True)
            raise
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            span.set_attribute("error.type", getattr(exc, "kind", type(exc).__name__))
            raise
        finally:
            self._metrics.answer_duration.record(time.perf_counter() - started)
            if answer is not None:
                self._metrics.answers.add(1, {"refused": answer.refused})
                self._record_answer(span, answer)
            span.end()

    def _generate(
        self, span: Span, system: str, user: str, streaming: bool
    ) -> Generator[str | Completion | bool]:
        """Text deltas and the Completion; `True` once, before them, if the fallback answers."""
        options = self._options
        models = [options.model] + ([options.fallback_model] if options.fallback_model else [])
        retries = 0
        last_error: LLMError | None = None
        for position, model in enumerate(models):
            if position > 0:
                assert last_error is not None
                span.add_event(
                    "fallback",
                    {
                        "from_model": models[position - 1],
                        "to_model": model,
                        "error.type": last_error.kind,
                    },
                )
                self._metrics.llm_fallbacks.add(1, {"gen_ai.request.model": model})
                span.set_attribute("rag.llm.fallback_used", True)
                yield True
            request = ChatRequest(
                model,
                system,
                user,
                options.max_output_tokens,
                options.temperature,
                options.timeout_s,
            )
            for attempt in range(options.max_retries + 1):
                sent_tokens = False
                try:
                    if streaming:
                        for part in self._provider.stream(request):
                            if isinstance(part, str):
                                sent_tokens = True
                            yield part
                    else:
                        yield self._provider.complete(request)
                    span.set_attribute("rag.llm.retries", retries)
                    span.set_attribute("rag.llm.fallback_used", position > 0)
                    return
                except LLMError as exc:
                    last_error = exc
                    log.warning("LLM call to %s failed (attempt %d): %s", model, attempt + 1, exc)
                    if sent_tokens:  # the client has part of an answer: no retry can mend it
                        raise LLMUnavailableError(
                            f"The answer model {model} failed mid-answer: {exc.message}", exc.kind
                        ) from None
                    if not exc.retryable or attempt == options.max_retries:
                        break
                    delay = options.retry_backoff_s * 2**attempt
                    if exc.retry_after_s is not None:
                        delay = min(max(delay, exc.retry_after_s), options.timeout_s)
                    retries += 1
                    span.add_event(
                        "retry",
                        {
                            "gen_ai.request.model": model,
                            "attempt": attempt + 1,
                            "error.type": exc.kind,
                            "delay_s": delay,
                        },
                    )
                    self._metrics.llm_retries.add(1, {"error.type": exc.kind})
                    self._sleep(delay)
        span.set_attribute("rag.llm.retries", retries)
        assert last_error is not None
        tried = " and the fallback " + models[-1] if len(models) > 1 else ""
        hint = "" if len(models) > 1 else "; RAG_LLM_FALLBACK_MODEL can name a fallback"
        raise LLMUnavailableError(
            f"The answer model {models[0]}{tried} failed: {last_error.message}{hint}.",
            last_error.kind,
        )

    def _finish(
        self,
        span: Span,
        completion: Completion,
        context: Context,
        system: str,
        user: str,
        fallback_used: bool,
    ) -> Answer:
        usage = completion.usage
        if usage is None:  # the endpoint reported none: estimate, and say so on the trace
            usage = Usage(
                approx_tokens(system) + approx_tokens(user), approx_tokens(completion.text)
            )
            span.set_attribute("rag.usage.estimated", True)
        cost = self._cost(completion.model, usage)
        span.set_attribute("gen_ai.response.model", completion.model)
        if completion.finish_reason:
            span.set_attribute("gen_ai.response.finish_reasons", [completion.finish_reason])
        span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": self.model,
            "gen_ai.response.model": completion.model,
        }
        self._metrics.llm_tokens.record(
            usage.input_tokens, {**attributes, "gen_ai.token.type": "input"}
        )
        self._metrics.llm_tokens.record(
            usage.output_tokens, {**attributes, "gen_ai.token.type": "output"}
        )
        if cost is not None:
            span.set_attribute("rag.llm.cost_usd", cost)
            self._metrics.llm_cost.add(cost, {"gen_ai.request.model": completion.model})
        text = completion.text.strip()
        base = Answer(
            text=text,
            citations=[],
            refused=False,
            usage=usage,
            cost_usd=cost,
            model=completion.model,
            prompt_version=self._prompt.version,
            fallback_used=fallback_used,
        )
        with self._tracer.start_as_current_span(
            "citation check", context=trace.set_span_in_context(span)
        ) as check_span:
            if is_refusal(text, self._prompt.refusal):
                # The model's own words may paraphrase the prompt's sentence: the answer says
                # the one refusal sentence, the span keeps whether it was paraphrased.
                check_span.set_attribute("rag.answer.refused", True)
                check_span.set_attribute("rag.citations.grounded", True)
                paraphrased = not text.startswith(self._prompt.refusal.rstrip("."))
                check_span.set_attribute("rag.answer.refusal_paraphrased", paraphrased)
                return replace(base, text=self._prompt.refusal, refused=True)
            check = check_citations(text, context)
            check_span.set_attribute("rag.citations.valid", len(check.citations))
            check_span.set_attribute("rag.citations.invalid", [str(n) for n in check.invalid])
            check_span.set_attribute("rag.citations.grounded", check.grounded)
            if not check.grounded:
                check_span.add_event("ungrounded", {"refused": self._options.refuse_ungrounded})
                log.warning(
                    "answer from %s is not grounded: %d valid citations, invalid %s",
                    completion.model,
                    len(check.citations),
                    check.invalid,
                )
                if self._options.refuse_ungrounded:
                    return replace(base, text=self._prompt.refusal, refused=True, grounded=False)
            return replace(
                base, text=check.text, citations=check.citations, grounded=check.grounded
            )

    def _no_context_refusal(self) -> Answer:
        """Nothing (relevant) was retrieved: refuse without calling (or paying for) the model."""
        return Answer(
            text=self._prompt.refusal,
            citations=[],
            refused=True,
            cost_usd=0.0,
            model=self.model,
            prompt_version=self._prompt.version,
        )

    def _cost(self, model: str, usage: Usage) -> float | None:
        prices = self._options.prices.get(model) or self._options.prices.get(self.model)
        if prices is None:
            if model not in self._unpriced_warned:
                self._unpriced_warned.add(model)
                log.warning("no price for model %s in RAG_LLM_PRICES: its cost is unknown", model)
            return None
        input_price, output_price = prices
        return (usage.input_tokens * input_price + usage.output_tokens * output_price) / 1e6

    # -- span content ------------------------------------------------------------------------

    def _record_input(self, span: Span, system: str, user: str) -> None:
        messages = [
            {"role": "system", "parts": [{"type": "text", "content": system}]},
            {"role": "user", "parts": [{"type": "text", "content": user}]},
        ]
        span.set_attribute("gen_ai.input.messages", json.dumps(messages))
        if self._content.openinference:
            span.set_attribute("input.value", user)
            for i, (role, text) in enumerate((("system", system), ("user", user))):
                span.set_attribute(f"llm.input_messages.{i}.message.role", role)
                span.set_attribute(f"llm.input_messages.{i}.message.content", text)

    def _record_answer(self, span: Span, answer: Answer) -> None:
        span.set_attribute("rag.answer.grounded", answer.grounded)
        span.set_attribute("rag.answer.refused", answer.refused)
        span.set_attribute("answer.citations", len(answer.citations))
        if self._content.record_content:
            output = [{"role": "assistant", "parts": [{"type": "text", "content": answer.text}]}]
            span.set_attribute("gen_ai.output.messages", json.dumps(output))
        if self._content.openinference:
            span.set_attribute("openinference.span.kind", "LLM")
            span.set_attribute("llm.provider", self._provider.name)
            span.set_attribute("llm.model_name", answer.model or self.model)
            span.set_attribute("llm.token_count.prompt", answer.usage.input_tokens)
            span.set_attribute("llm.token_count.completion", answer.usage.output_tokens)
            span.set_attribute(
                "llm.token_count.total", answer.usage.input_tokens + answer.usage.output_tokens
            )
            span.set_attribute(
                "llm.invocation_parameters",
                json.dumps(
                    {
                        "max_tokens": self._options.max_output_tokens,
                        "temperature": self._options.temperature,
                    }
                ),
            )
            if self._content.record_content:
                span.set_attribute("output.value", answer.text)
                span.set_attribute("llm.output_messages.0.message.role", "assistant")
                span.set_attribute("llm.output_messages.0.message.content", answer.text)
