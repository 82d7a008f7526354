"""Configuration: a ``sleuth.toml`` plus ``SLEUTH_*`` environment variables (environment wins).

Search order for the TOML file, later overriding earlier: the user config folder
(``~/.config/sleuth/sleuth.toml`` on Linux), then ``./sleuth.toml``; ``SLEUTH_CONFIG`` names
one file explicitly instead. Nested fields use a double underscore in the environment:
``SLEUTH_LLM__MODEL=openai/gpt-4o-mini``. ``SLEUTH_LLM_GGUF=/path/file.gguf`` serves any GGUF.

API keys are never part of the configuration: a role names the *environment variable* that
holds its key (``api_key_env``) and the key is read from the environment at call time only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sleuth.errors import ConfigError

EMBEDDED_LLM_DEFAULT = "qwen2.5-coder-0.5b"
EMBEDDED_AGENT_DEFAULT = "qwen2.5-coder-1.5b"


class ModelRole(BaseModel):
    """One model role reached through LiteLLM (llm, vlm): which model, where, and how patiently."""

    model: str | None = Field(
        default=None,
        description="A packaged model name (e.g. 'qwen2.5-coder-0.5b') or any LiteLLM model "
        "string ('openai/gpt-4o-mini', 'ollama/qwen2.5', 'hosted_vllm/...').",
    )
    api_base: str | None = Field(default=None, description="Base URL of the endpoint.")
    api_key_env: str | None = Field(
        default=None, description="Name of the environment variable that holds the API key."
    )
    timeout_s: float = Field(default=120.0, gt=0, description="Seconds one call to one model may take in all, "
                             "its retries included (each fallback model gets its own).")
    num_retries: int = Field(default=2, ge=0, description="Retries on transient errors.")
    fallbacks: list[str] = Field(
        default_factory=list, description="LiteLLM model strings tried in order when this fails."
    )
    structured_output: Literal["auto", "json_schema", "json_object"] = Field(
        default="auto",
        description="How a JSON schema reaches the model: 'json_schema' (response_format with "
        "the schema; llama.cpp and vLLM turn it into a grammar), 'json_object' (JSON mode plus "
        "the schema in the prompt). 'auto': json_schema for the embedded model, self-hosted "
        "servers (api_base set) and providers LiteLLM knows to support it.",
    )

    @field_validator("api_key_env")
    @classmethod
    def _env_name_not_key(cls, value: str | None) -> str | None:
        if value and not value.replace("_", "").isalnum():
            raise ValueError("api_key_env must name an environment variable, not hold a key")
        return value

    def api_key(self) -> str | None:
        """The key, read from the environment now; never stored on the object."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None


class LLMRole(ModelRole):
    """The text LLM. Defaults to the packaged Qwen2.5-Coder-0.5B served in-process."""

    model: str | None = EMBEDDED_LLM_DEFAULT
    agent_model: str | None = Field(
        default=EMBEDDED_AGENT_DEFAULT,
        description="The packaged model of the investigate agent (sleuth chat, the web chat, the API's chat, "
        "sleuth eval agent/chat) and of the tools it runs, when `model` is the embedded default: the 1.5B picks "
        "the right tool 95 % of the time where the 0.5B picks it 75 % (docs/benchmarks.md). Not installed: the "
        "agent uses `model`, with a warning. None: the agent uses `model`.",
    )
    gguf: Path | None = Field(
        default=None, description="Serve this GGUF file with the embedded llama.cpp server."
    )
    n_ctx: int = Field(default=8192, ge=512, description="Context window of the embedded server.")
    n_parallel: int = Field(default=1, ge=1, description="Parallel slots of the embedded server.")
    n_threads: int = Field(default=0, ge=0, description="CPU threads (0: all cores).")
    n_gpu_layers: int = Field(default=-1, description="Layers offloaded to a GPU when one exists.")
    startup_timeout_s: float = Field(default=120.0, gt=0)
    temperature: float = Field(default=0.0, ge=0)
    max_tokens: int = Field(default=512, ge=1)


class EmbedderRole(BaseModel):
    model: str = Field(
        default="all-MiniLM-L6-v2",
        description="'all-MiniLM-L6-v2' (packaged) or a sentence-transformers model path.",
    )
    batch_size: int = Field(default=64, ge=1)
    device: str | None = Field(default=None, description="'cpu', 'cuda', ... (None: auto).")


class RetrieverRole(BaseModel):
    """The retriever of `sleuth index` / `sleuth search`: a CLIP/SigLIP-family model, or caption text."""

    model: str | None = Field(
        default=None,
        description="A CLIP/SigLIP-family transformers model (local folder or Hugging Face id). None: the "
        "embedded default, retrieval by caption text (captioner descriptions embedded with the text embedder).",
    )
    batch_size: int = Field(default=32, ge=1)
    device: str | None = Field(default=None, description="'cpu', 'cuda', ... (None: a GPU when present).")


class TracingConfig(BaseModel):
    exporter: Literal["off", "console", "otlp"] = "off"
    endpoint: str | None = Field(
        default=None, description="OTLP/HTTP endpoint, e.g. http://localhost:4318/v1/traces."
    )
    capture_content: bool = Field(
        default=False, description="Record prompts and answers on spans (off by default)."
    )
    service_name: str = "sleuth"


