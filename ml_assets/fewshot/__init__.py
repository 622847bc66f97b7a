"""fewshot stage."""
