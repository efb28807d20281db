"""The Serve page: start the OpenAI- and Ollama-compatible server on the app's engine,
copy client snippets, watch requests as they arrive."""
