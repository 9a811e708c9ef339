"""FastChat's single-answer grading prompts for MT-Bench (Zheng et al., arXiv 2306.05685).

Text copied verbatim from lm-sys/FastChat, ``fastchat/llm_judge/data/judge_prompts.jsonl``
(Apache-2.0, commit 0e6d3e4beaab66f4d3f93db72541a4abab8af28d), so that scores are comparable
with published MT-Bench numbers. Only the four single-answer prompts are kept; a full
``judge_prompts.jsonl`` can be passed to :func:`asft.evaluate.mt_bench.load_judge_prompts`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JudgePrompt:
    """One grading prompt: a system message and a ``str.format`` template for the user turn.

    Template fields: ``question``, ``answer`` (turn 1); ``question_1``, ``answer_1``,
    ``question_2``, ``answer_2`` (multi-turn); ``ref_answer_1`` and ``ref_answer_2`` (math).
    """

    name: str
    system_prompt: str
    prompt_template: str
    output_format: str = "[[rating]]"


SINGLE_PROMPTS: dict[str, JudgePrompt] = {
    "single-v1": JudgePrompt(
        name="single-v1",
        system_prompt="You are a helpful assistant.",
        prompt_template=(
            "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the "
            "response provided by an AI assistant to the user question displayed below. Your "
            "evaluation should consider factors such as the helpfulness, relevance, accuracy, "
            "depth, creativity, and level of detail of the response. Begin your evaluation by "
            "providing a short explanation. Be as objective as possible. After providing your "
            "explanation, you must rate the response on a scale of 1 to 10 by strictly "
            'following this format: "[[rating]]", for example: "Rating: [[5]]".\n\n[Question]\n'
            "{question}\n\n[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's "
            "Answer]"
        ),
        output_format="[[rating]]",
    ),
    "single-math-v1": JudgePrompt(
        name="single-math-v1",
        system_prompt="You are a helpful assistant.",
        prompt_template=(
            "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the "
            "response provided by an AI assistant to the user question displayed below. Your "
            "evaluation should consider correctness and helpfulness. You will be given a "
            "reference answer and the assistant's answer. Begin your evaluation by comparing "
            "the assistant's answer with the reference answer. Identify and correct any "
            "mistakes. Be as objective as possible. After providing your explanation, you "
            "must rate the response on a scale of 1 to 10 by strictly following this format: "
            '"[[rating]]", for example: "Rating: [[5]]".\n\n[Question]\n{question}\n\n[The Start '
            "of Reference Answer]\n{ref_answer_1}\n[The End of Reference Answer]\n\n[The Start of "
            "Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]"
        ),
        output_format="[[rating]]",
    ),
    "single-v1-multi-turn": JudgePrompt(
        name="single-v1-multi-turn",
        system_prompt=(
            "Please act as an impartial judge and evaluate the quality of the response "
            "provided by an AI assistant to the user question displayed below. Your "
            "evaluation should consider factors such as the helpfulness, relevance, accuracy, "
            "depth, creativity, and level of detail of the response. You evaluation should "
            "focus on the assistant's answer to the second user question. Begin your "
            "evaluation by providing a short explanation. Be as objective as possible. After "
            "providing your explanation, you must rate the response on a scale of 1 to 10 by "
            'strictly following this format: "[[rating]]", for example: "Rating: [[5]]".\n\n'
        ),
        prompt_template=(
            "<|The Start of Assistant A's Conversation with User|>\n\n### User:\n{question_1}\n\n"
            "### Assistant A:\n{answer_1}\n\n### User:\n{question_2}\n\n### Assistant A:\n{answer_2}\n"
            "\n<|The End of Assistant A's Conversation with User|>"
        ),
        output_format="[[rating]]",
    ),
    "single-math-v1-multi-turn": JudgePrompt(
        name="single-math-v1-multi-turn",
        system_prompt=(
            "Please act as an impartial judge and evaluate the quality of the response "
            "provided by an AI assistant to the user question. Your evaluation should "
            "consider correctness and helpfulness. You will be given a reference answer and "
            "the assistant's answer. You evaluation should focus on the assistant's answer to "
            "the second question. Begin your evaluation by comparing the assistant's answer "
            "with the reference answer. Identify and correct any mistakes. Be as objective as "
            "possible. After providing your explanation, you must rate the response on a "
            'scale of 1 to 10 by strictly following this format: "[[rating]]", for example: '
            '"Rating: [[5]]".\n\n'
        ),
        prompt_template=(
            "<|The Start of Reference Answer|>\n\n### User:\n{question_1}\n\n### Reference answer:\n"
            "{ref_answer_1}\n\n### User:\n{question_2}\n\n### Reference answer:\n{ref_answer_2}\n\n"
            "<|The End of Reference Answer|>\n\n\n<|The Start of Assistant A's Conversation with "
            "User|>\n\n### User:\n{question_1}\n\n### Assistant A:\n{answer_1}\n\n### User:\n"
            "{question_2}\n\n### Assistant A:\n{answer_2}\n\n<|The End of Assistant A's "
            "Conversation with User|>"
        ),
        output_format="[[rating]]",
    ),
}