class QdrantConfig(BaseModel):
    url: str | None = Field(default=None, description="Qdrant server URL (env QDRANT_URL).")
    api_key_env: str = "QDRANT_API_KEY"
    path: Path | None = Field(default=None, description="Local-mode folder (default: data dir).")
    lock_wait_s: float = Field(default=30.0, ge=0, description="Local mode: how long to wait for a folder "
                               "another process is using.")
    idle_release_s: float = Field(default=2.0, ge=0, description="Local mode: release the folder after this "
                                  "long unused (0: after each operation).")


class CaptionerConfig(BaseModel):
    """Which captioner turns frames into text for the caption-based agents."""

    kind: Literal["structured", "transformers", "litellm"] = Field(
        default="structured",
        description="'structured' (embedded: template captions from the object stage's tracks), "
        "'transformers' (a Hugging Face VLM by local path or id, see `model`), 'litellm' (the `vlm` role).",
    )
    model: str | None = Field(default=None, description="transformers: a local folder or Hugging Face id.")
    prompt: str = Field(
        default="Describe the people and objects in this surveillance frame and what each is doing, in one "
        "or two sentences.",
        description="Instruction given to VLM captioners.",
    )
    batch_size: int = Field(default=8, ge=1)
    max_new_tokens: int = Field(default=64, ge=1)
    device: str | None = Field(default=None, description="'cpu', 'cuda', ... (None: a GPU when present).")


class ToolsConfig(BaseModel):
    """Where the model tools run: in this process, or as Ray Serve deployments."""

    backend: Literal["inprocess", "ray"] = Field(
        default="inprocess", description="'inprocess' or 'ray' (handles to a running `sleuth serve tools` app)."
    )
    ray_address: str | None = Field(
        default=None, description="Ray cluster address for the 'ray' backend ('auto', 'head-host:6379'); "
        "None starts or joins a local instance.",
    )
    serve_app: str = Field(default="sleuth-tools", description="Name of the Ray Serve application.")
    serve_config: Path | None = Field(
        default=None, description="Ray Serve YAML (replicas, autoscaling, CPU/GPU per tool); None: the packaged one."
    )
    captioner: CaptionerConfig = Field(default_factory=CaptionerConfig)
    proposer_dir: Path | None = Field(
        default=None, description="Folder of per-scene proposer checkpoints (default: <data_dir>/proposers)."
    )


class Settings(BaseSettings):
    """All of Sleuth's configuration. Build with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="SLEUTH_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    llm: LLMRole = Field(default_factory=LLMRole)
    vlm: ModelRole = Field(default_factory=ModelRole)
    embedder: EmbedderRole = Field(default_factory=EmbedderRole)
    retriever: RetrieverRole = Field(default_factory=RetrieverRole)
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    qdrant: QdrantConfig = Field(default_factory=QdrantConfig)
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    checkpoint_url: str | None = Field(
        default=None, description="postgresql://user:password@host/db keeps chat threads and graph checkpoints in "
        "Postgres (pip install 'sleuth[postgres]'); None: SQLite in <data_dir>/checkpoints.sqlite.",
    )
    data_dirs: list[Path] = Field(
        default_factory=list, description="Folders of footage and datasets Sleuth may read."
    )
    cache_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_cache_dir("sleuth")))
    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir("sleuth")))

    @model_validator(mode="before")
    @classmethod
    def _flat_env_aliases(cls, data: Any) -> Any:
        """Honour the documented flat variables SLEUTH_LLM_GGUF and QDRANT_URL."""
        if not isinstance(data, dict):
            return data
        gguf = os.environ.get("SLEUTH_LLM_GGUF")
        if gguf:
            llm = dict(data.get("llm") or {})
            llm["gguf"] = gguf
            data["llm"] = llm
        qdrant_url = os.environ.get("QDRANT_URL")
        if qdrant_url:
            qdrant = dict(data.get("qdrant") or {})
            qdrant.setdefault("url", qdrant_url)
            data["qdrant"] = qdrant
        return data

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_files())
        return (init_settings, env_settings, toml)


def cpu_threads() -> int:
    """CPU threads each model may use in this process: ``SLEUTH_THREADS`` when set (a process that
    shares the machine with others, e.g. one camera of ``sleuth watch --cameras``), else every core."""
    value = os.environ.get("SLEUTH_THREADS", "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            raise ConfigError(f"SLEUTH_THREADS must be a whole number, not '{value}'",
                              hint="unset it to use every core") from None
    return max(1, os.cpu_count() or 1)


def config_files() -> list[Path]:
    """The TOML files that exist, lowest precedence first."""
    explicit = os.environ.get("SLEUTH_CONFIG")
    if explicit:
        return [Path(explicit)]
    candidates = [Path(platformdirs.user_config_dir("sleuth")) / "sleuth.toml", Path("sleuth.toml")]
    return [path for path in candidates if path.is_file()]


def load_settings(**overrides: Any) -> Settings:
    """Read the configuration, turning any problem into one actionable :class:`ConfigError`."""
    explicit = os.environ.get("SLEUTH_CONFIG")
    if explicit and not Path(explicit).is_file():
        raise ConfigError(f"SLEUTH_CONFIG names {explicit}, which does not exist",
                          hint="point it at a sleuth.toml or unset it")
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "settings"
        files = ", ".join(str(path) for path in config_files()) or "no sleuth.toml"
        raise ConfigError(
            f"invalid setting '{where}': {first['msg']}",
            hint=f"fix it in the environment (SLEUTH_*) or in {files}",
        ) from None
    except ValueError as exc:  # TOML syntax errors surface as ValueError subclasses
        files = ", ".join(str(path) for path in config_files())
        raise ConfigError(f"cannot read {files}: {exc}", hint="fix the TOML syntax") from None
