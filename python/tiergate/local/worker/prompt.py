"""How a local model is prompted, and where its answer ends.

Two prompt formats:

* `ChatTemplateFormat`: the GGUF's own chat template (`tokenizer.chat_template`, Jinja), rendered by
  llama-cpp-python's formatter exactly as its `create_chat_completion` would. Used whenever the model has one.
* `InstructionFormat`: for base models without a template, such as the embedded Gemma 3 270M::

      ### System:
      Answer with a single word.

      ### Instruction:
      What is the capital of France?

      ### Response:

  The stop sequence is "\\n###": the model closes its answer by opening a new section.

  Why this one: on Gemma 3 270M (greedy, the same prompts) a "User:/Assistant:" transcript echoed the
  question or drifted off topic ("Translate 'good morning'" -> "Hello, I'm sorry to interrupt you"), a
  "Question:/Answer:" transcript looped without stopping, and Gemma's own turn markers (which the base
  model was never trained on) produced garbage. The instruction sections gave the right short answers
  ("Paris", "Hola, buenas tardes") and ended on their own with "\\n\\n###". A system message works best as
  its own "### System:" section (the only variant that followed "Answer with a single word"). Greedy
  decoding with a mild repetition penalty (1.15) stopped the list-style loops ("3. Sleep on your
  stomach. 4. Sleep on your stomach. ..."); sampling at 0.3-0.7 made this small model ramble and invent
  facts, so the format's default temperature is 0 (requests may still set one).

`AnswerText` turns the model's output bytes into answer text as it streams: UTF-8 characters split across
tokens are held until complete, text that may be the start of a stop sequence is held until it is known not
to be, and leading and trailing whitespace is trimmed, so the streamed pieces always add up to the final
answer.
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import jinja2
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from tiergate.providers.base import BadRequest
from tiergate.request import Message

CHAT_TEMPLATE_KEY = "tokenizer.chat_template"


@dataclass(frozen=True, slots=True)
class Prompt:
    """A rendered prompt and how to tokenize it."""

    text: str
    add_bos: bool  # prepend the model's BOS token (a chat template writes its own)
    special: bool  # parse control tokens such as <start_of_turn> in `text` (only for template output)
    stops: tuple[str, ...] = ()
    continues: bool = False  # the prompt ends inside an answer the model continues: keep its leading space


class PromptFormat(Protocol):
    """Renders messages into a prompt; carries the sampling defaults that suit the format."""

    name: str
    default_temperature: float
    repeat_penalty: float

    def render(self, messages: Sequence[Message]) -> Prompt: ...


_SYSTEM_ROLES = frozenset({"system", "developer"})
_ANSWER_ROLES = frozenset({"assistant", "model"})


class InstructionFormat:
    """Plain "### Instruction / ### Response" sections, for base models without a chat template."""

    name = "instruction"
    default_temperature = 0.0
    repeat_penalty = 1.15
    stops = ("\n###",)

    def render(self, messages: Sequence[Message]) -> Prompt:
        parts: list[str] = []
        last = len(messages) - 1
        for i, message in enumerate(messages):
            content = message.content.strip()
            if message.role in _ANSWER_ROLES:
                if i == last:
                    # A trailing answer is a prefill: the model continues it rather than starting anew.
                    parts.append(f"### Response:\n{content}")
                    return Prompt(
                        "".join(parts), add_bos=True, special=False, stops=self.stops, continues=True
                    )
                header = "Response"
            elif message.role in _SYSTEM_ROLES:
                header = "System"
            else:
                header = "Instruction"
            parts.append(f"### {header}:\n{content}\n\n")
        parts.append("### Response:\n")
        # special=False: control-token text typed by a user stays plain text.
        return Prompt("".join(parts), add_bos=True, special=False, stops=self.stops)


class ChatTemplateFormat:
    """The model's own Jinja chat template, as llama-cpp-python's create_chat_completion renders it."""

    name = "chat_template"
    default_temperature = 0.7
    repeat_penalty = 1.0

    def __init__(self, template: str, *, bos_token: str, eos_token: str) -> None:
        try:
            self._formatter = Jinja2ChatFormatter(
                template=template, eos_token=eos_token, bos_token=bos_token, add_generation_prompt=True
            )
        except jinja2.TemplateError as exc:
            raise ValueError(f"the model's chat template does not parse: {exc}") from exc

    def render(self, messages: Sequence[Message]) -> Prompt:
        # Roles pass through as given (llama-cpp-python types them as literals); the template judges them.
        turns: list[Any] = [{"role": m.role, "content": m.content} for m in messages]
        try:
            result = self._formatter(messages=turns)
        except (jinja2.TemplateError, ValueError, TypeError) as exc:
            # Templates reject what they cannot express (e.g. roles that do not alternate).
            raise BadRequest(f"the model's chat template rejected the messages: {exc}") from exc
        # Templates end turns with an end-of-generation token, which stops generation by itself.
        return Prompt(result.prompt, add_bos=False, special=True)


def format_for(metadata: Mapping[str, str], *, bos_token: str, eos_token: str) -> PromptFormat:
    """The model's chat template when its GGUF has one, else the plain instruction format."""
    template = metadata.get(CHAT_TEMPLATE_KEY)
    if template:
        return ChatTemplateFormat(template, bos_token=bos_token, eos_token=eos_token)
    return InstructionFormat()


class AnswerText:
    """Incremental decoder from the model's token bytes to answer text.

    `feed` returns the text that is safe to show now; `stopped` turns true once a stop sequence completed
    (the stop sequence and anything after it are never returned). `finish` returns what was held back when
    generation ended for another reason.
    """

    __slots__ = ("_decoder", "_held", "_started", "_stops", "stopped")

    def __init__(self, stops: Sequence[str] = (), *, strip_leading: bool = True) -> None:
        # errors="replace": an invalid byte sequence becomes U+FFFD rather than an exception mid-answer.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stops = tuple(s for s in stops if s)
        self._held = ""
        self._started = not strip_leading
        self.stopped = False

    def feed(self, piece: bytes) -> str:
        if self.stopped:
            return ""
        return self._advance(self._decoder.decode(piece))

    def finish(self) -> str:
        """The rest of the answer at the end of generation (end-of-generation token or length limit)."""
        if self.stopped:
            return ""
        text = self._advance(self._decoder.decode(b"", final=True))
        if self.stopped:
            return text
        rest, self._held = self._held.rstrip(), ""
        return text + rest

    def _advance(self, text: str) -> str:
        if not self._started:
            text = text.lstrip()
            if not text:
                return ""
            self._started = True
        held = self._held + text
        stop_at = _first_stop(held, self._stops)
        if stop_at >= 0:
            self.stopped = True
            self._held = ""
            return held[:stop_at].rstrip()
        # Hold a tail that could begin a stop sequence, and the whitespace before it: if a stop follows,
        # that whitespace is only the separator before the model's next section.
        safe = held[: len(held) - _stop_prefix_len(held, self._stops)].rstrip()
        self._held = held[len(safe) :]
        return safe


def _first_stop(text: str, stops: tuple[str, ...]) -> int:
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else -1


def _stop_prefix_len(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest tail of `text` that is a proper prefix of some stop sequence."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:n]):
                longest = n
                break
    return longest
