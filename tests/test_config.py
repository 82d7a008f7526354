"""Configuration precedence (defaults < user TOML < working-folder TOML < environment)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sleuth.config import load_settings
from sleuth.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_use_the_packaged_model() -> None:
    settings = load_settings()
    assert settings.llm.model == "qwen2.5-coder-0.5b"
    assert settings.llm.gguf is None
    assert settings.vlm.model is None
    assert settings.embedder.model == "all-MiniLM-L6-v2"
    assert settings.tracing.exporter == "off"


def test_working_folder_beats_user_folder_and_environment_beats_both(
        isolated_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "xdg-config" / "sleuth" / "sleuth.toml",
          '[llm]\nmodel = "openai/user"\ntimeout_s = 11\n[embedder]\nbatch_size = 7\n')
    assert load_settings().llm.model == "openai/user"
    write(isolated_config / "sleuth.toml", '[llm]\nmodel = "openai/cwd"\ntimeout_s = 22\n')
    settings = load_settings()
    assert settings.llm.model == "openai/cwd"
    assert settings.llm.timeout_s == 22
    assert settings.embedder.batch_size == 7  # untouched values still come from the user file
    monkeypatch.setenv("SLEUTH_LLM__MODEL", "openai/env")
    settings = load_settings()
    assert settings.llm.model == "openai/env"
    assert settings.llm.timeout_s == 22


def test_flat_variables_for_gguf_and_qdrant(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SLEUTH_LLM_GGUF", str(tmp_path / "model.gguf"))
    monkeypatch.setenv("QDRANT_URL", "http://qdrant.internal:6333")
    settings = load_settings()
    assert settings.llm.gguf == tmp_path / "model.gguf"
    assert settings.qdrant.url == "http://qdrant.internal:6333"


def test_sleuth_config_names_one_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                      isolated_config: Path) -> None:
    write(isolated_config / "sleuth.toml", '[llm]\nmodel = "openai/cwd"\n')
    explicit = write(tmp_path / "elsewhere.toml", '[llm]\nmodel = "openai/explicit"\n')
    monkeypatch.setenv("SLEUTH_CONFIG", str(explicit))
    assert load_settings().llm.model == "openai/explicit"
    monkeypatch.setenv("SLEUTH_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings()


@pytest.mark.parametrize("text, fragment", [
    ('[llm]\ntimeout_s = "soon"\n', "llm.timeout_s"),
    ('[llm]\nmodel = \n', "TOML"),
    ('[lm]\nmodel = "x"\n', "lm"),
    ('[llm]\napi_key_env = "sk-live-1234"\n', "api_key_env"),
])
def test_bad_config_is_one_actionable_line(isolated_config: Path, text: str, fragment: str) -> None:
    write(isolated_config / "sleuth.toml", text)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message
    assert fragment in message


def test_api_key_is_read_from_the_environment_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLEUTH_LLM__API_KEY_ENV", "MY_PROVIDER_KEY")
    monkeypatch.setenv("MY_PROVIDER_KEY", "sk-test-secret-1")
    settings = load_settings()
    assert settings.llm.api_key() == "sk-test-secret-1"
    assert "sk-test-secret-1" not in settings.model_dump_json()
    assert "sk-test-secret-1" not in repr(settings)


def test_the_agent_gets_the_packaged_1_5b_only_over_the_embedded_default(
        isolated_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sleuth.graphs.runtime import agent_model
    from sleuth.llm import packaged

    monkeypatch.setattr(packaged, "parts_status", lambda model: [])  # installed
    assert agent_model(load_settings()) == "qwen2.5-coder-1.5b"
    monkeypatch.setenv("SLEUTH_LLM__MODEL", "openai/gpt-4o-mini")  # a model of one's own: the agent uses it
    assert agent_model(load_settings()) is None
    monkeypatch.delenv("SLEUTH_LLM__MODEL")
    monkeypatch.setenv("SLEUTH_LLM__AGENT_MODEL", "")
    assert agent_model(load_settings()) is None


def test_a_missing_agent_model_falls_back_to_the_llm_with_a_warning(
        isolated_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from sleuth.graphs.runtime import agent_model
    from sleuth.llm import packaged

    monkeypatch.setattr(packaged, "parts_status", lambda model: ["part 1 is not installed"])
    monkeypatch.setenv("SLEUTH_CACHE_DIR", str(tmp_path / "empty-cache"))
    assert agent_model(load_settings()) is None
    assert "SLEUTH_EXTRAS=llm-1-5b make setup" in caplog.text
