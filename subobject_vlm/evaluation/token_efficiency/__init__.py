"""The token-efficiency experiment: does a VLM learn more from subobject tokens than from patch tokens?

``subobject-vlm compare-tokenizers --config configs/compare_quick.yaml`` trains the same small LLaVA-style
model once per (tokenizer, budget, seed) on the same data, with the same initialisation, batches, steps and
learning-rate schedule, and evaluates each on held-out data. Only the label maps differ: every tokenizer runs
through the same segmentation settings a :class:`SubobjectImageProcessor` reads, and patch grids are label maps
like any other, so patch and region tokens go through the same :class:`MaskPooledEmbedding`. The steps of a
run are in :mod:`.run`; one line per run tells the grid's progress and ETA.

Outputs in ``output_dir``: ``results.jsonl`` (one line per finished run, appended as runs finish; a rerun skips
the runs already there), ``results.md`` (mean and spread over seeds, 95 % intervals, paired comparisons against
the reference tokenizer, the same per attribute group, runs that shared identical label maps; rebuilt from every
run, ``--report-only`` rebuilds it alone), ``perplexity_vs_tokens.png``, ``val_loss_vs_steps.png``,
``val_loss_vs_time.png`` (95 % intervals as bars and bands), ``tokens_examples.png``; ``data/`` (the generated
scenes, when synthetic), ``segmentations/`` (label maps per tokenizer, budget and split, computed once) and
``weights/`` (each run's final weights: a rerun that changes only what is scored evaluates them instead of
training). ``results.jsonl`` is strict JSON: a metric without data (e.g. question accuracy on captions only) is
``null``, shown ``n/a`` in ``results.md``. Each run records its last val loss (``val_loss``) and its best
(``best_val_loss`` at ``best_step``).

Config layout (unknown keys are errors)::

    output_dir: runs/compare_quick
    data:
      synthetic: {train: 1000, val: 100, size: 128, seed: 0}     # CLEVR-like scenes (data/clevr_like.py)
      # or: train: {path: llava.json, image_folder: images}, val: {path: ...}   (LLaVA JSON/JSONL, HF dataset;
      #     relative to the config file; record format, attribute_words, attribute_groups, reference_words:
      #     see config.py)
    image_size: 128                    # pixels for the vision tower (other sizes are resized, with a warning)
    label_size: 128                    # label maps (every tokenizer)
    tokenizers:                        # name -> SubobjectImageProcessor settings, plus `match`
      patch: {boundary_model: patch}
      ours: {boundary_model: default, boundary_model_options: {resolution: 256}}
      slic: {boundary_model: slic, match: ours}    # exactly `ours`' per-image counts at each budget
      sam: {boundary_model: "sam:facebook/sam-vit-base", boundary_model_options: {points_per_side: 16},
            match: ours}               # a mask tokenizer (sam:, sam2:, edgetam:, mask2former:, ...; a relative
                                       # checkpoint folder: from the config's folder): at most `ours`' counts
    budgets: [16, 64]                  # max_tokens (baselines: exact counts; patch 16 = 4x4 grid)
    seeds: [0, 1]
    reference_tokenizer: ours          # paired comparisons against it (default: every tokenizer named ours*)
    model:
      vision: pixels                   # pixels | cnn | {timm: NAME, pretrained: true} | {hf: NAME_OR_PATH}
      text: {hidden_size: 128, num_hidden_layers: 2}   # a Llama from scratch + word-level tokenizer,
                                       # or {pretrained: HuggingFaceTB/SmolLM2-135M}
    training: {steps: 400, batch_size: 16, learning_rate: 1e-3, warmup_steps: 20, eval_every: 50}
    torch_threads: 1                   # the CPU default (fast on a shared machine); 2 when both cores are yours
    save_weights: true                 # false for big models (each run's weights in weights/)
"""

from .config import (
    ComparisonConfig,
    TrainingSection,
    budgets_of,
    evaluation_key,
    experiment_fingerprint,
    load_config,
)
from .data import (
    Split,
    TokenizedSplit,
    attribute_group_ids,
    attribute_groups,
    attribute_token_ids,
    attribute_words,
    build_text_tokenizer,
    collate,
    load_split,
    segment_split,
    token_counts,
    tokenize_split,
    tokenizer_settings,
    word_token_ids,
)
from .model import build_model
from .plots import plot_token_efficiency
from .results import (
    RESULT_FIELDS,
    intervals_table,
    paired_comparisons,
    paired_table,
    results_markdown,
    results_table,
    summarize,
)
from .run import compare_tokenizers, torch_threads, write_report
from .train import RunData, evaluate, evaluate_saved, save_weights, train_run

__all__ = [
    "RESULT_FIELDS",
    "ComparisonConfig",
    "RunData",
    "Split",
    "TokenizedSplit",
    "TrainingSection",
    "attribute_group_ids",
    "attribute_groups",
    "attribute_token_ids",
    "attribute_words",
    "budgets_of",
    "build_model",
    "build_text_tokenizer",
    "collate",
    "compare_tokenizers",
    "evaluate",
    "evaluate_saved",
    "evaluation_key",
    "experiment_fingerprint",
    "intervals_table",
    "load_config",
    "load_split",
    "paired_comparisons",
    "paired_table",
    "plot_token_efficiency",
    "results_markdown",
    "results_table",
    "save_weights",
    "segment_split",
    "summarize",
    "token_counts",
    "tokenize_split",
    "tokenizer_settings",
    "torch_threads",
    "train_run",
    "word_token_ids",
    "write_report",
]
