"""GGUF (llama.cpp's format) to an MLX model folder: read the file (reader), map its
architecture to a config (arch), convert its quantized tensors (quants), rebuild its
tokenizer (tokenizer) and write the folder (importer: ``import_gguf``)."""
