"""The chat agent with the real embedded models (the packaged 1.5B for the agent where installed,
as ``make setup`` does; the 0.5B for the tools): questions of the end-to-end suite's kinds on
synthetic footage, each turn checked by the suite's own checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sleuth.config import load_settings
from sleuth.evals.agent_bench import ArgCheck
from sleuth.evals.chat_bench import ChatQuestion, ask, check_turn
from sleuth.llm import packaged

from tests.synthetic_video import Mover, render, write_video

pytestmark = pytest.mark.slow


def test_the_default_agent_shows_a_frame_and_answers_small_talk_without_tools(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sleuth.graphs.investigate import InvestigateConfig, Investigator
    from sleuth.graphs.runtime import Runtime

    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "gate.mp4", render([Mover(5, 30, 10, 20, vx=12)], n_frames=60))
    monkeypatch.setenv("SLEUTH_DATA_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SLEUTH_DATA_DIRS", json.dumps([str(videos)]))
    runtime = Runtime.from_settings(load_settings())
    try:
        agent = Investigator(runtime, InvestigateConfig(confirm=False), files_root=tmp_path / "files")
        installed = not packaged.parts_status(packaged.QWEN_15B)
        assert agent.agent_runtime.settings.llm.model == ("qwen2.5-coder-1.5b" if installed else "qwen2.5-coder-0.5b")
        frame = ChatQuestion(id="frame", question="Show me the frame at 1 s of gate.mp4.", tools=["show_frame"],
                             args={"time_s": ArgCheck(check="exact", value=1, tolerance=0.5),
                                   "video": ArgCheck(check="contains", value="gate.mp4")}, files=True)
        hello = ChatQuestion(id="hello", question="Hello! What can you do?", tools=[])
        for question in (frame, hello):
            turn = ask(agent, question.id, question.question)
            failures = check_turn(question, turn, rules_of=lambda scene: [], scenes=lambda: [])
            assert failures == [], (question.id, failures, turn.answer)
    finally:
        runtime.close()
