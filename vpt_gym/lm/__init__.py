"""Language-model components: corpora, tokenizer and the GSM8K feedback set."""
