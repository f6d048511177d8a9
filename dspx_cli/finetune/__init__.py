"""Training the local model on chat records: `dspx finetune`'s model half.

Sits between optimizers and workflows and depends only on errors and third-party libraries; torch,
transformers, peft and gguf are imported inside functions (or in modules only this path imports),
so `dspx --help` and `dspx validate` never load them.

- `base_model.load_base`: the embedded GGUF (or a checkpoint folder) as a transformers model.
- `trainer.train`: full or LoRA fine-tuning on the CPU, checkpointed and resumable.
- `export.export_checkpoint` / `gguf_export.export_gguf`: the trained weights as a checkpoint
  folder and as a GGUF file with the original's tokenizer and chat template.
"""
