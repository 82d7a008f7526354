"""Prompts: versioned templates, one file per prompt, loaded by id."""
