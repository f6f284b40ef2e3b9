"""Model providers behind one interface (`base.Provider`): hosted (OpenAI-compatible, Anthropic) and local."""
