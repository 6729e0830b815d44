"""The plain answer: the question asked once about the whole image (the
baseline every visual search is measured against)."""

from __future__ import annotations

from ..answer import answer_on
from .base import Method, MethodResult, Run


class Vanilla(Method):
    """``Vanilla(mllm, config).run(image, question, options)``: no search."""

    name = "vanilla"

    def answer(self, run: Run) -> MethodResult:
        with run.stage("answer"):
            text, option = answer_on(run.mllm, run.question, run.options, run.config,
                                     lambda text: ([run.image], text), should_stop=run.should_stop)
        return self.result(run, text, option)
